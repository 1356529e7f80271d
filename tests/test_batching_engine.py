"""The batching engine's scheduling, preparation and failure handling, with a fake model."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from pipeline.engines.batching import BatchingEngine
from pipeline.inference import (
    ChatPrompt,
    DescribeRequest,
    ExplainRequest,
    ModelClosed,
    ModelFailed,
    ModelUnavailable,
    RequestKind,
    ScoreRequest,
)
from tests.helpers.fakes import FakeModel

IMG = np.zeros((8, 8, 3), np.uint8)


def describe(prompt: str = "p", n: int = 8) -> DescribeRequest:
    return DescribeRequest(IMG, prompt, n)


async def test_batches_up_to_max_batch_off_the_event_loop() -> None:
    fake = FakeModel(delay_s=0.05)
    with BatchingEngine(fake, max_batch=4, max_wait_ms=200) as w:
        out = await asyncio.gather(*(w.describe(describe()) for _ in range(10)))
    assert [o.text for o in out] == ["brightness 0"] * 10
    sizes = [n for kind, n in fake.batches if kind == "describe"]
    assert sum(sizes) == 10 and max(sizes) == 4
    assert fake.threads == {"engine-model"}
    assert fake.prepare_threads == {"prepare-model"}  # inputs are prepared off the model thread
    assert threading.current_thread().name not in fake.threads
    assert w.stats.items[RequestKind.DESCRIBE] == 10
    assert w.stats.prepare_on_model_thread_s == 0.0


async def test_without_prepare_ahead_the_model_thread_prepares() -> None:
    fake = FakeModel()
    with BatchingEngine(fake, max_batch=4, max_wait_ms=20, prepare_ahead=False) as w:
        await asyncio.gather(*(w.describe(describe()) for _ in range(4)))
    assert fake.prepare_threads == {"engine-model"}
    assert w.stats.prepare_on_model_thread_s > 0


async def test_max_wait_bounds_latency_of_a_lone_request() -> None:
    fake = FakeModel()
    with BatchingEngine(fake, max_batch=8, max_wait_ms=50) as w:
        t0 = time.monotonic()
        await w.describe(describe())
        dt = time.monotonic() - t0
    assert fake.batches == [("describe", 1)]
    assert dt >= 0.04  # it waited for company, as long as max_wait_ms says


async def test_requests_with_different_settings_are_not_mixed() -> None:
    fake = FakeModel()
    with BatchingEngine(fake, max_batch=8, max_wait_ms=20) as w:
        await asyncio.gather(w.describe(describe(n=8)), w.describe(describe(n=16)), w.describe(describe(n=8)))
    assert sorted(fake.batches) == [("describe", 1), ("describe", 2)]


async def test_scores_jump_the_queue() -> None:
    fake = FakeModel(delay_s=0.05)
    with BatchingEngine(fake, max_batch=2, max_wait_ms=0) as w:
        describes = [asyncio.ensure_future(w.describe(describe())) for _ in range(6)]
        await asyncio.sleep(0.01)  # the first describe batch is running
        result = await w.score(ScoreRequest(ChatPrompt("s", "ALARM"), ("0", "1")))
        done_describes = sum(d.done() for d in describes)
        await asyncio.gather(*describes)
    assert result.probs.shape == (2,) and result.probs[1] > 0.99
    assert done_describes <= 2  # only the batch already running finished before the score


async def test_score_carries_pooled_hidden_states_and_explain_text() -> None:
    fake = FakeModel()
    with BatchingEngine(fake, max_batch=4, max_wait_ms=0) as w:
        result = await w.score(ScoreRequest(ChatPrompt("s", "ALARM"), ("0", "1"), (3,)))
        text = await w.explain(ExplainRequest(ChatPrompt("s", "why?"), 8))
    assert list(result.pooled) == [3] and result.pooled[3].shape == (2,)
    assert text.text == "something alarming happened"


async def test_a_failing_batch_fails_only_its_requests() -> None:
    fake = FakeModel(fail_on="bad")
    with BatchingEngine(fake, max_batch=1, max_wait_ms=0) as w:
        with pytest.raises(RuntimeError, match="fake failure"):
            await w.describe(describe("bad"))
        assert (await w.describe(describe("good"))).text == "brightness 0"
    assert w.stats.errors == 1


async def test_a_failing_preparation_fails_only_its_request() -> None:
    class BadPrep(FakeModel):
        def prepare(self, request):  # type: ignore[no-untyped-def]
            if isinstance(request, DescribeRequest) and request.prompt == "bad":
                raise ValueError("unreadable image")
            return super().prepare(request)

    fake = BadPrep()
    with BatchingEngine(fake, max_batch=4, max_wait_ms=0) as w:
        with pytest.raises(ValueError, match="unreadable"):
            await w.describe(describe("bad"))
        assert (await w.describe(describe("good"))).text == "brightness 0"


async def test_stop_fails_pending_requests() -> None:
    fake = FakeModel(delay_s=0.3)
    w = BatchingEngine(fake, max_batch=1, max_wait_ms=0)
    w.start()
    first = asyncio.ensure_future(w.describe(describe()))
    second = asyncio.ensure_future(w.describe(describe()))
    await asyncio.sleep(0.05)
    await asyncio.to_thread(w.stop, 2.0)
    assert (await first).text == "brightness 0"  # the running batch completes
    with pytest.raises(ModelClosed):
        await second
    with pytest.raises(ModelClosed):
        await w.describe(describe())


async def test_cancelled_requests_are_skipped() -> None:
    fake = FakeModel(delay_s=0.2)
    with BatchingEngine(fake, max_batch=1, max_wait_ms=0) as w:
        first = asyncio.ensure_future(w.describe(describe()))
        doomed = asyncio.ensure_future(w.describe(describe()))
        await asyncio.sleep(0.05)
        doomed.cancel()
        await first
        await asyncio.sleep(0.1)
        assert w.pending == 0
    assert fake.batches == [("describe", 1)]


async def test_a_failed_batch_is_tried_again_in_halves(caplog: pytest.LogCaptureFixture) -> None:
    """One bad request (or a batch too big for the device) fails only itself."""
    fake = FakeModel(fail_on="bad")
    with BatchingEngine(fake, max_batch=4, max_wait_ms=100) as w:
        results = await asyncio.gather(
            *(w.describe(describe(p)) for p in ("a", "b", "bad", "c")), return_exceptions=True
        )
    assert [type(r).__name__ for r in results] == ["DescribeResult", "DescribeResult", "RuntimeError", "DescribeResult"]
    assert [n for kind, n in fake.batches] == [4, 2, 2, 1, 1]  # 4 fails; halves: [a b] ok, [bad c] fails, then alone
    assert w.stats.retries == 2 and w.stats.errors == 1
    assert any("trying it in halves" in r.getMessage() for r in caplog.records)


async def test_out_of_memory_fails_only_the_batch() -> None:
    class Small(FakeModel):
        def describe(self, batch, max_new_tokens, cancel=None):  # type: ignore[no-untyped-def]
            if len(batch) > 2:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return super().describe(batch, max_new_tokens, cancel)

    with BatchingEngine(Small(), max_batch=8, max_wait_ms=100) as w:
        results = await asyncio.gather(*(w.describe(describe()) for _ in range(8)))
    assert len(results) == 8 and w.stats.errors == 0 and w.stats.retries == 3


async def test_a_dead_model_thread_is_restarted(caplog: pytest.LogCaptureFixture) -> None:
    class DiesOnce(FakeModel):
        died = False

        def describe(self, batch, max_new_tokens, cancel=None):  # type: ignore[no-untyped-def]
            if not self.died:
                self.died = True
                raise SystemExit("the thread dies")  # not an Exception: escapes the per-batch handling
            return super().describe(batch, max_new_tokens, cancel)

    with BatchingEngine(DiesOnce(), max_batch=1, max_wait_ms=0) as w:
        with pytest.raises(ModelUnavailable, match="the model thread failed"):
            await w.describe(describe())
        assert (await w.describe(describe())).text == "brightness 0"  # served by the restarted thread
    assert w.stats.restarts == 1 and w.failure is None
    assert any("restarting it" in r.getMessage() for r in caplog.records)


async def test_a_model_thread_that_keeps_dying_ends_the_engine() -> None:
    class Broken(FakeModel):
        def describe(self, batch, max_new_tokens, cancel=None):  # type: ignore[no-untyped-def]
            raise SystemExit("the thread dies")

    w = BatchingEngine(Broken(), max_batch=1, max_wait_ms=0)
    w.start()
    waiting = asyncio.create_task(w.failed())
    for _ in range(3):  # died and restarted
        with pytest.raises(ModelUnavailable, match="the model thread failed"):
            await w.describe(describe())
    with pytest.raises(ModelFailed):  # died for good: a dead engine, not a stopped one
        await w.describe(describe())
    assert isinstance(await waiting, SystemExit) and w.failure is await w.failed() and w.stats.restarts == 3
    with pytest.raises(ModelFailed):
        await w.describe(describe())
    w.stop()
    with pytest.raises(ModelFailed):  # still dead after the stop
        await w.describe(describe())


async def test_stop_cuts_a_long_generation_short() -> None:
    fake = FakeModel(delay_s=600)  # a generation that would run ten minutes
    w = BatchingEngine(fake, max_batch=1, max_wait_ms=0)
    w.start()
    running = asyncio.ensure_future(w.describe(describe()))
    while not fake.batches:
        await asyncio.sleep(0.01)
    await asyncio.to_thread(w.stop)
    assert not w._thread.is_alive()  # it returned at its next step, not after ten minutes
    assert (await running).text == "brightness 0"


async def test_images_are_prepared_only_a_bounded_way_ahead() -> None:
    fake = FakeModel(delay_s=0.3)
    with BatchingEngine(fake, max_batch=2, max_wait_ms=0) as w:
        tasks = [asyncio.ensure_future(w.describe(describe())) for _ in range(20)]
        await asyncio.sleep(0.15)
        prepared = sum(1 for q in w._queues.values() for p in q if p.prepared is not None)
        for t in tasks:
            t.cancel()
    assert prepared <= w.lookahead == 4
