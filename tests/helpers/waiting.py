"""Waiting for something to happen in a test: poll until it holds, fail naming it if it never does.

The timeout only guards against a hang; tests assert behaviour, never how long it took.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def eventually(
    predicate: Callable[[], T], *, what: str = "the condition", timeout: float = 120.0, every: float = 0.1
) -> T:
    """``predicate()`` once it is truthy (its value), polling every ``every`` seconds."""
    deadline = time.monotonic() + timeout
    while not (got := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(every)
    return got


async def eventually_async(
    predicate: Callable[[], T], *, what: str = "the condition", timeout: float = 120.0, every: float = 0.05
) -> T:
    """:func:`eventually` on an event loop (it keeps running while this waits)."""
    deadline = time.monotonic() + timeout
    while not (got := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(every)
    return got
