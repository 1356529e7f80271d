"""Which decoded frames are sampled for the model: every Kth frame, or a target rate."""

from __future__ import annotations


class FrameSampler:
    """Sample every ``every_n_frames``-th frame, or ``fps`` frames per second of stream time when given."""

    def __init__(self, *, every_n_frames: int = 10, fps: float | None = None) -> None:
        if every_n_frames < 1:
            raise ValueError(f"every_n_frames must be at least 1, got {every_n_frames}")
        if fps is not None and fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.every_n_frames = every_n_frames
        self.fps = fps
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
