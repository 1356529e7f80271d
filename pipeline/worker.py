"""The inference worker: one thread owns a model and serves batched requests from every camera."""

from __future__ import annotations

import asyncio
import bisect
import logging
import threading
import time
from collections import deque
from collections.abc import Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.backend import ChatPrompt, ModelBackend
from pipeline.records import Image

log = logging.getLogger(__name__)


class RequestKind(StrEnum):
    """Kinds of model work, in priority order: scores are one cheap forward pass and gate alerts."""

    SCORE = "score"
    DESCRIBE = "describe"
    GENERATE = "generate"


class WorkerClosed(Exception):
    """The worker has stopped; the request was not served."""


class WorkerBusy(Exception):
    """Too many requests are pending (a bound that callers with in-flight limits never reach)."""


@dataclass(slots=True)
class _Request:
    kind: RequestKind
    key: Hashable
    payload: Any
    future: Future[Any]
    enqueued: float = field(default_factory=time.monotonic)


LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def _histogram(bounds: tuple[float, ...]) -> dict[RequestKind, list[int]]:
    return {k: [0] * (len(bounds) + 1) for k in RequestKind}


@dataclass
class WorkerStats:
    """What the worker has done; written by its thread, read from any thread.

    ``latency`` and ``batch_sizes`` count batches per bucket of :data:`LATENCY_BUCKETS_S` and
    :data:`BATCH_BUCKETS` (the last slot is everything above).
    """

    batches: dict[RequestKind, int] = field(default_factory=lambda: dict.fromkeys(RequestKind, 0))
    items: dict[RequestKind, int] = field(default_factory=lambda: dict.fromkeys(RequestKind, 0))
    busy_s: dict[RequestKind, float] = field(default_factory=lambda: dict.fromkeys(RequestKind, 0.0))
    latency: dict[RequestKind, list[int]] = field(default_factory=lambda: _histogram(LATENCY_BUCKETS_S))
    batch_sizes: dict[RequestKind, list[int]] = field(default_factory=lambda: _histogram(BATCH_BUCKETS))
    errors: int = 0

    def mean_batch(self, kind: RequestKind) -> float:
        return self.items[kind] / self.batches[kind] if self.batches[kind] else 0.0

    def record(self, kind: RequestKind, size: int, seconds: float) -> None:
        self.batches[kind] += 1
        self.items[kind] += size
        self.busy_s[kind] += seconds
        self.latency[kind][bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.batch_sizes[kind][bisect.bisect_left(BATCH_BUCKETS, size)] += 1


class InferenceWorker:
    """Serves describe, score and generate requests from one thread, in batches.

    ``backend`` describes images; ``judge`` (by default the same model) scores and explains. Serving both
    models from one thread keeps one device busy with one batch at a time instead of two contending.
    A batch holds up to ``max_batch`` requests of one kind (and the same settings). A kind is due when
    its batch is full or its oldest request has waited ``max_wait_ms``; a due score batch (one cheap
    forward pass that gates alerts) goes first, otherwise the due kind with the oldest request, so
    explanations are never starved. Under load, partial score batches wait for full describe batches
    (throughput); when idle, nothing waits longer than ``max_wait_ms`` (latency).
    """

    def __init__(
        self,
        backend: ModelBackend,
        *,
        judge: ModelBackend | None = None,
        max_batch: int = 8,
        max_wait_ms: float = 50.0,
        max_pending: int | None = None,
        name: str = "inference",
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.backend = backend
        self.judge = judge or backend
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_pending = max_pending or 64 * max_batch
        self.stats = WorkerStats()
        self._queues: dict[RequestKind, deque[_Request]] = {k: deque() for k in RequestKind}
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"worker-{name}", daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Refuse new requests, fail the pending ones, and wait (up to ``timeout``) for the current batch."""
        with self._cond:
            self._closed = True
            pending = [r for q in self._queues.values() for r in q]
            for q in self._queues.values():
                q.clear()
            self._cond.notify_all()
        for r in pending:
            if not r.future.done():
                r.future.set_exception(WorkerClosed("the inference worker stopped"))
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> InferenceWorker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pending(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    # -- submitting --------------------------------------------------------------------------------

    def submit(self, kind: RequestKind, key: Hashable, payload: Any) -> Future[Any]:
        """Queue one request from any thread; the future resolves to its result."""
        fut: Future[Any] = Future()
        with self._cond:
            if self._closed:
                raise WorkerClosed("the inference worker has stopped")
            if sum(len(q) for q in self._queues.values()) >= self.max_pending:
                raise WorkerBusy(f"{self.max_pending} requests pending")
            self._queues[kind].append(_Request(kind, key, payload, fut))
            self._cond.notify()
        return fut

    async def describe(self, image: Image, prompt: str, max_new_tokens: int) -> str:
        """Describe one image (batched with other cameras' frames)."""
        result: str = await asyncio.wrap_future(
            self.submit(RequestKind.DESCRIBE, ("describe", max_new_tokens), (image, prompt))
        )
        return result

    async def answer_probs(self, prompt: ChatPrompt, answers: Sequence[str]) -> npt.NDArray[np.float64]:
        """The judge's answer distribution for one prompt."""
        return (await self.judge_pass(prompt, answers))[0]

    async def judge_pass(
        self, prompt: ChatPrompt, answers: Sequence[str], pool_layers: Sequence[int] = ()
    ) -> tuple[npt.NDArray[np.float64], dict[int, npt.NDArray[np.float32]]]:
        """The answer distribution for one prompt and its pooled hidden states of ``pool_layers``."""
        result: tuple[npt.NDArray[np.float64], dict[int, npt.NDArray[np.float32]]] = await asyncio.wrap_future(
            self.submit(RequestKind.SCORE, ("score", (tuple(answers), tuple(pool_layers))), prompt)
        )
        return result

    async def generate(self, prompt: ChatPrompt, max_new_tokens: int) -> str:
        """Free text for one prompt."""
        result: str = await asyncio.wrap_future(self.submit(RequestKind.GENERATE, ("generate", max_new_tokens), prompt))
        return result

    # -- the thread --------------------------------------------------------------------------------

    def _pick(self, now: float) -> tuple[RequestKind | None, float | None]:
        """The kind to serve now, or (None, seconds until one is due). Caller holds the lock.

        A kind is due when a batch of it is full or its oldest request has waited ``max_wait``. A due
        score batch goes first; otherwise the due kind with the oldest request.
        """
        due: list[tuple[float, RequestKind]] = []
        wait: float | None = None
        for kind, q in self._queues.items():
            if not q:
                continue
            key = q[0].key
            deadline = q[0].enqueued + self.max_wait_s
            if deadline <= now or sum(1 for r in q if r.key == key) >= self.max_batch:
                if kind is RequestKind.SCORE:
                    return kind, None
                due.append((q[0].enqueued, kind))
            else:
                wait = deadline - now if wait is None else min(wait, deadline - now)
        if due:
            return min(due)[1], None
        return None, wait

    def _take_batch(self) -> list[_Request] | None:
        """Block until a batch is due; None once the worker is closed."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                kind, wait = self._pick(time.monotonic())
                if kind is None:
                    self._cond.wait(wait)
                    continue
                q = self._queues[kind]
                key = q[0].key
                batch: list[_Request] = []
                rest: deque[_Request] = deque()
                while q:
                    r = q.popleft()
                    if r.key == key and len(batch) < self.max_batch:
                        if r.future.set_running_or_notify_cancel():
                            batch.append(r)
                    else:
                        rest.append(r)
                q.extend(rest)
                if batch:
                    return batch

    def _run(self) -> None:
        while (batch := self._take_batch()) is not None:
            kind = batch[0].kind
            t0 = time.monotonic()
            try:
                results = self._execute(kind, batch)
            except Exception as exc:
                self.stats.errors += 1
                model = self.backend if kind is RequestKind.DESCRIBE else self.judge
                log.error("%s batch of %d failed on %s: %s", kind.value, len(batch), model.name, exc)
                for r in batch:
                    r.future.set_exception(exc)
                continue
            dt = time.monotonic() - t0
            self.stats.record(kind, len(batch), dt)
            for r, res in zip(batch, results, strict=True):
                r.future.set_result(res)

    def _execute(self, kind: RequestKind, batch: list[_Request]) -> Sequence[Any]:
        setting = batch[0].key[1]  # type: ignore[index]
        if kind is RequestKind.DESCRIBE:
            return self.backend.describe([r.payload[0] for r in batch], [r.payload[1] for r in batch], setting)
        if kind is RequestKind.SCORE:
            answers, layers = setting
            out = self.judge.judge_pass([r.payload for r in batch], answers, layers)
            return [(out.probs[i], {k: v[i] for k, v in out.pooled.items()}) for i in range(len(batch))]
        return self.judge.generate([r.payload for r in batch], setting)
