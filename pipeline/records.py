"""The small frozen records that flow between pipeline stages and out to sinks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

GENERAL_RULE = "anomaly"
"""The name of every camera's first rule, the general anomaly question (``[judge]`` and ``[alerting]``)."""

Image = npt.NDArray[np.uint8]
"""An RGB image, ``(height, width, 3)`` uint8."""


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """A decoded, sampled frame of one camera.

    ``stream_time`` is seconds on the source's own clock, kept monotonic across file loops and
    reconnects; ``wall_time`` is the Unix time at which it was decoded.
    """

    camera: str
    index: int
    stream_time: float
    wall_time: float
    image: Image
    thumb: npt.NDArray[np.uint8] = field(repr=False)
    """A small grey-scale copy for motion gating."""


@dataclass(frozen=True, slots=True)
class Description:
    """What the vision-language model said about one frame (or a reused earlier text)."""

    camera: str
    frame_index: int
    stream_time: float
    wall_time: float
    text: str
    reused: bool = False
    """True when the motion gate skipped the model and the previous description was reused."""


@dataclass(frozen=True, slots=True)
class WindowScore:
    """The judge's anomaly score for a sliding window of descriptions."""

    camera: str
    seq: int
    start_time: float
    end_time: float
    wall_time: float
    score: float
    descriptions: tuple[str, ...]
    frame_indices: tuple[int, ...]
    raw_score: float | None = None
    """The judge's own score before smoothing over time (None when not smoothed)."""
    exact: bool = True
    """False when the judge model gave no probabilities and its score is a one-token answer (0 or 1)."""
    rule: str = GENERAL_RULE
    """The rule whose question this is the answer to."""


@dataclass(frozen=True, slots=True)
class Event:
    """One anomaly event as it stands at a moment of its life."""

    id: str
    camera: str
    start_time: float
    start_wall: float
    end_time: float | None
    end_wall: float | None
    peak_score: float
    score: float
    peak_frame_index: int
    descriptions: tuple[str, ...]
    explanation: str | None = None
    snapshot: bytes | None = field(default=None, repr=False)
    """JPEG of the frame behind the peak score."""
    severity: int = 0
    """0 worth noting, 1 suspicious, 2 dangerous (from the peak score and ``[alerting] severity``)."""
    clip: str | None = None
    """File name of the event's video clip (in the clip folder beside the event store), once written."""
    rule: str = GENERAL_RULE
    """The rule that raised it."""

    @property
    def active(self) -> bool:
        """Whether the event has not ended yet."""
        return self.end_time is None


EventChangeType = Literal["new", "update", "end"]


@dataclass(frozen=True, slots=True)
class EventChange:
    """A step in an event's life: ``before`` is None for ``new``."""

    type: EventChangeType
    before: Event | None
    after: Event

    @property
    def camera(self) -> str:
        return self.after.camera


@dataclass(frozen=True, slots=True)
class CameraStatus:
    """Periodic health of one camera's stage."""

    camera: str
    wall_time: float
    connected: bool
    fps: float
    frames_read: int
    frames_sampled: int
    frames_gated: int
    frames_dropped: int
    queue_depth: int
    error: str | None = None
    clip_buffer_bytes: int = 0
    """Memory held by the camera's ring of recent packets (for event clips)."""
    clip_buffer_s: float = 0.0
    """Seconds of video in that ring."""
    figures: Mapping[str, float] = field(default_factory=dict)
    """Every counter and gauge of the camera's parts, by its exported name (:mod:`pipeline.stats`)."""


@dataclass(frozen=True, slots=True)
class RuleControl:
    """One rule's settings in force on a camera: whether it is asked, and its threshold."""

    name: str
    enabled: bool
    threshold: float


@dataclass(frozen=True, slots=True)
class ControlState:
    """The settings in force on a camera (at start and after each change): whether it runs at all, and
    each of its rules', the general rule first."""

    camera: str
    enabled: bool
    rules: tuple[RuleControl, ...]
    wall_time: float

    def rule(self, name: str) -> RuleControl | None:
        """The settings of the rule called ``name``, if the camera has it."""
        return next((r for r in self.rules if r.name == name), None)


@dataclass(frozen=True, slots=True)
class Answer:
    """The answer to a request that came in over MQTT (``kind``: what was asked, e.g. ``summary``); ``body``
    is JSON-ready."""

    kind: str
    body: Mapping[str, Any]
    wall_time: float


Record = Description | WindowScore | EventChange | CameraStatus | ControlState | Answer
"""Everything a sink can receive."""
