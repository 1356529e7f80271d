"""The sink that keeps the history in the :class:`EventStore`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pydantic import Field

from pipeline.records import Description, Event, EventChange, Record, WindowScore
from pipeline.settings import Settings, state_dir
from pipeline.stats import counter, gauge
from pipeline.supervision import restarting
from sinks.event_store import EventStore, RunRecord

log = logging.getLogger(__name__)
T = TypeVar("T")


class StoreSettings(Settings):
    """The event history (SQLite, WAL)."""

    path: Path = Field(
        default_factory=lambda: state_dir() / "{instance}" / "events.sqlite",
        title="The history file ({instance}: this monitor instance's name); default under the state folder",
    )
    max_age_days: float = Field(30.0, gt=0, le=36_500, title="Older rows are deleted")
    max_size_mb: float = Field(2048.0, gt=0, le=10_000_000, title="Oldest rows go first beyond this size")
    descriptions: bool = Field(True, title="Also keep every description (not only scores and events)")
    retention_interval_s: float = Field(3600.0, gt=0, le=86_400 * 7, title="How often retention is applied")


MEMORY_EVENTS = 10_000
"""Events kept in memory while the history cannot be written (a full disk); beyond, the oldest go."""


@dataclass(slots=True)
class StoreStats:
    """Figures of the history's sink."""

    unstored: int = gauge("Events the history could not write yet (kept in memory)", metric="events_unstored")
    lost: int = counter("Events lost: more than memory holds came while the history failed", metric="events_lost")


class StoreSink:
    """Writes descriptions and scores to SQLite from a thread of its own, events (with snapshots) at once
    (:meth:`persist`), and applies the retention limits at start and every ``retention_interval_s``."""

    name = "store"

    def __init__(self, settings: StoreSettings, *, run: RunRecord | None = None) -> None:
        self.path = Path(settings.path)
        self.run = run
        """The run to note in the history when it opens."""
        self.max_age_s = settings.max_age_days * 86400.0
        self.max_bytes = settings.max_size_mb * 1024 * 1024
        self.keep_descriptions = settings.descriptions
        self.retention_interval_s = settings.retention_interval_s
        self._store: EventStore | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="event-store")
        self._retention: asyncio.Task[None] | None = None
        self._unstored: OrderedDict[str, Event] = OrderedDict()
        """Events (their latest state) the store could not write yet, oldest first."""
        self.stats = StoreStats()

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def open(self) -> None:
        self._store = store = await self._run(EventStore, self.path)
        closed = await self._run(store.close_open_events)
        if self.run is not None:
            try:
                await self._run(store.add_run, self.run)
            except (sqlite3.Error, OSError) as exc:  # a full disk: the run goes on, unnoted
                log.warning("event store: cannot note this run in %s: %s", self.path, exc)
        if closed:
            log.info("event store: %d events left open by an earlier run were closed", closed)
        self._retention = asyncio.create_task(restarting("event store retention", self._retain), name="store-retention")

    async def _retain(self) -> None:
        store = self._store
        assert store is not None
        while True:
            deleted = await self._run(
                lambda: store.enforce_retention(max_age_s=self.max_age_s, max_bytes=self.max_bytes)
            )
            if deleted:
                log.info("event store: retention removed %d rows", deleted)
            await asyncio.sleep(self.retention_interval_s)

    def persist(self, record: EventChange) -> None:
        """Store the event now, on the caller's thread (it must survive a crash right after). If the store
        cannot be written (a full disk), the event is kept in memory and written with the next record
        once it can (the error is raised, for the hub to count)."""
        self._unstored[record.after.id] = record.after
        self._unstored.move_to_end(record.after.id)
        while len(self._unstored) > MEMORY_EVENTS:
            self._unstored.popitem(last=False)
            self.stats.lost += 1
        self._catch_up(quiet=False)

    def _catch_up(self, *, quiet: bool) -> None:
        """Write the events that wait in memory, oldest first (on the event loop's thread, as persist)."""
        assert self._store is not None, "sink not opened"
        try:
            while self._unstored:
                event_id, event = next(iter(self._unstored.items()))
                self._store.upsert_event(event)
                del self._unstored[event_id]
        except Exception:
            if not quiet:
                raise
        finally:
            self.stats.unstored = len(self._unstored)

    async def handle(self, record: Record) -> None:
        store = self._store
        assert store is not None, "sink not opened"
        if self._unstored:  # the history failed: try again with every record, until the events are in
            self._catch_up(quiet=True)
        if isinstance(record, Description):
            if self.keep_descriptions:
                await self._run(store.add_description, record)
        elif isinstance(record, WindowScore):
            await self._run(store.add_score, record)

    async def close(self) -> None:
        if self._store is not None and self._unstored:
            self._catch_up(quiet=True)
            if self._unstored:
                log.error(
                    "event store: %d events could not be written to %s and are lost", len(self._unstored), self.path
                )
        if self._retention is not None:
            self._retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention
        if self._store is not None:
            await self._run(self._store.close)
        self._pool.shutdown(wait=True)
