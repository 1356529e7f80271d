"""The offline commands: ``monitor batch``, ``eval``, ``report``, ``eval-judge`` and ``calibrate-judge``."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from monitor.config import AppConfig
from monitor.logs import setup_logging
from monitor.models import build_client, load_calibration
from monitor.offline.annotations import AnnotationError, Format, read_annotations
from monitor.offline.calibrate import MilSettings
from monitor.offline.judge_eval import (
    Labelled,
    live_windows,
    probe_features,
    read_batch_labelled,
    read_labelled,
    report,
    score_windows,
    smooth_by_video,
    smooth_windows,
)
from monitor.options import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    configured_secrets,
    fail,
    file_mode,
    load_config,
    with_overrides,
)
from pipeline.calibration import JudgeCalibration
from pipeline.prompts import PROBE_PROMPT
from pipeline.windows import WindowSettings


def batch(
    *,
    video_dir: Path,
    output: Path | None,
    config: Path | None,
    model: str | None,
    judge_model: str | None,
    parallel: int,
    pickle: bool,
    annotations: Path | None,
    fmt: Format,
    log_level: str | None,
) -> int:
    """``monitor batch``: the live engine over every video of a folder. Exit status 0 all done, 1 some
    video failed, 130 interrupted (run it again to continue)."""
    from monitor.offline.batch import (
        BatchSummary,
        VideoOutcome,
        estimate_frames,
        plan_jobs,
        run_batch,
        settings_fingerprint,
        write_summary,
    )

    cfg = with_overrides(load_config(config), model=model, judge_model=judge_model)
    setup_logging(log_level or cfg.log_level, configured_secrets(cfg))
    file_mode(cfg)
    if not video_dir.is_dir():
        return fail(f"{video_dir}: not a folder")
    out_dir = output if output is not None else video_dir.with_name(video_dir.name + "-results")
    truths = None
    if annotations is not None:
        try:
            truths = read_annotations(annotations, fmt)
        except AnnotationError as exc:
            return fail(str(exc))
    jobs = plan_jobs(video_dir, out_dir)
    if not jobs:
        return fail(f"{video_dir}: no videos found")
    out_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = settings_fingerprint(cfg)
    if all(job.done_with(fingerprint) for job in jobs):  # nothing to do: no need to load the model
        write_summary(out_dir, BatchSummary(tuple(VideoOutcome(str(j.rel), "skipped") for j in jobs), 0.0, False))
        print(f"all {len(jobs)} videos are already done with these settings; outputs in {out_dir}", file=sys.stderr)
        return EXIT_OK
    for job in jobs:
        job.estimate = None if job.done_with(fingerprint) else estimate_frames(job.path)
    total = sum(j.estimate or 0 for j in jobs) or None
    models = build_client(cfg)

    async def main() -> BatchSummary:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        with tqdm(total=total, unit="frame", desc="frames", file=sys.stderr, disable=None, dynamic_ncols=True) as bar:

            def progress(frames: int, done: int, of: int, failed: int) -> None:
                bar.n = frames
                bar.set_postfix_str(f"videos {done}/{of}" + (f", {failed} failed" if failed else ""), refresh=False)
                bar.refresh()

            return await run_batch(
                cfg,
                jobs,
                models=models,
                parallel=parallel,
                pickles=pickle,
                truths=truths,
                fmt=fmt,
                progress=progress,
                stop=stop,
            )

    summary = asyncio.run(main())
    write_summary(out_dir, summary)
    done = [o for o in summary.outcomes if o.status == "done"]
    skipped = [o for o in summary.outcomes if o.status == "skipped"]
    footage = sum(o.duration for o in done)
    print(
        f"{len(done)} videos processed ({footage / 60:.1f} min of footage in {summary.seconds / 60:.1f} min), "
        f"{len(skipped)} already done, {len(summary.failed)} failed; outputs in {out_dir}",
        file=sys.stderr,
    )
    for o in summary.failed:
        print(f"failed: {o.video}: {o.error}", file=sys.stderr)
    if summary.interrupted:
        print("interrupted: run the same command again to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary.failed else EXIT_OK


def evaluate(
    *,
    scores: Path,
    annotations: Path,
    fmt: Format,
    config: Path | None,
    output: Path | None,
    llmvad_fps: float,
    log_level: str | None,
) -> int:
    """``monitor eval``: frame-level figures of a batch run against benchmark annotations."""
    from monitor.offline.evaluate import evaluate as evaluate_scores
    from monitor.offline.evaluate import load_results, render

    cfg = load_config(config)
    setup_logging(log_level or cfg.log_level, ())
    try:
        truths = read_annotations(annotations, fmt)
    except AnnotationError as exc:
        return fail(str(exc))
    if not scores.is_dir():
        return fail(f"{scores}: not a folder")
    scored = load_results(
        scores,
        every_n_frames=cfg.sampling.every_n_frames,
        size=cfg.windows.size,
        stride=cfg.windows.stride,
        llmvad_fps=llmvad_fps,
    )
    if not scored:
        return fail(f"{scores}: no batch results (*.json) or LLMVAD *_anomaly_scores.pkl found")
    try:
        result = evaluate_scores(scored, truths, fmt, cfg.general_rule)
    except ValueError as exc:
        return fail(str(exc))
    out = output if output is not None else scores / f"eval_{fmt}.json"
    out.write_text(json.dumps(result, indent=1))
    print(render(result))
    print(f"written to {out}")
    return EXIT_OK


def report_page(*, run_dir: Path | None, output: Path | None, config: Path | None = None) -> int:
    """``monitor report``: one self-contained HTML page of a run's folder (default: the latest run) or
    of a batch run."""
    from monitor.live.run_folder import latest_run
    from monitor.offline.report import write_report

    cfg = load_config(config)
    if run_dir is None:
        run_dir = latest_run(cfg)
        if run_dir is None:
            return fail(f"no run yet in {cfg.outputs.dir.parent} (give the folder: monitor report DIR)")
    if not run_dir.is_dir():
        return fail(f"{run_dir}: not a folder")
    print(write_report(run_dir, output, threshold=cfg.alerting.threshold))
    return EXIT_OK


def _judge_config(
    config: Path | None, judge_model: str | None, log_level: str | None, *, calibration: bool = True
) -> AppConfig:
    cfg = with_overrides(load_config(config, calibration=calibration), judge_model=judge_model)
    setup_logging(log_level or cfg.log_level, configured_secrets(cfg))
    return cfg


def _batched(cfg: AppConfig, batch_size: int) -> AppConfig:
    return cfg.replace(model=cfg.model.model_copy(update={"max_batch": batch_size}))


def _windows(cfg: AppConfig, window: int | None, stride: int | None) -> WindowSettings:
    """The windows to judge with: the configured ``[windows]`` unless given (a stride above the size is
    cut to it)."""
    size = window or cfg.windows.size
    return WindowSettings(size=size, stride=min(size, stride or cfg.windows.stride))


def eval_judge(
    *,
    file: Path,
    config: Path | None,
    judge_model: str | None,
    window: int | None,
    stride: int | None,
    batch_size: int,
    raw: bool,
    log_level: str | None,
) -> int:
    """``monitor eval-judge``: ROC-AUC and AP of the judge on labelled descriptions, judged in the windows
    the live monitor makes (each description gets the score of the first window holding it)."""
    cfg = _batched(_judge_config(config, judge_model, log_level), batch_size)
    items = read_labelled(file)
    windows = _windows(cfg, window, stride)
    models = build_client(cfg, describe=False)
    rule = cfg.general_rule
    path = None if raw else rule.calibration
    calibration = None if path is None else load_calibration(path, models.judge, rule)
    if calibration is not None and (why := calibration.check_windows(windows.size, windows.stride)):
        return fail(f"--window/--stride: {why} ({cfg.judge.calibration}); or use --raw")
    live = live_windows(items, windows)

    async def main() -> np.ndarray:
        async with models:
            with tqdm(total=len(live.windows), desc="judging", unit="window", file=sys.stderr, disable=None) as bar:
                return await score_windows(
                    models, rule, live.texts(items), calibration=calibration, progress=bar.update
                )

    scores = asyncio.run(main())
    steps = ["calibrated" if calibration is not None else "prompted"]
    if cfg.judge.smoothing < 1 and not raw:
        scores = smooth_windows(live, scores, cfg.judge.smoothing)
        steps.append(f"smoothed over time (alpha {cfg.judge.smoothing:g})")
    print(
        f"judge: {models.judge.name}, windows of {windows.size} (stride {windows.stride}), scores {' and '.join(steps)}"
    )
    per_item = live.per_item(scores)
    judged = ~np.isnan(per_item)
    failed = int(np.isnan(scores).sum())
    if failed:
        print(f"{failed} of {len(scores)} windows were not judged (the model did not answer; see the log)")
        if not judged.any():
            return fail("no window was judged", EXIT_FAILED)
    kept = [it for it, ok in zip(items, judged, strict=True) if ok]
    anomalous = {it.video for it in kept if it.label}
    if anomalous and len(anomalous) < len({it.video for it in kept}):
        as_videos = [dataclasses.replace(it, label=int(it.video in anomalous)) for it in kept]
        print(f"roc_auc of videos, each by its highest description: {video_auc(as_videos, per_item[judged]):.4f}")
    for line in report(kept, per_item[judged]).lines():
        print(line)
    return EXIT_FAILED if failed else EXIT_OK


def calibrate_judge(
    *,
    file: Path,
    config: Path | None,
    judge_model: str | None,
    layers: tuple[int, ...],
    window: int | None,
    stride: int | None,
    l2: float | None,
    folds: int,
    batch_size: int,
    output: Path,
    log_level: str | None,
    video_labels: bool = False,
    top_share: float = 0.5,
) -> int:
    """``monitor calibrate-judge``: fit a hidden-state probe of the judge for the configured windows,
    report its cross-validated effect and write the calibration file. ``video_labels``: each line's label
    is its video's, and the probe is fitted by multiple-instance learning."""
    from monitor.offline.calibrate import cv_probe, fit_calibration, group_folds

    l2 = l2 if l2 is not None else (10.0 if video_labels else 100.0)

    cfg = _batched(_judge_config(config, judge_model, log_level, calibration=False), batch_size)
    if file.is_dir():  # the batch results of a folder of clips: video labels from their folders
        if not video_labels:
            return fail(f"{file}: a folder of batch results gives video labels; add --video-labels")
        items = read_batch_labelled(file)
    else:
        items = read_labelled(file)
    y = np.array([it.label for it in items], dtype=bool)
    if y.all() or not y.any():
        return fail(f"{file}: needs both anomalous (label 1) and normal (label 0) lines")
    videos = sorted({it.video for it in items})
    if len(videos) < folds:
        return fail(f"{file}: {len(videos)} videos; cross-validation across videos needs at least {folds}")
    if video_labels:
        mixed = sorted({it.video for it in items if it.label != items[[i.video for i in items].index(it.video)].label})
        if mixed:
            return fail(f"{file}: --video-labels, but video {mixed[0]} has lines of both labels")
        if not 0 <= top_share <= 1:
            return fail(f"--top-share {top_share}: give a share from 0 (the single highest) to 1")
    windows = _windows(cfg, window, stride)
    live = live_windows(items, windows)
    models = build_client(cfg, describe=False)
    if not models.judge.hidden_states:
        return fail(f"judge {models.judge.name} gives no hidden states: calibration needs an in-process judge")

    async def main() -> tuple[np.ndarray, np.ndarray]:
        texts = live.texts(items)
        async with models:
            with tqdm(total=2 * len(texts), desc="judging", unit="pass", file=sys.stderr, disable=None) as bar:
                return await asyncio.gather(
                    score_windows(models, cfg.general_rule, texts, progress=bar.update),
                    probe_features(models, PROBE_PROMPT, layers, texts, progress=bar.update),
                )

    by_window, features = asyncio.run(main())
    # one row per description: the probe's features and prompted score of the first window holding it
    x = features[live.first]
    prompted = by_window[live.first]
    meta: dict[str, Any] = {
        "model": models.judge.name,
        "layers": layers,
        "probe_prompt": PROBE_PROMPT,
        "fingerprint": models.judge.fingerprint,
        "prompt": cfg.general_rule.prompt_hash,
        "windows": (windows.size, windows.stride),
    }
    if video_labels:
        return _fit_from_video_labels(
            items,
            x,
            prompted,
            y,
            MilSettings(top_share=top_share, l2=l2),
            folds,
            output,
            file,
            cfg.judge.smoothing,
            meta,
        )
    fold_of = group_folds([it.video for it in items], folds)
    calibrated = 1 / (1 + np.exp(-cv_probe(x, y, fold_of, l2, prompted=prompted)))
    per_window = np.empty(len(live.windows))
    per_window[live.first] = calibrated
    smoothing = cfg.judge.smoothing
    rows = [("prompted judge", prompted), ("with calibration", calibrated)]
    if smoothing < 1:
        smoothed = live.per_item(smooth_windows(live, per_window, smoothing))
        rows.append((f"calibrated, smoothed ({smoothing:g})", smoothed))
    print(f"windows of {windows.size} (stride {windows.stride}); each description scored by its first window")
    for label, scores in rows:
        r = report(items, scores)
        print(f"{label + ':':34s} roc_auc={r.roc_auc:.4f} ap={r.ap:.4f}")
        if label.startswith("calibrated, smoothed"):
            for line in r.lines()[:-1]:
                print(f"  {line}")
    print(f"(calibrated figures: {folds}-fold cross-validation across videos)")
    cal = fit_calibration(
        x, prompted, y, fold_of, l2=l2, note=f"fitted on {file.name}: {len(items)} texts, {len(videos)} videos", **meta
    )
    return _written(cal, output)


