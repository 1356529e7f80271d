"""The one interface every sink implements, and the hub that isolates sinks from the pipeline."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from pipeline.records import EventChange, Record
from pipeline.stats import counter, gauge
from pipeline.supervision import restarting

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Consumes records. ``handle`` may be slow or fail: the hub isolates it from scoring."""

    name: str

    async def open(self) -> None:
        """Acquire resources (files, connections)."""
        ...

    async def handle(self, record: Record) -> None:
        """Deliver one record."""
        ...

    async def close(self) -> None:
        """Flush and release resources."""
        ...


@runtime_checkable
class DurableSink(Protocol):
    """A sink that makes event changes durable the moment they are emitted: it gets them through
    :meth:`persist`, at once and in order, and never through its queue."""

    def persist(self, record: EventChange) -> None:
        """Write ``record`` durably, at once."""
        ...


@dataclass(slots=True)
class SinkStats:
    """Figures of one sink."""

    handled: int = counter("Records a sink delivered", metric="sink_handled")
    failed: int = counter("Records a sink failed to handle", metric="sink_failures")
    dropped: int = counter("Records a full sink queue dropped", metric="sink_dropped")
    failing: bool = gauge(
        "1 while a sink fails every record (an outage: a full disk, a dead server)",
        metric="sink_failing",
        default=False,
    )
    outages: int = counter("Times a sink began to fail", metric="sink_outages")


RECOVERED_AFTER_S = 5.0
"""A failing sink counts as working again once it has gone this long without a failure (a disk that is
nearly full lets a small record through now and then: one outage, not many)."""


class SinkRunner:
    """Feeds one sink from its own bounded queue (drop oldest when full, counted); failures are counted."""

    def __init__(self, sink: Sink, *, maxsize: int = 1000) -> None:
        self.sink = sink
        self.maxsize = maxsize
        self.durable = isinstance(sink, DurableSink)
        self.stats = SinkStats()
        self._items: deque[Record] = deque()
        self._ready = asyncio.Event()
        self._closing = False
        self._failed_in_outage = 0
        self._last_failure = 0.0

    def offer(self, record: Record) -> None:
        """Queue a record without blocking (called on the event loop).

        When full, the oldest record that is not an event change is dropped: alerts are kept before
        scores, descriptions and status.
        """
        if len(self._items) >= self.maxsize:
            victim = next((i for i, r in enumerate(self._items) if not isinstance(r, EventChange)), 0)
            if isinstance(self._items[victim], EventChange):
                log.error("sink %s is %d event changes behind: dropping the oldest", self.sink.name, self.maxsize)
            del self._items[victim]
            self.stats.dropped += 1
        self._items.append(record)
        self._ready.set()

    @property
    def depth(self) -> int:
        return len(self._items)

    async def run(self) -> None:
        """Deliver queued records until closed and drained."""
        while True:
            while self._items:
                record = self._items.popleft()
                try:
                    await self.sink.handle(record)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._failed(exc)
                else:
                    self._handled()
            if self._closing:
                return
            self._ready.clear()
            await self._ready.wait()

    def _failed(self, exc: Exception) -> None:
        """Count a failed record; the first of an outage is logged, the others only counted."""
        self.stats.failed += 1
        self._failed_in_outage += 1
        self._last_failure = time.monotonic()
        if not self.stats.failing:
            self.stats.failing = True
            self.stats.outages += 1
            log.error("sink %s failed: %r; further failures are counted until it works again", self.sink.name, exc)

    def _handled(self) -> None:
        self.stats.handled += 1
        if self.stats.failing and time.monotonic() - self._last_failure >= RECOVERED_AFTER_S:
            self.stats.failing = False
            log.warning("sink %s works again, after %d records failed", self.sink.name, self._failed_in_outage)
            self._failed_in_outage = 0
        self._last_failure = 0.0

    def persist(self, record: EventChange) -> None:
        """Hand an event change to a durable sink at once (never raises)."""
        assert isinstance(self.sink, DurableSink)
        try:
            self.sink.persist(record)
        except Exception as exc:
            self._failed(exc)
        else:
            self._handled()

    def finish(self) -> None:
        """Stop after the queued records are delivered."""
        self._closing = True
        self._ready.set()


class SinkHub:
    """Fans records out to sinks; an async context manager that owns one delivery task per sink (restarted,
    with a logged error, if it ever fails)."""

    def __init__(self, sinks: Sequence[Sink], *, maxsize: int = 1000, close_timeout_s: float = 3.0) -> None:
        self.runners = [SinkRunner(s, maxsize=maxsize) for s in sinks]
        self.close_timeout_s = close_timeout_s
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> SinkHub:
        opened: list[SinkRunner] = []
        try:
            for runner in self.runners:
                await runner.sink.open()
                opened.append(runner)
        except BaseException:
            for runner in opened:
                await runner.sink.close()
            raise
        self._tasks = [
            asyncio.create_task(restarting(f"sink {r.sink.name}", r.run), name=f"sink-{r.sink.name}")
            for r in self.runners
        ]
        return self

    def publish(self, record: Record) -> None:
        """Give a record to every sink (never raises into the pipeline). The durable sinks (the MQTT outbox,
        the event store) write event changes at once, so a crash right after loses no alert; the others
        get them through their queues."""
        for runner in self.runners:
            if runner.durable and isinstance(record, EventChange):
                runner.persist(record)
            else:
                runner.offer(record)

    async def __aexit__(self, *exc: object) -> None:
        for runner in self.runners:
            runner.finish()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self.close_timeout_s)
            for runner, task in zip(self.runners, self._tasks, strict=True):
                if task in pending:
                    log.warning(
                        "sink %s did not drain within %.1f s; %d records left undelivered",
                        runner.sink.name,
                        self.close_timeout_s,
                        runner.depth,
                    )
                    task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for runner in self.runners:
            try:
                await runner.sink.close()
            except Exception as exc:
                log.error("sink %s failed to close: %r", runner.sink.name, exc)
