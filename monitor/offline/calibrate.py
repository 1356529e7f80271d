"""Fitting a judge calibration: a logistic-regression probe on the judge's hidden states, cross-validated
across videos (NumPy only)."""

from __future__ import annotations

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
) -> tuple[F, float]:
    """L2-regularised logistic regression by Newton's method; returns (weights, bias). ``balanced`` weighs
    each class by the inverse of its share, so the rare anomalies count as much as the normal texts;
    ``sample_weight`` gives each item its own weight instead."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(d + 1)
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
        mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-6
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
    mean = features.mean(axis=0)
    scale = features.std(axis=0) + 1e-6
    w, b = fit_logistic((features - mean) / scale, y, l2=l2, balanced=True)
    oof = cv_probe(features, y, folds, l2)
    cw, cb = fit_logistic(np.column_stack([oof, logit(prompted)]), y, l2=1e-3, balanced=True)
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
