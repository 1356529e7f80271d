"""Fitting a judge calibration: a logistic-regression probe on the judge's hidden states, from labelled
descriptions (cross-validated across videos) or from video-level labels (multiple-instance learning),
NumPy only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from pipeline.calibration import JudgeCalibration, logit

F = npt.NDArray[np.float64]


def fit_logistic(
    x: F,
    y: npt.NDArray[np.bool_],
    *,
    l2: float = 1.0,
    iters: int = 50,
    balanced: bool = False,
    sample_weight: F | None = None,
    init: tuple[F, float] | None = None,
) -> tuple[F, float]:
    """L2-regularised logistic regression by Newton's method; returns (weights, bias). ``balanced`` weighs
    each class by the inverse of its share, so the rare anomalies count as much as the normal texts;
    ``sample_weight`` gives each item its own weight instead; ``init`` starts from a fit near the answer."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(d + 1) if init is None else np.append(init[0], init[1])
    reg = np.full(d + 1, l2)
    reg[-1] = 0.0  # no penalty on the bias
    t = y.astype(np.float64)
    share = t.mean()
    if sample_weight is not None:
        sw = np.asarray(sample_weight, dtype=np.float64)
    elif balanced and 0 < share < 1:
        sw = np.where(y, 0.5 / share, 0.5 / (1 - share))
    else:
        sw = np.ones(n)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -30, 30)))
        grad = xb.T @ (sw * (p - t)) + reg * w
        hess = (xb * (sw * p * (1 - p))[:, None]).T @ xb + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return w[:-1], float(w[-1])


def group_folds(groups: list[str], k: int = 5, seed: int = 0) -> npt.NDArray[np.int64]:
    """A fold number per item such that all items of a group (a video) share one fold."""
    names = sorted(set(groups))
    rng = np.random.default_rng(seed)
    rng.shuffle(names)
    fold_of = {g: i % k for i, g in enumerate(names)}
    return np.array([fold_of[g] for g in groups], dtype=np.int64)


def cv_probe(
    x: F,
    y: npt.NDArray[np.bool_],
    folds: npt.NDArray[np.int64],
    l2: float,
    prompted: F | None = None,
    *,
    balanced: bool = True,
    sample_weight: F | None = None,
) -> F:
    """Out-of-fold logits of the probe or, with ``prompted``, of its stacking with the prompted score's logit
    (whose two weights are fitted on out-of-fold probe logits inside each training part); classes balanced
    unless told otherwise, or each item weighed by ``sample_weight``."""
    out = np.empty(len(y))
    for f in np.unique(folds):
        tr, te = folds != f, folds == f
        mu, sd = standardisation(x[tr])
        sw = None if sample_weight is None else sample_weight[tr]
        w, b = fit_logistic((x[tr] - mu) / sd, y[tr], l2=l2, balanced=balanced, sample_weight=sw)
        probe_te = ((x[te] - mu) / sd) @ w + b
        if prompted is None:
            out[te] = probe_te
            continue
        inner = cv_probe(x[tr], y[tr], folds[tr], l2, balanced=balanced, sample_weight=sw)
        stack = np.column_stack([inner, logit(prompted[tr])])
        cw, cb = fit_logistic(stack, y[tr], l2=1e-3, balanced=balanced, sample_weight=sw)
        out[te] = np.column_stack([probe_te, logit(prompted[te])]) @ cw + cb
    return out


def fit_calibration(
    features: F,
    prompted: F,
    y: npt.NDArray[np.bool_],
    folds: npt.NDArray[np.int64],
    *,
    model: str,
    layers: tuple[int, ...],
    probe_prompt: str,
    l2: float = 100.0,
    note: str = "",
    fingerprint: str = "",
    prompt: str = "",
    windows: tuple[int, int] = (1, 1),
) -> JudgeCalibration:
    """Fit the probe on all items (standardised features, classes balanced) and the combination weights on
    its out-of-fold logits, so the combination does not trust an over-fitted probe."""
    mean, scale = standardisation(features)
    probe = fit_logistic((features - mean) / scale, y, l2=l2, balanced=True)
    oof = cv_probe(features, y, folds, l2)
    combine = fit_logistic(np.column_stack([oof, logit(prompted)]), y, l2=1e-3, balanced=True)
    return _calibration(mean, scale, probe, combine, model, layers, probe_prompt, note, fingerprint, prompt, windows)


def standardisation(features: F) -> tuple[F, F]:
    """The mean and scale that standardise ``features`` for a probe."""
    return features.mean(axis=0), features.std(axis=0) + 1e-6


def _calibration(
    mean: F,
    scale: F,
    probe: tuple[F, float],
    combine: tuple[F, float],
    model: str,
    layers: tuple[int, ...],
    probe_prompt: str,
    note: str,
    fingerprint: str,
    prompt: str,
    windows: tuple[int, int],
) -> JudgeCalibration:
    (w, b), (cw, cb) = probe, combine
    return JudgeCalibration(
        model,
        layers,
        probe_prompt,
        mean,
        scale,
        w,
        b,
        (float(cw[0]), float(cw[1]), cb),
        note,
        fingerprint,
        prompt,
        windows,
    )


