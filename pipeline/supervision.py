"""Supervision of background tasks: every failure is logged at once, naming the task; a task that is safe
to restart is restarted with capped, jittered backoff."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pipeline.backoff import backoff_delay
from pipeline.stats import counter, gauge

log = logging.getLogger(__name__)

HEALTHY_AFTER_S = 60.0
"""A task that ran this long before failing starts its backoff again from the bottom."""


async def restarting(
    name: str,
    work: Callable[[], Awaitable[None]],
    *,
    initial_s: float = 0.5,
    max_s: float = 30.0,
    rng: random.Random | None = None,
) -> None:
    """Run ``work()`` until it returns; when it raises, log the error (with its traceback) naming ``name``
    and run it again after a backoff. Cancellation ends it."""
    rng = rng or random.Random()
    attempt = 0
    while True:
        started = time.monotonic()
        try:
            await work()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if time.monotonic() - started > HEALTHY_AFTER_S:
                attempt = 0
            delay = backoff_delay(attempt, initial_s, max_s, rng)
            log.error("%s failed: %r; restarting it in %.1f s", name, exc, delay, exc_info=exc)
            attempt += 1
        await asyncio.sleep(delay)


@dataclass(slots=True)
class LoopStats:
    """Figures of the event loop's lag probe."""

    max_lag_s: float = gauge("Longest event loop stall so far", metric="event_loop_lag_max_seconds")
    stalls: int = counter("Event loop wake-ups later than the warning bound", metric="event_loop_stalls")


class LagProbe:
    """Measures how late the event loop wakes up (a blocked loop delays every camera and every alert);
    warns, at most every 10 s, when a wake-up is later than ``warn_s``."""

    def __init__(self, *, interval_s: float = 0.05, warn_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self.warn_s = warn_s
        self.stats = LoopStats()
        self._last_warning = 0.0

    async def run(self) -> None:
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(self.interval_s)
            lag = time.monotonic() - t0 - self.interval_s
            self.stats.max_lag_s = max(self.stats.max_lag_s, lag)
            if lag > self.warn_s:
                self.stats.stalls += 1
                if t0 - self._last_warning > 10.0:
                    self._last_warning = t0
                    log.warning("the event loop stalled for %.0f ms (%d stalls so far)", 1000 * lag, self.stats.stalls)
