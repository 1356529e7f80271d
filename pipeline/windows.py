"""Per-camera sliding windows over descriptions."""

from __future__ import annotations

from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class SlidingWindows(Generic[T]):
    """Emits the last ``size`` items every ``stride`` new items (the first once ``size`` have arrived).

    ``flush`` returns the tail that no window has covered yet, so a short clip still gets judged.
    """

    def __init__(self, *, size: int, stride: int) -> None:
        if size < 1 or stride < 1 or stride > size:
            raise ValueError(f"need 1 <= stride <= size, got size={size} stride={stride}")
        self.size = size
        self.stride = stride
        self._buf: deque[T] = deque(maxlen=size)
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
