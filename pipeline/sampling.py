"""Which decoded frames reach the model: every Kth frame or a target rate, then the motion gate."""

from __future__ import annotations

from pydantic import Field

from pipeline.settings import Settings


class SamplingSettings(Settings):
    """Which frames reach the model (``[sampling]``, overridable per camera)."""

    every_n_frames: int = Field(10, ge=1, le=10_000, title="Describe every Kth decoded frame (LLMVAD's K)")
    fps: float | None = Field(None, gt=0, le=120, title="Target sampling rate; replaces every_n_frames when set")
    motion_gate: bool | None = Field(None, title="Skip unchanged scenes; unset: on for live cameras, off for files")
    motion_threshold: float = Field(
        0.03, ge=0, le=1, title="Share (0-1) of a 64-px grey thumbnail that must change for a fresh description"
    )
    motion_max_reuse_s: float = Field(60.0, gt=0, title="Describe anew at least this often, even if nothing moved")
    semantic_gate: bool = Field(
        False,
        title="After the motion gate, skip frames whose vision embedding is still like the last described one "
        "(an in-process VLM only; docs/benchmarks.md says when it pays)",
    )
    semantic_threshold: float = Field(
        0.95, ge=0, le=1, title="Cosine similarity of vision embeddings above which a frame shows the same scene"
    )


class FrameSampler:
    """Sample every ``every_n_frames``-th frame, or ``fps`` frames per second of stream time when set."""

    def __init__(self, settings: SamplingSettings) -> None:
        self.every_n_frames = settings.every_n_frames
        self.fps = settings.fps
        self._next_time: float | None = None

    def take(self, index: int, stream_time: float) -> bool:
        """Whether the frame with this decode index and stream time is sampled."""
        if self.fps is None:
            return index % self.every_n_frames == 0
        period = 1.0 / self.fps
        if self._next_time is None or stream_time >= self._next_time - 1e-6:
            nxt = (self._next_time if self._next_time is not None else stream_time) + period
            # After a gap (reconnect, seek) restart the grid instead of bursting to catch up.
            self._next_time = nxt if nxt > stream_time else stream_time + period
            return True
        return False