def _written(cal: JudgeCalibration, output: Path) -> int:
    cal.save(output)
    print(f'written to {output}; use it with\n[judge]\ncalibration = "{output.resolve()}"')
    return EXIT_OK


def video_auc(items: Sequence[Labelled], scores: np.ndarray) -> float:
    """ROC-AUC of the videos (label: their lines'), each scored by its highest description."""
    best: dict[str, tuple[float, int]] = {}
    for it, s in zip(items, scores, strict=True):
        best[it.video] = (max(best.get(it.video, (-1.0, 0))[0], float(s)), it.label)
    x = np.array([s for s, _ in best.values()])
    y = np.array([lab for _, lab in best.values()], dtype=bool)
    pos, neg = x[y], x[~y]
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def _fit_from_video_labels(
    items: list[Labelled],
    x: np.ndarray,
    prompted: np.ndarray,
    y: np.ndarray,
    settings: MilSettings,
    folds: int,
    output: Path,
    file: Path,
    smoothing: float,
    meta: dict[str, Any],
) -> int:
    """The multiple-instance fit of ``calibrate-judge --video-labels``: its cross-validated effect on the
    ranking of held-out videos, then the calibration from every video."""
    from monitor.offline.calibrate import fit_mil_calibration, group_folds

    videos = [it.video for it in items]
    fold_of = group_folds(videos, folds)
    held = np.empty(len(items))
    for f in np.unique(fold_of):
        tr, te = fold_of != f, fold_of == f
        if len(set(y[tr])) < 2:
            return fail(f"{file}: too few videos of one label for {folds} folds; give more or fewer --folds")
        cal = fit_mil_calibration(
            x[tr], prompted[tr], [v for v, t in zip(videos, tr, strict=True) if t], y[tr], settings, folds=folds, **meta
        )
        held[te] = cal.score(x[te], prompted[te])
    smooth = smooth_by_video(items, held, smoothing) if smoothing < 1 else held
    base = smooth_by_video(items, prompted, smoothing) if smoothing < 1 else prompted
    print(
        f"video labels: {len(set(videos))} videos, {int(y.sum())} lines of anomalous videos, "
        f"top share {settings.top_share:g}"
    )
    print(f"video ROC-AUC (each video by its highest description, smoothed {smoothing:g}), {folds}-fold across videos:")
    print(f"  prompted judge:   {video_auc(items, base):.4f}")
    print(f"  with calibration: {video_auc(items, smooth):.4f}")
    cal = fit_mil_calibration(
        x,
        prompted,
        videos,
        y,
        settings,
        folds=folds,
        note=f"multiple-instance fit on the video labels of {file.name}: {len(items)} texts, {len(set(videos))} videos",
        **meta,
    )
    return _written(cal, output)
