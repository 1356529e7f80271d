from __future__ import annotations

import asyncio
import threading

import pytest

from pipeline.queues import Backpressure, QueueClosed, ThreadToAsyncQueue


async def test_drop_oldest_counts_every_drop() -> None:
    q: ThreadToAsyncQueue[int] = ThreadToAsyncQueue(
        maxsize=3, policy=Backpressure.DROP_OLDEST, loop=asyncio.get_running_loop()
    )
    for i in range(10):
        q.put(i)
    assert len(q) == 3 and q.dropped == 7
    assert [await q.get() for _ in range(3)] == [7, 8, 9]


async def test_drop_latest_keeps_the_first() -> None:
    q: ThreadToAsyncQueue[int] = ThreadToAsyncQueue(
        maxsize=2, policy=Backpressure.DROP_LATEST, loop=asyncio.get_running_loop()
    )
    assert [q.put(i) for i in range(4)] == [True, True, False, False]
    assert q.dropped == 2
    assert [await q.get(), await q.get()] == [0, 1]


async def test_wait_policy_blocks_the_producer_and_loses_nothing() -> None:
    q: ThreadToAsyncQueue[int] = ThreadToAsyncQueue(
        maxsize=2, policy=Backpressure.WAIT, loop=asyncio.get_running_loop()
    )

    def produce() -> None:
        for i in range(50):
            q.put(i)
        q.close()

    t = threading.Thread(target=produce)
    t.start()
    got = []
    while True:
        try:
            got.append(await q.get())
        except QueueClosed:
            break
        assert len(q) <= 2
        await asyncio.sleep(0.001)
    t.join()
    assert got == list(range(50)) and q.dropped == 0


async def test_wait_policy_put_can_be_cancelled() -> None:
    q: ThreadToAsyncQueue[int] = ThreadToAsyncQueue(
        maxsize=1, policy=Backpressure.WAIT, loop=asyncio.get_running_loop()
    )
    q.put(0)
    cancel = threading.Event()
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(q.put(1, cancel=cancel)))
    t.start()
    await asyncio.sleep(0.2)
    assert t.is_alive()  # blocked on the full queue
    cancel.set()
    t.join(2)
    assert result == [False]


async def test_close_wakes_a_waiting_consumer() -> None:
    q: ThreadToAsyncQueue[int] = ThreadToAsyncQueue(
        maxsize=1, policy=Backpressure.WAIT, loop=asyncio.get_running_loop()
    )
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0.01)
    threading.Thread(target=q.close).start()
    with pytest.raises(QueueClosed):
        await asyncio.wait_for(getter, 2)
    assert not q.put(1)
