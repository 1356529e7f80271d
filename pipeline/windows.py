"""Per-camera sliding windows over descriptions."""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

from pydantic import Field, model_validator

from pipeline.settings import Settings

T = TypeVar("T")


class WindowSettings(Settings):
    """Sliding windows of descriptions that the judge scores (``[windows]``)."""

    size: int = Field(1, ge=1, le=64, title="Descriptions per window (LLMVAD: 3; 1 ranks best, docs/judge.md)")
    stride: int = Field(1, ge=1, le=64, title="New descriptions between windows (LLMVAD: 2)")

    @model_validator(mode="after")
    def _stride(self) -> WindowSettings:
        if self.stride > self.size:
            raise ValueError(f"stride ({self.stride}) must not exceed size ({self.size}): descriptions would be lost")
        return self


class SlidingWindows(Generic[T]):
    """Emits the last ``size`` items every ``stride`` new items (the first once ``size`` have arrived).

    ``flush`` returns the tail that no window has covered yet, so a short clip still gets judged.
    """

    def __init__(self, settings: WindowSettings) -> None:
        self.size = settings.size
        self.stride = settings.stride
        self._buf: deque[T] = deque(maxlen=self.size)
        self._new = 0
        self._emitted = False

    def add(self, item: T) -> tuple[T, ...] | None:
        """Add one item; return a full window when one is due."""
        self._buf.append(item)
        self._new += 1
        if len(self._buf) == self.size and (not self._emitted or self._new >= self.stride):
            self._new = 0
            self._emitted = True
            return tuple(self._buf)
        return None

    def flush(self) -> tuple[T, ...] | None:
        """The last (possibly partial) window if items arrived since the last one, else None."""
        if self._new == 0:
            return None
        self._new = 0
        self._emitted = True
        return tuple(self._buf)
