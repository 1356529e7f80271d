"""Variants of the calibrated judge's probe, in the live settings (docs/judge.md, "Better ranking").

    .venv/bin/python -m benchmarks.judge_probe_study [--data FILE] [--cache DIR]

Reads every text of the development set in four wordings of the probe prompt with the Gemma 3 270M judge
(hidden states of layers 3-12 mean-pooled over the whole text, and the prompt's own p(yes) after
`Anomaly:`), and once in the default few-shot prompt (its score, for the stacking), then evaluates by 5-fold
cross-validation across videos, windows of 1, causal EMA: the ridge strength, the layers averaged, the
wording, weighing the hard negatives up, and the smoothing. About 10 minutes on 2 cores; raw scores are kept
in ``--cache``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from benchmarks.common import judge_study_setup
from benchmarks.judge_windows import PROBE_LAYERS, features, probe_prompt_features
from monitor.offline.calibrate import cv_probe, group_folds
from monitor.offline.judge_eval import report, smooth_by_video
from pipeline.calibration import logit
from pipeline.engines.transformers import TransformersModel
from pipeline.prompts import PROBE_PROMPT

F = npt.NDArray[np.float64]
TAIL = "\n\n{context}Report: {descriptions}\nAnomaly:"
WORDINGS = {
    "the default": PROBE_PROMPT,
    "more categories named": "Security camera event reports, each rated for whether it shows an anomaly (crime, "
    "violence, a fight, an assault, abuse, a robbery, a burglary or break-in, shoplifting, theft, vandalism, arson, "
    "fire, an explosion, a shooting, an accident, or another dangerous or unusual event)." + TAIL,
    "normal activity named too": "Security camera event reports, each rated for whether it shows an anomaly "
    "(crime, violence, an accident, fire, vandalism, theft, or another dangerous or unusual event) or normal "
    "activity (people walking, shopping, driving, working or talking)." + TAIL,
    "a guard's framing": "A security guard reads each camera event report and decides whether it shows a crime, "
    "violence, an accident, fire, vandalism, theft, or another dangerous or unusual event that needs attention." + TAIL,
}


def main() -> None:
    args, items, y = judge_study_setup(__doc__, "/tmp/judge-probe")
    folds = group_folds([it.video for it in items])
    model = TransformersModel(args.model)
    prompted = features(model, items, 1, args.cache)["scores"]
    z = {name: probe_prompt_features(model, items, args.cache, t) for name, t in WORDINGS.items()}

    def mean_of(w: dict[str, F], layers: tuple[int, ...] = (5, 6, 7, 8)) -> F:
        return np.asarray(np.mean([w[f"L{k}"] for k in layers], axis=0), dtype=np.float64)

    def sig(v: F) -> F:
        return np.asarray(1 / (1 + np.exp(-v)), dtype=np.float64)

    def live(x: F, l2: float = 100.0, weight: F | None = None, alpha: float = 0.5) -> F:
        return smooth_by_video(items, sig(cv_probe(x, y, folds, l2, prompted=prompted, sample_weight=weight)), alpha)

    x = mean_of(z["the default"])
    rows: list[tuple[str, F]] = [("the default: layers 5-8 averaged, l2 100, EMA 0.5", live(x))]
    rows += [(f"l2 {l2:g}", live(x, l2)) for l2 in (30.0, 60.0, 200.0, 400.0)]
    for layers in ((4, 5, 6, 7, 8), (5, 6, 7, 8, 9), (6, 7, 8), tuple(range(4, 11)), PROBE_LAYERS):
        rows.append((f"layers {layers[0]}-{layers[-1]} averaged", live(mean_of(z["the default"], layers))))
    rows += [(f"wording: {name}", live(mean_of(w))) for name, w in z.items() if name != "the default"]
    rows.append(("the four wordings' features averaged", live(np.mean([mean_of(w) for w in z.values()], axis=0))))
    own = logit(z["the default"]["yes"])
    rows.append(("the probe prompt's own logit of 'yes' as one more feature", live(np.column_stack([x, own]))))
    anomalous = {it.video for it in items if it.label}
    hard = np.array([not it.label and it.video in anomalous for it in items])
    for k in (1.5, 2.0, 3.0):
        w = np.where(hard, k, 1.0)
        w[y] = w[~y].sum() / y.sum()  # the anomalies still weigh as much as all the normal texts
        rows.append((f"normal parts of anomalous videos weighed x{k:g}", live(x, weight=w / w.mean())))
    raw = sig(cv_probe(x, y, folds, 100.0, prompted=prompted))
    rows += [(f"EMA {a:g}", smooth_by_video(items, raw, a)) for a in (0.4, 0.6)]
    for k in (0.8, 0.9):
        rows.append((f"peak-keeping max({k:g} raw, EMA 0.5)", np.maximum(k * raw, smooth_by_video(items, raw, 0.5))))
    print("| variant | ROC-AUC | vs normal videos | vs normal parts of anomalous videos |")
    print("| --- | ---: | ---: | ---: |")
    for name, scores in rows:
        r = report(items, scores)
        cells = (r.roc_auc, r.auc_vs_normal_videos or 0.0, r.auc_vs_anomalous_videos or 0.0)
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in cells) + " |")


if __name__ == "__main__":
    main()
