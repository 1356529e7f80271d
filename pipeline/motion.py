"""A cheap motion gate: skip the model when the scene has not changed since the last described frame."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from pipeline.sampling import SamplingSettings

THUMB_WIDTH = 64
"""Width of the grey-scale thumbnails that the gate compares."""
PIXEL_DELTA = 25
"""A thumbnail pixel counts as changed when its grey level moved by more than this (of 255)."""


def frame_change(a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8]) -> float:
    """Fraction of pixels of two grey thumbnails that differ by more than :data:`PIXEL_DELTA`, in [0, 1].

    Counting changed pixels (rather than averaging differences) ignores sensor noise and small lighting
    flicker, yet notices a small figure entering a corner of the scene.
    """
    if a.shape != b.shape:
        return 1.0
    return float(np.count_nonzero(np.abs(a.astype(np.int16) - b.astype(np.int16)) > PIXEL_DELTA)) / a.size


class MotionGate:
    """Decides whether a frame needs a fresh description.

    The reference is the last frame that was described; a frame is skipped while less than
    ``motion_threshold`` of its thumbnail changed against it and the reference is younger than
    ``motion_max_reuse_s`` of stream time. ``motion_gate`` unset counts as off.
    """

    def __init__(self, settings: SamplingSettings) -> None:
        self.threshold = settings.motion_threshold
        self.max_reuse_s = settings.motion_max_reuse_s
        self.enabled = bool(settings.motion_gate)
        self._ref: npt.NDArray[np.uint8] | None = None
        self._ref_time = 0.0
        self.last_change = 1.0

    def needs_model(self, thumb: npt.NDArray[np.uint8], stream_time: float, *, force: bool = False) -> bool:
        """True if the frame must be described (always when ``force``); it then becomes the new reference."""
        if not force and self.enabled and self._ref is not None and stream_time - self._ref_time < self.max_reuse_s:
            self.last_change = frame_change(thumb, self._ref)
            if self.last_change < self.threshold:
                return False
        self._ref = thumb
        self._ref_time = stream_time
        return True
