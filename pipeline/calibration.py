"""A judge calibration: a linear probe on the judge's pooled hidden states of the instructions and the
report without the examples, combined with the prompted score (fitted offline by ``monitor
calibrate-judge``; JSON, never a pickle)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

F = npt.NDArray[np.float64]
FORMAT = "llmvad-judge-calibration/3"
EARLIER = ("llmvad-judge-calibration/1", "llmvad-judge-calibration/2")


def logit(p: F) -> F:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.asarray(np.log(p / (1 - p)), dtype=np.float64)


def layer_mean(pooled: Mapping[int, npt.NDArray[np.floating[Any]]], layers: Sequence[int]) -> F:
    """The mean over ``layers`` of one pass's pooled hidden states: a probe's input."""
    return np.asarray(np.mean([np.asarray(pooled[k], dtype=np.float64) for k in layers], axis=0), dtype=np.float64)


@dataclass(frozen=True)
class JudgeCalibration:
    """A probe on the hidden states of ``probe_prompt`` (the window's report without the judge prompt's
    examples), mean-pooled over its tokens and averaged over ``layers``, combined with the prompted score:
    ``score = sigmoid(a * probe_logit + b * logit(prompted) + c)``."""

    model: str
    layers: tuple[int, ...]
    probe_prompt: str
    """The template ({context}, {descriptions}) of the text the probe reads, in a pass of its own."""
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
    windows: tuple[int, int] = (1, 1)
    """The window size and stride it was fitted for (a window's text and its place in time depend on them)."""

    def check_windows(self, size: int, stride: int) -> str | None:
        """Why windows of ``size`` and ``stride`` are not the ones it was fitted for; None when they are."""
        if (size, stride) == self.windows:
            return None
        return (
            f"windows of {size} (stride {stride}), but the judge calibration was fitted for windows of "
            f"{self.windows[0]} (stride {self.windows[1]}); set these windows or fit a calibration for them "
            "with monitor calibrate-judge"
        )

    def features(self, pooled: Mapping[int, npt.NDArray[np.floating[Any]]]) -> F:
        """The probe's input from the pooled hidden states of the probe prompt's pass."""
        return layer_mean(pooled, self.layers)

    def probe_logit(self, features: npt.NDArray[np.floating[Any]]) -> F:
        z = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        return np.asarray(z @ self.weights + self.bias, dtype=np.float64)

    def score(self, features: npt.NDArray[np.floating[Any]], prompted: F) -> F:
        """Calibrated scores from the probe's :meth:`features` and the prompted scores."""
        a, b, c = self.combine
        z = a * self.probe_logit(features) + b * logit(prompted) + c
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0))))

    def save(self, path: Path) -> None:
        path.write_text(
            json.dumps(
                {
                    "format": FORMAT,
                    "model": self.model,
                    "layers": list(self.layers),
                    "probe_prompt": self.probe_prompt,
                    "mean": self.mean.tolist(),
                    "scale": self.scale.tolist(),
                    "weights": self.weights.tolist(),
                    "bias": self.bias,
                    "combine": list(self.combine),
                    "note": self.note,
                    "fingerprint": self.fingerprint,
                    "prompt": self.prompt,
                    "windows": {"size": self.windows[0], "stride": self.windows[1]},
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
        if isinstance(d, dict) and d.get("format") in EARLIER:
            raise ValueError(
                f"{path}: written by an earlier version (its probe reads other hidden states); "
                "fit it again with monitor calibrate-judge"
            )
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"{path}: not a judge calibration file (written by monitor calibrate-judge)")
        try:
            mean, scale, w = (np.asarray(d[k], dtype=np.float64) for k in ("mean", "scale", "weights"))
            if not (mean.shape == scale.shape == w.shape and mean.ndim == 1):
                raise ValueError("mean, scale and weights differ in shape")
            a, b, c = (float(x) for x in d["combine"])
            windows = (int(d["windows"]["size"]), int(d["windows"]["stride"]))
            layers = tuple(int(k) for k in d["layers"])
            if not layers:
                raise ValueError("layers is empty")
            if not isinstance(d["probe_prompt"], str) or "{descriptions}" not in d["probe_prompt"]:
                raise ValueError("probe_prompt must be a template with {descriptions}")
            if not 1 <= windows[1] <= windows[0]:
                raise ValueError(f"windows {windows} are not a size and a stride with 1 <= stride <= size")
            return cls(
                str(d["model"]),
                layers,
                d["probe_prompt"],
                mean,
                scale,
                w,
                float(d["bias"]),
                (a, b, c),
                str(d.get("note", "")),
                str(d.get("fingerprint", "")),
                str(d.get("prompt", "")),
                windows,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: malformed calibration file ({exc})") from None
