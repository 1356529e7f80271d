"""A fixed-capacity buffer of (time, score) points, kept in time order, that hands out contiguous arrays
without copying."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


class ScoreSeries:
    """Keeps the newest ``capacity`` points in time order; :meth:`arrays` returns views.

    A point newer than the last (the usual case) is written twice, at ``i`` and ``i + capacity``, so the
    window of the newest points is always one contiguous slice of the doubled buffer. An older one (history
    loaded while live scores arrive, a late message) is put in its place, which rewrites the buffer.
    """

    def __init__(self, capacity: int = 4096) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._t = np.zeros(2 * capacity, dtype=np.float64)
        self._s = np.zeros(2 * capacity, dtype=np.float64)
        self._next = 0
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def append(self, t: float, s: float) -> None:
        """Add a point where its time puts it (the oldest goes when full; a point older than all of a full
        buffer is not kept)."""
        last = self.last()
        if last is not None and t < last[0]:
            self._insert(t, s)
            return
        i = self._next
        self._t[i] = self._t[i + self.capacity] = t
        self._s[i] = self._s[i + self.capacity] = s
        self._next = (i + 1) % self.capacity
        self._n = min(self._n + 1, self.capacity)

    def _insert(self, t: float, s: float) -> None:
        times, scores = (a.copy() for a in self.arrays())
        at = int(np.searchsorted(times, t, side="right"))
        times, scores = np.insert(times, at, t), np.insert(scores, at, s)
        if len(times) > self.capacity:
            times, scores = times[1:], scores[1:]
        n = len(times)
        self._t[:n] = self._t[self.capacity : self.capacity + n] = times
        self._s[:n] = self._s[self.capacity : self.capacity + n] = scores
        self._n, self._next = n, n % self.capacity

    def arrays(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Times and scores, oldest first (views: do not keep them across appends)."""
        start = (self._next - self._n) % self.capacity
        return self._t[start : start + self._n], self._s[start : start + self._n]

    def last(self) -> tuple[float, float] | None:
        """The newest point."""
        if not self._n:
            return None
        i = (self._next - 1) % self.capacity
        return float(self._t[i]), float(self._s[i])
