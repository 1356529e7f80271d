"""A bounded queue from a producer thread to the asyncio loop, with an explicit backpressure policy."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from pipeline.stats import counter, gauge

T = TypeVar("T")


class Backpressure(StrEnum):
    """What a full queue does with a new item."""

    WAIT = "wait"
    """The producer blocks until there is room (files: nothing is lost)."""
    DROP_OLDEST = "drop_oldest"
    """The oldest queued item is discarded (live cameras: stay current)."""
    DROP_LATEST = "drop_latest"
    """The new item is discarded."""


class QueueClosed(Exception):
    """The queue was closed and is empty."""


@dataclass(slots=True)
class QueueStats:
    """Figures of a frame queue."""

    dropped: int = counter("Frames dropped by a full queue", metric="frames_dropped")
    depth: int = gauge("Frames waiting for the model", metric="queue_depth")


class ThreadToAsyncQueue(Generic[T]):
    """Bounded FIFO filled by threads and drained by coroutines on one event loop.

    Every item discarded by the policy is counted in :attr:`dropped`.
    """

    def __init__(self, *, maxsize: int, policy: Backpressure, loop: asyncio.AbstractEventLoop) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self.maxsize = maxsize
        self.policy = Backpressure(policy)
        self.stats = QueueStats()
        self._loop = loop
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._ready = asyncio.Event()
        self._closed = False

    @property
    def dropped(self) -> int:
        """Items discarded by the policy."""
        return self.stats.dropped

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: T, *, cancel: threading.Event | None = None, poll_s: float = 0.1) -> bool:
        """Add an item from any thread; return False if it was not queued (dropped, closed or cancelled).

        With :attr:`Backpressure.WAIT` this blocks while the queue is full, until there is room, the
        queue is closed, or ``cancel`` is set.
        """
        with self._lock:
            if self._closed:
                return False
            if len(self._items) >= self.maxsize:
                if self.policy is Backpressure.DROP_LATEST:
                    self.stats.dropped += 1
                    return False
                if self.policy is Backpressure.DROP_OLDEST:
                    self._items.popleft()
                    self.stats.dropped += 1
                else:
                    while len(self._items) >= self.maxsize and not self._closed:
                        if cancel is not None and cancel.is_set():
                            return False
                        self._not_full.wait(poll_s)
                    if self._closed:
                        return False
            self._items.append(item)
            self.stats.depth = len(self._items)
        self._wake()
        return True

    def close(self) -> None:
        """No more items will come; the consumer drains what is queued, then gets :class:`QueueClosed`."""
        with self._lock:
            self._closed = True
            self._not_full.notify_all()
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            self._loop.call_soon_threadsafe(self._ready.set)

    async def get(self) -> T:
        """Take the oldest item, waiting for one; raise :class:`QueueClosed` once closed and empty."""
        while True:
            with self._lock:
                if self._items:
                    item = self._items.popleft()
                    self.stats.depth = len(self._items)
                    self._not_full.notify()
                    return item
                if self._closed:
                    raise QueueClosed
                self._ready.clear()
            await self._ready.wait()
