"""The judge in the live settings: windows as the monitor makes them, and what was tried to rank better
(docs/judge.md, "The live settings").

    .venv/bin/python -m benchmarks.judge_windows [--data FILE] [--cache DIR]

Scores every text of the development set twice with the Gemma 3 270M judge and the default prompt, alone
and in a window with its two predecessors (hidden states of layers 3-15 pooled), then evaluates, by 5-fold
cross-validation across videos, the windows of the live monitor (``live_windows``: each description gets
the score of the first window holding it, causal EMA over the windows) and the variants of the table.
Raw scores are kept in ``--cache``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from benchmarks.common import ROOT, score_now
from monitor.offline.calibrate import cv_probe, fit_logistic, group_folds
from monitor.offline.judge_eval import (
    Labelled,
    _by_video,
    live_windows,
    read_labelled,
    report,
    smooth_by_video,
    smooth_windows,
    window_texts,
)
from pipeline.calibration import logit
from pipeline.engines.transformers import TransformersModel
from pipeline.judge import JudgeSettings, expected_score, judge_prompt
from pipeline.windows import WindowSettings

F = npt.NDArray[np.float64]
LAYERS = (3, 6, 9, 12, 15)


def features(model: TransformersModel, items: list[Labelled], window: int, cache: Path) -> dict[str, F]:
    path = cache / f"window{window}.npz"
    if path.exists():
        return {k: v.astype(np.float64) for k, v in np.load(path).items()}
    t0 = time.time()
    s = JudgeSettings()
    prompts = [judge_prompt(s, t) for t in window_texts(items, window)]
    scores, pooled = np.empty(len(items)), {layer: [] for layer in LAYERS}
    for a in range(0, len(prompts), 8):
        out = score_now(model, prompts[a : a + 8], s.answers, LAYERS)
        scores[a : a + 8] = expected_score(np.stack([r.probs for r in out]))
        for layer in LAYERS:
            pooled[layer].append(np.stack([r.pooled[layer] for r in out]))
    z = {"scores": scores, **{f"L{k}": np.concatenate(v).astype(np.float64) for k, v in pooled.items()}}
    np.savez(path, **z)
    print(f"  scored windows of {window} in {time.time() - t0:.0f} s", flush=True)
    return z


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "judge_dev.jsonl")
    ap.add_argument("--model", default=str(ROOT / ".models" / "gemma3-270m"))
    ap.add_argument("--cache", type=Path, default=Path("/tmp/judge-windows"))
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    items = read_labelled(args.data)
    y = np.array([it.label for it in items], dtype=bool)
    folds = group_folds([it.video for it in items])
    model = TransformersModel(args.model)
    z1, z3 = features(model, items, 1, args.cache), features(model, items, 3, args.cache)

    def sig(v: F) -> F:
        return np.asarray(1 / (1 + np.exp(-v)), dtype=np.float64)

    def stacked(z: dict[str, F], *layers: int, l2: float = 100.0) -> F:
        return cv_probe(np.hstack([z[f"L{k}"] for k in layers]), y, folds, l2, prompted=z["scores"])

    rows: list[tuple[str, F]] = []
    o1, o3 = stacked(z1, 6), stacked(z3, 6)
    # the old default: windows of 3 / 2, judged as one text, with a calibration fitted on single texts
    live = live_windows(items, WindowSettings(size=3, stride=2))
    last = np.array([w[-1] for w in live.windows])  # the window of 3 ending at its last text is z3's row

    def at_live(per_row: F) -> F:
        return live.per_item(smooth_windows(live, per_row[last], 0.5))

    mismatched = np.empty(len(y))
    for f in np.unique(folds):
        tr, te = folds != f, folds == f
        x1, x3 = z1["L6"], z3["L6"]
        mu, sd = x1[tr].mean(0), x1[tr].std(0) + 1e-6
        w, b = fit_logistic((x1[tr] - mu) / sd, y[tr], l2=100.0)
        cw, cb = fit_logistic(np.column_stack([(x1[tr] - mu) / sd @ w + b, logit(z1["scores"][tr])]), y[tr], l2=1e-3)
        mismatched[te] = np.column_stack([(x3[te] - mu) / sd @ w + b, logit(z3["scores"][te])]) @ cw + cb
    rows.append(("3 / 2, calibration fitted on single texts (what ran)", at_live(sig(mismatched))))
    rows.append(("3 / 2, calibration fitted for these windows", at_live(sig(o3))))
    single = sig(o1)
    for size, stride in ((3, 2), (2, 2), (2, 1), (3, 1)):
        lw = live_windows(items, WindowSettings(size=size, stride=stride))
        for name, pool in (("mean", np.mean), ("max", np.max)):
            ws = np.array([pool(single[list(w)]) for w in lw.windows])
            rows.append((f"{size} / {stride}, each text alone, {name}", lw.per_item(smooth_windows(lw, ws, 0.5))))
    ema: Callable[[F], F] = lambda s: smooth_by_video(items, s, 0.5)  # noqa: E731
    rows.append(("1 / 1 (the default): probe layer 6", ema(single)))
    for layer in (3, 9, 12):
        rows.append((f"1 / 1: probe layer {layer}", ema(sig(stacked(z1, layer)))))
    for layers, l2 in (((6, 9), 100.0), ((6, 9), 300.0), ((3, 6, 9), 300.0), ((3, 6, 9, 12), 300.0)):
        rows.append((f"1 / 1: layers {'+'.join(map(str, layers))}, l2 {l2:g}", ema(sig(stacked(z1, *layers, l2=l2)))))
    both = cv_probe(np.hstack([z1["L6"], z3["L6"]]), y, folds, 100.0, prompted=z1["scores"])
    rows.append(("1 / 1: single + window-of-3 features", ema(sig(both))))
    rows.append(
        ("1 / 1: single + window-of-3 logits averaged, EMA 0.7", smooth_by_video(items, sig((o1 + o3) / 2), 0.7))
    )
    centred = o1.copy()
    for idxs in _by_video(items).values():
        for k, i in enumerate(idxs):
            centred[i] = o1[i] - 0.3 * (float(np.mean(o1[idxs[:k]])) if k else 0.0)
    rows.append(("1 / 1: minus the video's causal running mean (0.3)", ema(sig(centred))))
    rows.append(("1 / 1: EMA on the logit", sig(smooth_by_video(items, o1, 0.5))))
    show: Callable[[float | None], str] = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    print("| variant | ROC-AUC | vs normal videos | vs normal parts of anomalous videos |")
    print("| --- | ---: | ---: | ---: |")
    for name, scores in rows:
        r = report(items, scores)
        print(f"| {name} | {r.roc_auc:.3f} | {show(r.auc_vs_normal_videos)} | {show(r.auc_vs_anomalous_videos)} |")


if __name__ == "__main__":
    main()