@dataclass(frozen=True, slots=True)
class MilSettings:
    """Multiple-instance learning from video-level labels: every description of a normal video is a
    negative; an anomalous video holds at least one positive, and its bag is scored by the mean logit of
    its highest ``top_share`` of descriptions (0: its single highest)."""

    top_share: float = 0.5
    l2: float = 10.0
    rounds: int = 6
    """Alternations of choosing each anomalous video's highest descriptions and refitting on them."""
    bag_negatives: float = 0.0
    """Share of an anomalous video's descriptions, its lowest under the current probe, taken as negatives
    from the second round on (the normal moments of an incident's own video; 0: none)."""


def _top(z: F, bags: Sequence[npt.NDArray[np.int64]], share: float) -> tuple[npt.NDArray[np.int64], F]:
    """The indices of each bag's highest ``share`` (at least one) and each one's weight (a bag weighs one)."""
    chosen, weight = [], []
    for bag in bags:
        k = max(1, int(np.ceil(share * len(bag))))
        top = bag[np.argsort(-z[bag], kind="stable")[:k]]
        chosen.append(top)
        weight.append(np.full(k, 1.0 / k))
    return np.concatenate(chosen), np.concatenate(weight)


def fit_mil(
    x: F, negatives: npt.NDArray[np.int64], bags: Sequence[npt.NDArray[np.int64]], s: MilSettings
) -> tuple[F, float]:
    """A logistic probe from bags: the negatives' and the positive bags' total weights equal (so many
    normal descriptions do not drown few anomalous videos); each round refits on the negatives and each
    bag's highest ``top_share`` under the current probe (the first round takes every description of an
    anomalous video). Returns (weights, bias) on ``x`` as given."""
    n = len(negatives) + len(bags)
    z = np.zeros(len(x))
    w, b = np.zeros(x.shape[1]), 0.0
    for r in range(max(1, s.rounds)):
        pos, pw = _top(z, bags, 1.0 if r == 0 else s.top_share)
        neg = negatives
        if r > 0 and s.bag_negatives > 0:
            low = [bag[np.argsort(z[bag], kind="stable")[: int(s.bag_negatives * len(bag))]] for bag in bags]
            neg = np.concatenate([negatives, *low])
            neg = neg[~np.isin(neg, pos)]
        idx = np.concatenate([neg, pos])
        y = np.concatenate([np.zeros(len(neg), dtype=bool), np.ones(len(pos), dtype=bool)])
        sw = np.concatenate([np.full(len(neg), 0.5 * n / len(neg)), pw * 0.5 * n / len(bags)])
        w, b = fit_logistic(x[idx], y, l2=s.l2, sample_weight=sw, init=(w, b))
        z_new = x @ w + b
        if r > 0 and all(
            set(_top(z_new, [bag], s.top_share)[0]) == set(_top(z, [bag], s.top_share)[0]) for bag in bags
        ):
            break  # the chosen descriptions no longer change
        z = z_new
    return w, b


def video_bags(
    videos: Sequence[str], labels: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.int64], list[npt.NDArray[np.int64]]]:
    """The indices of the descriptions of normal videos, and one index array per anomalous video."""
    by: dict[str, list[int]] = {}
    for i, v in enumerate(videos):
        by.setdefault(v, []).append(i)
    negatives = np.array([i for v, idx in by.items() if not labels[idx[0]] for i in idx], dtype=np.int64)
    bags = [np.array(idx, dtype=np.int64) for idx in by.values() if labels[idx[0]]]
    if not len(negatives) or not bags:
        raise ValueError("needs videos of both labels: normal (0) and anomalous (1)")
    return negatives, bags


def fit_mil_calibration(
    features: F,
    prompted: F,
    videos: Sequence[str],
    labels: npt.NDArray[np.bool_],
    settings: MilSettings,
    *,
    combine_on: tuple[F, F, Sequence[str], npt.NDArray[np.bool_]] | None = None,
    folds: int = 5,
    model: str,
    layers: tuple[int, ...],
    probe_prompt: str,
    note: str = "",
    fingerprint: str = "",
    prompt: str = "",
    windows: tuple[int, int] = (1, 1),
) -> JudgeCalibration:
    """A calibration from video-level ``labels`` (one per description, its video's): the probe by
    :func:`fit_mil` on all of ``features``; its combination with the prompted score fitted the same way
    on held-out probe logits: those of ``combine_on`` (features, prompted scores, videos, labels of other
    videos) when given, else out-of-fold logits over ``folds`` folds across videos."""
    mean, scale = standardisation(features)
    negatives, bags = video_bags(videos, labels)
    w, b = fit_mil((features - mean) / scale, negatives, bags, settings)
    if combine_on is not None:
        xc, pc, vc, yc = combine_on
        held = ((xc - mean) / scale) @ w + b
    else:
        xc, pc, vc, yc = features, prompted, videos, labels
        held = np.empty(len(features))
        fold_of = group_folds(list(videos), folds)
        for f in np.unique(fold_of):
            tr, te = fold_of != f, fold_of == f
            neg_f, bags_f = video_bags([v for v, t in zip(videos, tr, strict=True) if t], labels[tr])
            mu, sd = standardisation(features[tr])
            wf, bf = fit_mil((features[tr] - mu) / sd, neg_f, bags_f, settings)
            held[te] = ((features[te] - mu) / sd) @ wf + bf
    neg_c, bags_c = video_bags(vc, yc)
    stack = np.column_stack([held, logit(pc)])
    combine = fit_mil(stack, neg_c, bags_c, MilSettings(settings.top_share, l2=1e-3, rounds=settings.rounds))
    return _calibration(mean, scale, (w, b), combine, model, layers, probe_prompt, note, fingerprint, prompt, windows)
