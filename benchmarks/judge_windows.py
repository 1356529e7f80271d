"""The judge in the live settings: windows as the monitor makes them, and what was tried to rank better
(docs/judge.md, "The live settings").

    .venv/bin/python -m benchmarks.judge_windows [--data FILE] [--cache DIR]

Scores every text of the development set twice with the Gemma 3 270M judge and the default prompt, alone
and in a window with its two predecessors (hidden states of layers 3-15 pooled), and once as the probe
prompt (the instructions and the report, no examples; layers 3-12), then evaluates, by 5-fold
cross-validation across videos, the windows of the live monitor (``live_windows``: each description gets
the score of the first window holding it, causal EMA over the windows) and the variants of the table. Raw
scores are kept in ``--cache``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from benchmarks.common import judge_study_setup, score_now, score_requests
from monitor.offline.calibrate import cv_probe, fit_logistic, group_folds
from monitor.offline.judge_eval import (
    Labelled,
    _by_video,
    live_windows,
    report,
    smooth_by_video,
    smooth_windows,
    window_texts,
)
from pipeline.calibration import logit
from pipeline.engines.transformers import TransformersModel
from pipeline.judge import JudgeSettings, expected_score, judge_prompt, probe_request
from pipeline.prompts import PROBE_PROMPT
from pipeline.windows import WindowSettings

F = npt.NDArray[np.float64]
LAYERS = (3, 6, 9, 12, 15)
PROBE_LAYERS = tuple(range(3, 13))
# Few-shot ordinal questions (Probe-VAD's readout, with examples: the base 270M is at chance zero-shot):
# name -> (instructions, answer word, examples)
QUESTIONS: dict[str, tuple[str, str, list[tuple[str, str]]]] = {
    "violence": (
        "Security camera reports, each rated for whether someone is attacked, hit, hurt or threatened.",
        "Violence",
        [
            ("Two men punch and kick each other in the parking lot until one falls down.", "yes"),
            ("A woman walks her dog along the sidewalk.", "no"),
            ("A man points a gun at the cashier.", "yes"),
            ("Customers wait in line at the counter and pay for their items.", "no"),
            ("A man kicks and beats a dog that is tied to a pole.", "yes"),
            ("Two friends shake hands and walk away together.", "no"),
            ("Police officers push a man to the ground and handcuff him.", "yes"),
            ("A man runs across the street to catch the bus.", "no"),
        ],
    ),
    "theft": (
        "Security camera reports, each rated for whether something is stolen or a place is broken into.",
        "Theft",
        [
            ("A man breaks the car window with a rock and takes a bag from the seat.", "yes"),
            ("A worker carries boxes from the truck into the warehouse.", "no"),
            ("A woman puts a bottle from the shelf into her bag and leaves without paying.", "yes"),
            ("The shop owner opens the door and turns on the lights.", "no"),
            ("A man climbs over the fence at night and tries to open the back door with a tool.", "yes"),
            ("A man in a red shirt walks into the store and looks at the shelves.", "no"),
            ("Two masked men grab the cash register and run out.", "yes"),
            ("A car parks slowly and the driver walks into the shop.", "no"),
        ],
    ),
    "accident": (
        "Security camera reports, each rated for whether there is an accident, a fire or an explosion.",
        "Accident",
        [
            ("Two cars collide at the crossing and one of them overturns.", "yes"),
            ("A car drives slowly down the street and parks.", "no"),
            ("Flames and thick smoke come out of the building's windows.", "yes"),
            ("A police car drives past the building with its lights on.", "no"),
            ("A loud blast throws debris across the road and people run away.", "yes"),
            ("A motorcycle passes by on the road.", "no"),
            ("A truck hits a man crossing the road and he lies on the ground.", "yes"),
            ("People sit on a bench and talk while children play nearby.", "no"),
        ],
    ),
    "damage": (
        "Security camera reports, each rated for whether someone damages, breaks or vandalises property.",
        "Damage",
        [
            ("Several people smash shop windows and spray paint on the walls.", "yes"),
            ("A man sits at a desk and types on a computer.", "no"),
            ("A man kicks the door of the car until the glass breaks.", "yes"),
            ("A cleaner mops the floor of the hall.", "no"),
            ("Teenagers throw stones at the bus stop and break its glass.", "yes"),
            ("A cyclist rides past the entrance.", "no"),
            ("A man sets fire to a rubbish bin in the street.", "yes"),
            ("A woman carries a box out of the building.", "no"),
        ],
    ),
}


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


def probe_prompt_features(
    model: TransformersModel, items: list[Labelled], cache: Path, template: str = PROBE_PROMPT
) -> dict[str, F]:
    """Pooled hidden states of layers 3-12 (``L3`` ... ``L12``) and p(yes) after the prompt (``yes``) of every
    text in a probe prompt (by default the shipped one: instructions and report, no examples)."""
    path = cache / f"probe-{hashlib.sha256(template.encode()).hexdigest()[:12]}.npz"
    if path.exists():
        return {k: v.astype(np.float64) for k, v in np.load(path).items()}
    pooled: dict[int, list[np.ndarray]] = {k: [] for k in PROBE_LAYERS}
    yes: list[float] = []
    for a in range(0, len(items), 16):
        got = score_requests(model, [probe_request(template, PROBE_LAYERS, [it.text]) for it in items[a : a + 16]])
        yes += [float(r.probs[1]) for r in got]
        for k in PROBE_LAYERS:
            pooled[k].append(np.stack([r.pooled[k] for r in got]))
    z = {"yes": np.array(yes), **{f"L{k}": np.concatenate(v).astype(np.float64) for k, v in pooled.items()}}
    np.savez(path, **z)
    return z


def question_scores(model: TransformersModel, items: list[Labelled], cache: Path) -> dict[str, F]:
    """p(yes) of each few-shot category question for every text alone."""
    path = cache / "questions.npz"
    if path.exists():
        return dict(np.load(path))
    out = {}
    for name, (system, word, examples) in QUESTIONS.items():
        shots = "".join(f"Report: {r}\n{word}: {a}\n\n" for r, a in examples)
        s = JudgeSettings(system=system, prompt=shots + "{context}Report: {descriptions}\n" + word + ":")
        prompts = [judge_prompt(s, [it.text]) for it in items]
        scores = np.empty(len(items))
        for a in range(0, len(prompts), 16):
            got = score_now(model, prompts[a : a + 16], s.answers)
            scores[a : a + 16] = expected_score(np.stack([r.probs for r in got]))
        out[name] = scores
    np.savez(path, **out)
    return out


def main() -> None:
    args, items, y = judge_study_setup(__doc__, "/tmp/judge-windows")
    folds = group_folds([it.video for it in items])
    model = TransformersModel(args.model)
    z1, z3 = features(model, items, 1, args.cache), features(model, items, 3, args.cache)

    def sig(v: F) -> F:
        return np.asarray(1 / (1 + np.exp(-v)), dtype=np.float64)

    def stacked(z: dict[str, F], *layers: int | str, l2: float = 100.0, balanced: bool = False) -> F:
        """The probe on ``z``'s layers stacked with the prompted score of the same texts (the probe prompt's
        features with the default prompt's score of the text alone)."""
        x = np.hstack([z[f"L{k}"] for k in layers])
        return cv_probe(x, y, folds, l2, prompted=z.get("scores", z1["scores"]), balanced=balanced)

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
    both = cv_probe(np.hstack([z1["L6"], z3["L6"]]), y, folds, 100.0, prompted=z1["scores"], balanced=False)
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
    q = question_scores(model, items, args.cache)
    qs = np.column_stack(list(q.values()))
    for name, scores in q.items():
        rows.append((f"1 / 1: few-shot question '{name}' alone, no probe", scores))
    rows.append(("1 / 1: the four questions' mean, no probe", qs.mean(axis=1)))
    mixed = cv_probe(z1["L6"], y, folds, 100.0, prompted=(qs.mean(axis=1) + z1["scores"]) / 2, balanced=False)
    rows.append(("1 / 1: probe stacked on the mean of the default prompt and the questions", ema(sig(mixed))))
    rows.append(("1 / 1: probe layer 6, classes balanced", ema(sig(stacked(z1, 6, balanced=True)))))
    zp = probe_prompt_features(model, items, args.cache)
    for layer in (5, 6, 7, 8):
        rows.append((f"1 / 1: probe prompt, layer {layer}, balanced", ema(sig(stacked(zp, layer, balanced=True)))))
    zp["Lmean"] = np.mean([zp[f"L{k}"] for k in (5, 6, 7, 8)], axis=0)
    rows.append(
        (
            "1 / 1: probe prompt, mean of layers 5-8, balanced (the default)",
            ema(sig(stacked(zp, "mean", balanced=True))),
        )
    )
    show: Callable[[float | None], str] = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    print("| variant | ROC-AUC | vs normal videos | vs normal parts of anomalous videos |")
    print("| --- | ---: | ---: | ---: |")
    for name, scores in rows:
        r = report(items, scores)
        print(f"| {name} | {r.roc_auc:.3f} | {show(r.auc_vs_normal_videos)} | {show(r.auc_vs_anomalous_videos)} |")


if __name__ == "__main__":
    main()
