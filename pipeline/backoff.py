"""Capped, jittered exponential backoff for anything that reconnects (sources, MQTT, the console)."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, initial: float, cap: float, rng: random.Random) -> float:
    """Uniform in [d/2, d] where d = min(cap, initial * 2**attempt)."""
    d = min(cap, initial * (2 ** min(attempt, 30)))
    return rng.uniform(d / 2, d)
