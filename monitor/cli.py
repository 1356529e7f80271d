"""The ``monitor`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from monitor.config import AppConfig, CameraConfig, ConfigError, load
from monitor.env import hf_token, load_env_file, secrets_to_hide
from monitor.logs import setup_logging
from pipeline.backend import ModelBackend, ModelLoadError
from pipeline.redaction import redact_url

if TYPE_CHECKING:
    from monitor.app import RunSummary
    from sinks.event_store import EventStore

log = logging.getLogger("monitor")

DEFAULT_CONFIG = Path("config.toml")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _load_config(path: Path | None) -> AppConfig:
    """The given config file, else ./config.toml if present, else the built-in defaults."""
    if path is not None:
        return load(path)
    return load(DEFAULT_CONFIG) if DEFAULT_CONFIG.is_file() else AppConfig()


def _camera_name(url: str, taken: set[str]) -> str:
    parts = urlsplit(url)
    base = Path(parts.path).stem if parts.path else (parts.hostname or "camera")
    if not base:
        base = parts.hostname or "camera"
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", base).strip("-")[:48] or "camera"
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    taken.add(candidate)
    return candidate


def sources_as_cameras(sources: Sequence[str]) -> tuple[CameraConfig, ...]:
    """Cameras for ``--source`` arguments: files are read once at full speed, streams are live."""
    taken: set[str] = set()
    return tuple(CameraConfig(name=_camera_name(src, taken), url=src) for src in sources)


def _preflight_files(cfg: AppConfig) -> AppConfig:
    """Report file sources that do not exist (one line each) and leave them out."""
    keep = []
    for cam in cfg.cameras:
        if not cam.is_live and not Path(cam.url).is_file():
            what = "is a directory, not a video file" if Path(cam.url).is_dir() else "file not found"
            log.error("camera %r: %s: %s", cam.name, cam.url, what)
        else:
            keep.append(cam)
    return cfg.model_copy(update={"cameras": tuple(keep)})


def load_backends(cfg: AppConfig) -> tuple[ModelBackend, ModelBackend]:
    """Load the vision-language model and the judge (the same object unless a judge model is configured)."""
    from pipeline.hf_backend import TransformersBackend

    token = hf_token()
    m, j = cfg.model, cfg.judge
    describer = TransformersBackend(
        m.id,
        device=m.device,
        dtype=m.dtype,
        revision=m.revision,
        attn_implementation=m.attn_implementation,
        token=token,
        chat_template=j.chat_template if j.model is None else "auto",
    )
    if j.model is None:
        return describer, describer
    judge = TransformersBackend(
        j.model,
        device=j.device or m.device,
        dtype=j.dtype or m.dtype,
        revision=j.revision,
        attn_implementation=m.attn_implementation,
        token=token,
        chat_template=j.chat_template,
    )
    return describer, judge


def _apply_overrides(cfg: AppConfig, args: argparse.Namespace) -> AppConfig:
    update: dict[str, object] = {}
    if getattr(args, "model", None):
        update["model"] = cfg.model.model_copy(update={"id": args.model})
    if getattr(args, "judge_model", None):
        update["judge"] = cfg.judge.model_copy(update={"model": args.judge_model})
    if getattr(args, "source", None):
        update["cameras"] = sources_as_cameras(args.source)
    if getattr(args, "output", None):
        update["outputs"] = cfg.outputs.model_copy(update={"dir": Path(args.output)})
    return cfg.model_copy(update=update)


# -- commands ----------------------------------------------------------------------------------------


def cmd_check_config(args: argparse.Namespace) -> int:
    path = Path(args.path)
    cfg = load(path)
    print(f"{path}: OK")
    print(f"  model: {cfg.model.id} (device {cfg.model.device}, dtype {cfg.model.dtype}, batch {cfg.model.max_batch})")
    print(f"  judge: {cfg.judge.model or 'the model itself'}")
    print(f"  windows: size {cfg.windows.size}, stride {cfg.windows.stride}; alert threshold {cfg.alerting.threshold}")
    for cam in cfg.cameras:
        kind = "live" if cam.is_live else ("file, paced" if cam.realtime else "file")
        print(f"  camera {cam.name}: {redact_url(cam.url)} ({kind})")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from monitor.app import Monitor
    from monitor.outputs import build_sinks

    cfg = _apply_overrides(_load_config(args.config), args)
    setup_logging(args.log_level or cfg.log_level, secrets_to_hide(c.url for c in cfg.cameras))
    if not cfg.cameras:
        return _fail("no cameras: add [[cameras]] to the config or pass --source URL_OR_PATH")
    requested = len(cfg.cameras)
    cfg = _preflight_files(cfg)
    if not cfg.cameras:
        return _fail("none of the sources can be read")
    describer, judge = load_backends(cfg)
    sinks, mqtt = build_sinks(cfg)
    monitor = Monitor(cfg, describer=describer, judge=judge, sinks=sinks, max_seconds=args.max_seconds)
    if cfg.metrics.port is not None:
        from monitor.prometheus import MonitorCollector, serve

        serve(MonitorCollector(monitor, mqtt), cfg.metrics.port, cfg.metrics.address)

    def outcome(summary: RunSummary) -> int:
        return EXIT_FAILED if summary.failed or len(summary.cameras) < requested else EXIT_OK

    if args.console:
        from monitor.console.app import ConsoleSink, run_with_pipeline
        from monitor.console.feed import ConsoleFeed

        feed = ConsoleFeed()
        monitor.sinks = [*sinks, ConsoleSink(feed)]
        history = cfg.store.path if cfg.store.enabled and cfg.store.path.is_file() else None
        summary = run_with_pipeline(
            monitor.run, feed, threshold=cfg.alerting.threshold, span_s=args.span, history=history, hours=args.hours
        )
        return outcome(summary)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal(signame: str) -> None:
            if stop.is_set():
                log.warning("second %s: exiting now", signame)
                os._exit(EXIT_INTERRUPTED)
            log.info("%s received: shutting down", signame)
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig.name)
        return outcome(await monitor.run(stop))

    return asyncio.run(main())


def cmd_console(args: argparse.Namespace) -> int:
    from monitor.console.app import run_subscriber
    from monitor.console.mqtt_feed import BrokerAddress

    cfg = _load_config(args.config)
    setup_logging(args.log_level or cfg.log_level, secrets_to_hide([args.broker or ""]))
    if args.broker:
        try:
            address = BrokerAddress.parse(args.broker)
        except ValueError as exc:
            return _fail(f"--broker: {exc}")
    else:
        m = cfg.mqtt
        address = BrokerAddress(m.host, m.port, m.username, m.password, tls=m.tls is not None)
    ca_file = args.ca_file or (str(cfg.mqtt.tls.ca_file) if cfg.mqtt.tls and cfg.mqtt.tls.ca_file else None)
    history = Path(args.history) if args.history else (cfg.store.path if cfg.store.path.is_file() else None)
    threshold = args.threshold if args.threshold is not None else cfg.alerting.threshold
    return run_subscriber(
        address,
        args.prefix or cfg.mqtt.topic_prefix,
        threshold=threshold,
        span_s=args.span,
        history=history,
        hours=args.hours,
        ca_file=ca_file,
    )


def cmd_eval_judge(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from monitor.app import calibration_for, judge_settings
    from monitor.eval_judge import read_labelled, report, score_items, smooth_by_video

    cfg = _load_config(args.config)
    setup_logging(args.log_level or cfg.log_level, secrets_to_hide(()))
    items = read_labelled(Path(args.file))
    backend = _judge_backend(cfg, args.judge_model)
    calibration = None if args.raw else calibration_for(cfg, backend)
    with tqdm(total=len(items), desc="judging", unit="text", file=sys.stderr, disable=None) as bar:
        scores, _ = score_items(
            backend,
            judge_settings(cfg),
            items,
            window=args.window,
            batch_size=args.batch_size,
            calibration=calibration,
            progress=bar.update,
        )
    steps = ["calibrated" if calibration is not None else "prompted"]
    if cfg.judge.smoothing < 1 and not args.raw:
        scores = smooth_by_video(items, scores, cfg.judge.smoothing)
        steps.append(f"smoothed over time (alpha {cfg.judge.smoothing:g})")
    print(f"judge: {backend.name}, window {args.window}, scores {' and '.join(steps)}")
    for line in report(items, scores).lines():
        print(line)
    return EXIT_OK


def _open_history(args: argparse.Namespace) -> EventStore:
    """The event store of ``--db`` or of the configuration, read-only; FileNotFoundError if there is none."""
    from sinks.event_store import EventStore

    return EventStore(Path(args.db) if args.db else _load_config(args.config).store.path, readonly=True)


def cmd_events(args: argparse.Namespace) -> int:
    from monitor.history import parse_time, render

    try:
        since = parse_time(args.since) if args.since else None
        until = parse_time(args.until) if args.until else None
        store = _open_history(args)
    except (ValueError, FileNotFoundError) as exc:
        return _fail(str(exc))
    with contextlib.closing(store):
        print(render(store.events(camera=args.camera, since=since, until=until), args.format))
    return EXIT_OK


def cmd_event_show(args: argparse.Namespace) -> int:
    from monitor.history import show

    try:
        store = _open_history(args)
    except FileNotFoundError as exc:
        return _fail(str(exc))
    with contextlib.closing(store):
        event = store.event(args.id)
        if event is None:
            return _fail(f"no event {args.id!r} in {store.path} (or the prefix is not unique)", EXIT_FAILED)
        target = Path(args.snapshot) if args.snapshot else Path(f"{event.id}.jpg")
        print(show(store, event, target))
    return EXIT_OK


def cmd_batch(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from monitor.annotations import AnnotationError, read_annotations
    from monitor.batch import (
        BatchSummary,
        VideoOutcome,
        plan_jobs,
        probe_frames,
        run_batch,
        settings_fingerprint,
        write_summary,
    )

    cfg = _apply_overrides(_load_config(args.config), args)
    setup_logging(args.log_level or cfg.log_level, secrets_to_hide(()))
    video_dir = Path(args.video_dir)
    if not video_dir.is_dir():
        return _fail(f"{video_dir}: not a folder")
    out_dir = Path(args.output) if args.output else video_dir.with_name(video_dir.name + "-results")
    truths = None
    if args.annotations:
        try:
            truths = read_annotations(Path(args.annotations), args.format)
        except AnnotationError as exc:
            return _fail(str(exc))
    jobs = plan_jobs(video_dir, out_dir)
    if not jobs:
        return _fail(f"{video_dir}: no videos found")
    out_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = settings_fingerprint(cfg)
    if all(job.done_with(fingerprint) for job in jobs):  # nothing to do: no need to load the model
        write_summary(out_dir, BatchSummary(tuple(VideoOutcome(str(j.rel), "skipped") for j in jobs), 0.0, False))
        print(f"all {len(jobs)} videos are already done with these settings; outputs in {out_dir}", file=sys.stderr)
        return EXIT_OK
    for job in jobs:
        job.estimate = None if job.done_with(fingerprint) else probe_frames(job.path)
    total = sum(j.estimate or 0 for j in jobs) or None
    describer, judge = load_backends(cfg)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        with tqdm(total=total, unit="frame", desc="frames", file=sys.stderr, disable=None, dynamic_ncols=True) as bar:

            def progress(frames: int, done: int, of: int, failed: int) -> None:
                bar.n = frames
                bar.set_postfix_str(f"videos {done}/{of}" + (f", {failed} failed" if failed else ""), refresh=False)
                bar.refresh()

            summary = await run_batch(
                cfg,
                jobs,
                describer=describer,
                judge=judge,
                parallel=args.parallel,
                pickles=args.pickle,
                truths=truths,
                fmt=args.format,
                progress=progress,
                stop=stop,
            )
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

    return asyncio.run(main())


def cmd_eval(args: argparse.Namespace) -> int:
    from monitor.annotations import AnnotationError, read_annotations
    from monitor.app import alert_settings
    from monitor.evaluate import evaluate, load_results, render

    cfg = _load_config(args.config)
    setup_logging(args.log_level or cfg.log_level, ())
    try:
        truths = read_annotations(Path(args.annotations), args.format)
    except AnnotationError as exc:
        return _fail(str(exc))
    scores_dir = Path(args.scores)
    if not scores_dir.is_dir():
        return _fail(f"{scores_dir}: not a folder")
    scored = load_results(
        scores_dir,
        every_n_frames=cfg.sampling.every_n_frames,
        size=cfg.windows.size,
        stride=cfg.windows.stride,
        llmvad_fps=args.llmvad_fps,
    )
    if not scored:
        return _fail(f"{scores_dir}: no batch results (*.json) or LLMVAD *_anomaly_scores.pkl found")
    try:
        result = evaluate(scored, truths, args.format, alert_settings(cfg))
    except ValueError as exc:
        return _fail(str(exc))
    out = Path(args.output) if args.output else scores_dir / f"eval_{args.format}.json"
    out.write_text(json.dumps(result, indent=1))
    print(render(result))
    print(f"written to {out}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from monitor.report import write_report

    run_dir = Path(args.dir)
    if not run_dir.is_dir():
        return _fail(f"{run_dir}: not a folder")
    print(write_report(run_dir, Path(args.output) if args.output else None))
    return EXIT_OK


def _judge_backend(cfg: AppConfig, judge_model: str | None) -> ModelBackend:
    from pipeline.hf_backend import TransformersBackend

    model = judge_model or cfg.judge.model or cfg.model.id
    return TransformersBackend(
        model,
        device=cfg.judge.device or cfg.model.device,
        dtype=cfg.judge.dtype or cfg.model.dtype,
        token=hf_token(),
        chat_template=cfg.judge.chat_template,
    )


def cmd_calibrate_judge(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from monitor.app import judge_settings
    from monitor.eval_judge import read_labelled, report, score_items, smooth_by_video
    from monitor.probe import cv_probe, fit_calibration, group_folds, prompt_hash

    cfg = _load_config(args.config)
    setup_logging(args.log_level or cfg.log_level, secrets_to_hide(()))
    items = read_labelled(Path(args.file))
    y = np.array([it.label for it in items], dtype=bool)
    if y.all() or not y.any():
        return _fail(f"{args.file}: needs both anomalous (label 1) and normal (label 0) lines")
    videos = sorted({it.video for it in items})
    if len(videos) < args.folds:
        return _fail(f"{args.file}: {len(videos)} videos; cross-validation across videos needs at least {args.folds}")
    backend = _judge_backend(cfg, args.judge_model)
    settings = judge_settings(cfg)
    with tqdm(total=len(items), desc="judging", unit="text", file=sys.stderr, disable=None) as bar:
        prompted, pooled = score_items(
            backend,
            settings,
            items,
            window=args.window,
            batch_size=args.batch_size,
            pool_layers=(args.layer,),
            progress=bar.update,
        )
    x = pooled[args.layer].astype(np.float64)
    folds = group_folds([it.video for it in items], args.folds)
    calibrated = 1 / (1 + np.exp(-cv_probe(x, y, folds, args.l2, prompted=prompted)))
    rows = [("prompted judge", prompted), ("with calibration", calibrated)]
    if cfg.judge.smoothing < 1:
        rows.append(
            (f"calibrated, smoothed ({cfg.judge.smoothing:g})", smooth_by_video(items, calibrated, cfg.judge.smoothing))
        )
    for label, scores in rows:
        r = report(items, scores)
        print(f"{label + ':':34s} roc_auc={r.roc_auc:.4f} ap={r.ap:.4f}")
    print(f"(calibrated figures: {args.folds}-fold cross-validation across videos)")
    cal = fit_calibration(
        x,
        prompted,
        y,
        folds,
        model=backend.name,
        layer=args.layer,
        l2=args.l2,
        note=f"fitted on {Path(args.file).name}: {len(items)} texts, {len(videos)} videos, window {args.window}",
        fingerprint=backend.fingerprint,
        prompt=prompt_hash(settings.system, settings.prompt, settings.answers),
    )
    out_path = Path(args.output)
    cal.save(out_path)
    print(f'written to {out_path}; use it with\n[judge]\ncalibration = "{out_path.resolve()}"')
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="monitor", description="Real-time video anomaly monitor (Gemma 3).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the pipeline on cameras or files")
    run.add_argument("--config", type=Path, help="configuration file (default: ./config.toml if present)")
    run.add_argument(
        "--source",
        action="append",
        metavar="URL_OR_PATH",
        help="a camera URL or video file; replaces the configured cameras (repeatable)",
    )
    run.add_argument("--model", metavar="ID_OR_DIR", help="vision-language model (hub id or local directory)")
    run.add_argument("--judge-model", metavar="ID_OR_DIR", help="separate text-only judge model")
    run.add_argument("--max-seconds", type=float, metavar="S", help="stop after this many seconds")
    run.add_argument("--output", type=Path, metavar="DIR", help="folder for results.jsonl and snapshots")
    run.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.add_argument("--console", action="store_true", help="open the operator console over this pipeline")
    run.add_argument("--span", type=float, default=300.0, metavar="S", help="console: seconds shown (default 300)")
    run.add_argument("--hours", type=float, default=1.0, metavar="H", help="console: hours of history to load")
    run.set_defaults(func=cmd_run)

    con = sub.add_parser("console", help="the operator console, as an MQTT subscriber")
    con.add_argument(
        "--broker", metavar="URL", help="mqtt://[user:pass@]host:port or mqtts://… (default: [mqtt] of the config)"
    )
    con.add_argument("--prefix", metavar="P", help="topic prefix (default: [mqtt] topic_prefix, llmvad)")
    con.add_argument("--config", type=Path, help="configuration file (broker, threshold, history)")
    con.add_argument("--threshold", type=float, help="alert threshold line (default: [alerting] threshold)")
    con.add_argument("--span", type=float, default=300.0, metavar="S", help="seconds shown (default 300)")
    con.add_argument(
        "--history", metavar="FILE", help="event store to load recent history from (default: [store] path, if present)"
    )
    con.add_argument("--hours", type=float, default=1.0, metavar="H", help="hours of history to load (default 1)")
    con.add_argument("--ca-file", metavar="PEM", help="CA for mqtts:// (default: the system's)")
    con.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    con.set_defaults(func=cmd_console)

    check = sub.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("path", nargs="?", default=str(DEFAULT_CONFIG), metavar="PATH")
    check.set_defaults(func=cmd_check_config)

    events = sub.add_parser("events", help="list events from the history (or: events show ID)")
    events.add_argument("--config", type=Path, help="configuration file (where the history is)")
    events.add_argument("--db", metavar="PATH", help="the history file (default: [store] path of the config)")
    events.add_argument("--camera", metavar="C")
    events.add_argument("--since", metavar="T", help="e.g. 2h, 7d, 2026-11-25T08:00 or a Unix time")
    events.add_argument("--until", metavar="T")
    events.add_argument("--format", choices=["table", "json", "csv"], default="table")
    events.set_defaults(func=cmd_events)
    events_sub = events.add_subparsers(dest="events_command", metavar="show")
    show = events_sub.add_parser("show", help="one event with its descriptions; writes its snapshot")
    show.add_argument("id", help="event id (or a unique prefix)")
    show.add_argument("--snapshot", metavar="FILE", help="where to write the JPEG (default: ./<id>.jpg)")
    show.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    show.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS)
    show.set_defaults(func=cmd_event_show)

    batch = sub.add_parser("batch", help="process every video in a folder (recursively)")
    batch.add_argument("video_dir", metavar="VIDEO_DIR")
    batch.add_argument("--output", metavar="DIR", help="outputs (default: VIDEO_DIR-results beside it)")
    batch.add_argument("--config", type=Path, help="configuration file (default: ./config.toml if present)")
    batch.add_argument("--model", metavar="ID_OR_DIR")
    batch.add_argument("--judge-model", metavar="ID_OR_DIR")
    batch.add_argument("--parallel", type=int, default=4, metavar="N", help="videos decoded at once (default 4)")
    batch.add_argument("--pickle", action="store_true", help="also write LLMVAD's three pickles per video")
    batch.add_argument("--annotations", metavar="FILE", help="ground truth to shade in the plots")
    batch.add_argument("--format", choices=["ucf-crime", "xd-violence"], default="ucf-crime")
    batch.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    batch.set_defaults(func=cmd_batch)

    evl = sub.add_parser("eval", help="frame-level ROC-AUC/AP of a batch run against benchmark annotations")
    evl.add_argument("--scores", required=True, metavar="DIR", help="a monitor batch output folder (or LLMVAD pickles)")
    evl.add_argument("--annotations", required=True, metavar="FILE")
    evl.add_argument("--format", choices=["ucf-crime", "xd-violence"], required=True)
    evl.add_argument("--config", type=Path, help="threshold and alert settings (default: ./config.toml)")
    evl.add_argument("--output", metavar="FILE", help="figures as JSON (default: DIR/eval_FORMAT.json)")
    evl.add_argument("--llmvad-fps", type=float, default=30.0, help="frame rate behind LLMVAD pickles (default 30)")
    evl.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    evl.set_defaults(func=cmd_eval)

    rep = sub.add_parser("report", help="one self-contained HTML page of a batch run")
    rep.add_argument("dir", metavar="DIR")
    rep.add_argument("--output", metavar="FILE", help="default: DIR/report.html")
    rep.set_defaults(func=cmd_report)

    cal = sub.add_parser("calibrate-judge", help="fit a hidden-state probe of the judge on labelled descriptions")
    cal.add_argument("file", metavar="FILE.jsonl", help="lines of video, start, text, label (as eval-judge)")
    cal.add_argument("--config", type=Path, help="configuration file (judge model and prompt)")
    cal.add_argument("--judge-model", metavar="ID_OR_DIR")
    cal.add_argument("--layer", type=int, default=6, metavar="N", help="hidden layer to probe (default 6)")
    cal.add_argument("--window", type=int, default=1, metavar="N", help="texts per window (default 1)")
    cal.add_argument("--l2", type=float, default=100.0, help="ridge penalty of the probe (default 100)")
    cal.add_argument("--folds", type=int, default=5, help="cross-validation folds across videos (default 5)")
    cal.add_argument("--batch-size", type=int, default=8, metavar="B")
    cal.add_argument("--output", default="judge-calibration.json", metavar="FILE")
    cal.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    cal.set_defaults(func=cmd_calibrate_judge)

    ev = sub.add_parser("eval-judge", help="score labelled descriptions; print ROC-AUC and AP")
    ev.add_argument("file", metavar="FILE.jsonl")
    ev.add_argument("--config", type=Path, help="configuration file (judge prompt and answers)")
    ev.add_argument("--judge-model", metavar="ID_OR_DIR", help="judge model (default: the configured judge)")
    ev.add_argument(
        "--window",
        type=int,
        default=1,
        metavar="N",
        help="judge each text with the N-1 previous texts of its video (default 1)",
    )
    ev.add_argument("--batch-size", type=int, default=8, metavar="B")
    ev.add_argument("--raw", action="store_true", help="the prompted score alone: no calibration, no smoothing")
    ev.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    ev.set_defaults(func=cmd_eval_judge)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``monitor`` console script."""
    from monitor.eval_judge import DataError

    args = build_parser().parse_args(argv)
    if getattr(args, "window", 1) < 1 or getattr(args, "batch_size", 1) < 1 or getattr(args, "parallel", 1) < 1:
        return _fail("--window, --batch-size and --parallel must be at least 1")
    if getattr(args, "max_seconds", None) is not None and args.max_seconds <= 0:
        return _fail("--max-seconds must be positive")
    load_env_file(Path(".env"))
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        for key, msg in exc.problems:
            print(f"error: {exc.source}: {key + ': ' if key else ''}{msg}", file=sys.stderr)
        return EXIT_USAGE
    except (ModelLoadError, DataError) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
