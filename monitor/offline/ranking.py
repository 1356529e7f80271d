"""Ranking metrics (ROC-AUC, average precision) in NumPy, matching scikit-learn's definitions."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Array = npt.ArrayLike


def _check(labels: Array, scores: Array) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.float64]]:
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    if y.all() or not y.any():
        raise ValueError("need both positive and negative labels")
    return y, s


def _average_ranks(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    ranks = np.empty(values.size, dtype=np.float64)
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_vals)) + 1]
    ends = np.r_[starts[1:], values.size]
    for a, b in zip(starts, ends, strict=True):
        ranks[order[a:b]] = (a + b + 1) / 2.0  # mean of 1-based ranks a+1..b
    return ranks


def roc_auc(labels: Array, scores: Array) -> float:
    """Area under the ROC curve (ties count one half), as ``sklearn.metrics.roc_auc_score``."""
    y, s = _check(labels, scores)
    pos, neg = int(y.sum()), int((~y).sum())
    ranks = _average_ranks(s)
    return float((ranks[y].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def _pr_points(labels: Array, scores: Array) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Precision and recall at each distinct threshold, highest threshold first."""
    y, s = _check(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s_sorted)), s.size - 1]
    tps = np.cumsum(y_sorted)[last_of_tie]
    fps = last_of_tie + 1 - tps
    return tps / (tps + fps), tps / tps[-1]


def average_precision(labels: Array, scores: Array) -> float:
    """Step-wise average precision, as ``sklearn.metrics.average_precision_score``."""
    precision, recall = _pr_points(labels, scores)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def precision_recall_curve(labels: Array, scores: Array) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Precision and recall at every distinct threshold, as ``sklearn.metrics.precision_recall_curve``:
    lowest threshold first, ending with the point (recall 0, precision 1)."""
    precision, recall = _pr_points(labels, scores)
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0]


def pr_auc_trapezoid(labels: Array, scores: Array) -> float:
    """Area under the precision-recall curve by the trapezoidal rule, ``auc(recall, precision)``: the
    "AP" that XD-Violence results are published with (not the step-wise average precision)."""
    precision, recall = precision_recall_curve(labels, scores)
    return float(-np.trapezoid(precision, recall))  # recall decreases along the curve
