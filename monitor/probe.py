"""A small logistic-regression probe on the judge's hidden states (NumPy only, no pickles)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

F = npt.NDArray[np.float64]


def fit_logistic(x: F, y: npt.NDArray[np.bool_], *, l2: float = 1.0, iters: int = 50) -> tuple[F, float]:
    """L2-regularised logistic regression by Newton's method; returns (weights, bias)."""
    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))])
    w = np.zeros(d + 1)
    reg = np.full(d + 1, l2)
    reg[-1] = 0.0  # no penalty on the bias
    t = y.astype(np.float64)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -30, 30)))
        grad = xb.T @ (p - t) + reg * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return w[:-1], float(w[-1])


def logit(p: F) -> F:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.asarray(np.log(p / (1 - p)), dtype=np.float64)


@dataclass(frozen=True)
class JudgeCalibration:
    """A probe on mean-pooled hidden states of one layer, combined with the prompted score:
    ``score = sigmoid(a * probe_logit + b * logit(prompted) + c)``."""

    model: str
    layer: int
    mean: F
    scale: F
    weights: F
    bias: float
    combine: tuple[float, float, float]
    note: str = ""
    fingerprint: str = ""
    """The judge model's weights fingerprint (its calibration applies to that model only)."""
    prompt: str = ""
    """Hash of the judge prompt it was fitted with (hidden states depend on the prompt)."""

    def probe_logit(self, pooled: npt.NDArray[np.floating[Any]]) -> F:
        z = (np.asarray(pooled, dtype=np.float64) - self.mean) / self.scale
        return np.asarray(z @ self.weights + self.bias, dtype=np.float64)

    def score(self, pooled: npt.NDArray[np.floating[Any]], prompted: F) -> F:
        a, b, c = self.combine
        return np.asarray(1.0 / (1.0 + np.exp(-(a * self.probe_logit(pooled) + b * logit(prompted) + c))))

    def save(self, path: Path) -> None:
        path.write_text(
            json.dumps(
                {
                    "format": "llmvad-judge-calibration/1",
                    "model": self.model,
                    "layer": self.layer,
                    "mean": self.mean.tolist(),
                    "scale": self.scale.tolist(),
                    "weights": self.weights.tolist(),
                    "bias": self.bias,
                    "combine": list(self.combine),
                    "note": self.note,
                    "fingerprint": self.fingerprint,
                    "prompt": self.prompt,
                }
            )
        )

    @classmethod
    def load(cls, path: Path) -> JudgeCalibration:
        """Read a calibration file; ValueError names what is wrong."""
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: not a readable calibration file ({exc})") from None
        if not isinstance(d, dict) or d.get("format") != "llmvad-judge-calibration/1":
            raise ValueError(f"{path}: not a judge calibration file (written by monitor calibrate-judge)")
        try:
            mean, scale, w = (np.asarray(d[k], dtype=np.float64) for k in ("mean", "scale", "weights"))
            if not (mean.shape == scale.shape == w.shape and mean.ndim == 1):
                raise ValueError("mean, scale and weights differ in shape")
            a, b, c = (float(x) for x in d["combine"])
            return cls(
                str(d["model"]),
                int(d["layer"]),
                mean,
                scale,
                w,
                float(d["bias"]),
                (a, b, c),
                str(d.get("note", "")),
                str(d.get("fingerprint", "")),
                str(d.get("prompt", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: malformed calibration file ({exc})") from None


def group_folds(groups: list[str], k: int = 5, seed: int = 0) -> npt.NDArray[np.int64]:
    """A fold number per item such that all items of a group (a video) share one fold."""
    names = sorted(set(groups))
    rng = np.random.default_rng(seed)
    rng.shuffle(names)
    fold_of = {g: i % k for i, g in enumerate(names)}
    return np.array([fold_of[g] for g in groups], dtype=np.int64)


def cv_probe(x: F, y: npt.NDArray[np.bool_], folds: npt.NDArray[np.int64], l2: float, prompted: F | None = None) -> F:
    """Out-of-fold logits of the probe or, with ``prompted``, of its stacking with the prompted score's logit
    (whose two weights are fitted on out-of-fold probe logits inside each training part)."""
    out = np.empty(len(y))
    for f in np.unique(folds):
        tr, te = folds != f, folds == f
        mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-6
        w, b = fit_logistic((x[tr] - mu) / sd, y[tr], l2=l2)
        probe_te = ((x[te] - mu) / sd) @ w + b
        if prompted is None:
            out[te] = probe_te
            continue
        inner = cv_probe(x[tr], y[tr], folds[tr], l2)
        cw, cb = fit_logistic(np.column_stack([inner, logit(prompted[tr])]), y[tr], l2=1e-3)
        out[te] = np.column_stack([probe_te, logit(prompted[te])]) @ cw + cb
    return out


def fit_calibration(
    pooled: F,
    prompted: F,
    y: npt.NDArray[np.bool_],
    folds: npt.NDArray[np.int64],
    *,
    model: str,
    layer: int,
    l2: float = 100.0,
    note: str = "",
    fingerprint: str = "",
    prompt: str = "",
) -> JudgeCalibration:
    """Fit the probe on all items (standardised features) and the combination weights on its
    out-of-fold logits, so the combination does not trust an over-fitted probe."""
    mean = pooled.mean(axis=0)
    scale = pooled.std(axis=0) + 1e-6
    w, b = fit_logistic((pooled - mean) / scale, y, l2=l2)
    oof = cv_probe(pooled, y, folds, l2)
    cw, cb = fit_logistic(np.column_stack([oof, logit(prompted)]), y, l2=1e-3)
    return JudgeCalibration(
        model, layer, mean, scale, w, b, (float(cw[0]), float(cw[1]), cb), note, fingerprint, prompt
    )


def prompt_hash(system: str, prompt: str, answers: tuple[str, ...]) -> str:
    """Identifies a judge prompt (a calibration only fits the prompt it was fitted with)."""
    return hashlib.sha256(json.dumps([system, prompt, list(answers)]).encode()).hexdigest()[:16]
