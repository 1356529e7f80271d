from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from pipeline.backend import ChatPrompt
from pipeline.worker import InferenceWorker, RequestKind, WorkerClosed
from tests.helpers.fakes import FakeBackend

IMG = np.zeros((8, 8, 3), np.uint8)


async def test_batches_up_to_max_batch_off_the_event_loop() -> None:
    fake = FakeBackend(delay_s=0.05)
    with InferenceWorker(fake, max_batch=4, max_wait_ms=200) as w:
        out = await asyncio.gather(*(w.describe(IMG, "p", 8) for _ in range(10)))
    assert out == ["brightness 0"] * 10
    sizes = [n for kind, n in fake.batches if kind == "describe"]
    assert sum(sizes) == 10 and max(sizes) == 4
    assert fake.threads == {"worker-inference"}
    assert threading.current_thread().name not in fake.threads
    assert w.stats.items[RequestKind.DESCRIBE] == 10


async def test_max_wait_bounds_latency_of_a_lone_request() -> None:
    fake = FakeBackend()
    with InferenceWorker(fake, max_batch=8, max_wait_ms=50) as w:
        t0 = time.monotonic()
        await w.describe(IMG, "p", 8)
        dt = time.monotonic() - t0
    assert fake.batches == [("describe", 1)]
    assert 0.04 <= dt < 1.0


async def test_requests_with_different_settings_are_not_mixed() -> None:
    fake = FakeBackend()
    with InferenceWorker(fake, max_batch=8, max_wait_ms=20) as w:
        await asyncio.gather(w.describe(IMG, "p", 8), w.describe(IMG, "p", 16), w.describe(IMG, "p", 8))
    assert sorted(fake.batches) == [("describe", 1), ("describe", 2)]


async def test_scores_jump_the_queue() -> None:
    fake = FakeBackend(delay_s=0.05)
    with InferenceWorker(fake, max_batch=2, max_wait_ms=0) as w:
        describes = [asyncio.ensure_future(w.describe(IMG, "p", 8)) for _ in range(6)]
        await asyncio.sleep(0.01)  # the first describe batch is running
        probs = await w.answer_probs(ChatPrompt("s", "ALARM"), ["0", "1"])
        done_describes = sum(d.done() for d in describes)
        await asyncio.gather(*describes)
    assert probs.shape == (2,) and probs[1] > 0.99
    assert done_describes <= 2  # only the batch already running finished before the score


async def test_a_failing_batch_fails_only_its_requests() -> None:
    fake = FakeBackend(fail_on="bad")
    with InferenceWorker(fake, max_batch=1, max_wait_ms=0) as w:
        with pytest.raises(RuntimeError, match="fake failure"):
            await w.describe(IMG, "bad", 8)
        assert await w.describe(IMG, "good", 8) == "brightness 0"
    assert w.stats.errors == 1


async def test_stop_fails_pending_requests() -> None:
    fake = FakeBackend(delay_s=0.3)
    w = InferenceWorker(fake, max_batch=1, max_wait_ms=0)
    w.start()
    first = asyncio.ensure_future(w.describe(IMG, "p", 8))
    second = asyncio.ensure_future(w.describe(IMG, "p", 8))
    await asyncio.sleep(0.05)
    await asyncio.to_thread(w.stop, 2.0)
    assert await first == "brightness 0"  # the running batch completes
    with pytest.raises(WorkerClosed):
        await second
    with pytest.raises(WorkerClosed):
        await w.describe(IMG, "p", 8)


async def test_cancelled_requests_are_skipped() -> None:
    fake = FakeBackend(delay_s=0.2)
    with InferenceWorker(fake, max_batch=1, max_wait_ms=0) as w:
        first = asyncio.ensure_future(w.describe(IMG, "p", 8))
        doomed = asyncio.ensure_future(w.describe(IMG, "p", 8))
        await asyncio.sleep(0.05)
        doomed.cancel()
        await first
        await asyncio.sleep(0.1)
    assert fake.batches == [("describe", 1)]
