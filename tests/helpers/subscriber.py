"""An aiomqtt subscriber that records what arrives and survives broker restarts (persistent session)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """Records what arrives on ``topics``; its session is persistent (clean_session off, QoS 1), as Home
    Assistant's and Node-RED's are, and it reconnects on its own after a broker restart."""

    def __init__(self, port: int, topics: list[str], **client_kw: Any) -> None:
        self.port = port
        self.topics = topics
        self.client_kw = client_kw
        self.messages: list[Received] = []
        self.arrivals: list[float] = []
        """time.perf_counter() at which each message arrived"""
        self.identifier = f"test-sub-{uuid.uuid4().hex[:8]}"
        self.subscribed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Subscriber:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.subscribed.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", self.port, identifier=self.identifier, clean_session=False, **self.client_kw
                ) as client:
                    for t in self.topics:
                        await client.subscribe(t, qos=1)
                    self.subscribed.set()
                    async for m in client.messages:
                        payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
                        self.messages.append(Received(str(m.topic), payload, bool(m.retain)))
                        self.arrivals.append(time.perf_counter())
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)

    def on(self, topic: str) -> list[Received]:
        return [m for m in self.messages if m.topic == topic]

    def payloads(self) -> list[Any]:
        """Every message's JSON payload, in arrival order."""
        return [m.json() for m in self.messages]

    @staticmethod
    async def retained(port: int, topic: str, **client_kw: Any) -> list[Received]:
        """What a new subscriber gets at once from the broker's retained store."""
        got: list[Received] = []
        async with aiomqtt.Client("127.0.0.1", port, **client_kw) as client:
            await client.subscribe(topic, qos=1)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    async for m in client.messages:
                        payload = m.payload if isinstance(m.payload, bytes) else str(m.payload).encode()
                        got.append(Received(str(m.topic), payload, bool(m.retain)))
        return got

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.05)
