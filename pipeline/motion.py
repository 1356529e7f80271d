"""A cheap motion gate: skip the model when the scene has not changed since the last described frame."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

THUMB_WIDTH = 64
"""Width of the grey-scale thumbnails that the gate compares."""


def frame_change(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8]) -> float:
    """Mean absolute difference of two equally sized grey thumbnails, in [0, 1]."""
    if a.shape != b.shape:
        return 1.0
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16)))) / 255.0


class MotionGate:
    """Decides whether a frame needs a fresh description.

    The reference is the last frame that was described; a frame is skipped while it differs from it by
    less than ``threshold`` and the reference is younger than ``max_reuse_s`` seconds of stream time.
    """

    def __init__(self, *, threshold: float, max_reuse_s: float, enabled: bool = True) -> None:
        self.threshold = threshold
        self.max_reuse_s = max_reuse_s
        self.enabled = enabled
        self._ref: npt.NDArray[np.uint8] | None = None
        self._ref_time = 0.0
        self.last_change = 1.0

    def needs_model(self, thumb: npt.NDArray[np.uint8], stream_time: float) -> bool:
        """True if the frame must be described; it then becomes the new reference."""
        if self.enabled and self._ref is not None and stream_time - self._ref_time < self.max_reuse_s:
            self.last_change = frame_change(thumb, self._ref)
            if self.last_change < self.threshold:
                return False
        self._ref = thumb
        self._ref_time = stream_time
        return True
