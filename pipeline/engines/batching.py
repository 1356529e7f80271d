"""The batching engine: one thread owns the model(s) and serves batched requests from every camera.

Inputs are prepared (images processed, prompts tokenised) by a separate thread ahead of the batch, so
the model thread only pads, stacks and computes: each batch starts with ready tensors while the
previous one runs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol

from pipeline.inference import (
    DescribeRequest,
    DescribeResult,
    EmbedRequest,
    EmbedResult,
    EngineStats,
    ExplainRequest,
    ExplainResult,
    ModelClosed,
    ModelFailed,
    ModelInfo,
    ModelRequest,
    ModelRequestError,
    ModelResult,
    ModelUnavailable,
    RequestKind,
    ScoreRequest,
    ScoreResult,
)

log = logging.getLogger(__name__)

STOP_WAIT_S = 1.0
"""How long leaving the engine waits for its threads (a generation is cut short at its next token); one
still busy then is left behind (they are daemons), so a stop is never held up by the model."""


class Prepared:
    """Model inputs of one request, ready to be batched; each model subclasses it with its tensors."""

    __slots__ = ()


class BatchModel(Protocol):
    """A model served by the batching engine: ``prepare`` runs on a preparation thread, the rest on the
    model thread, one batch at a time (requests in a batch share their ``batch_key``). Generation stops
    early, at the next token, once ``cancel`` is set (the engine is stopping)."""

    @property
    def info(self) -> ModelInfo: ...

    def prepare(self, request: ModelRequest) -> Prepared:
        """CPU work that needs no model: image processing, chat templates, tokenisation."""
        ...

    def describe(
        self, batch: Sequence[Prepared], max_new_tokens: int, cancel: threading.Event | None = None
    ) -> list[DescribeResult]: ...

    def embed(self, batch: Sequence[Prepared]) -> list[EmbedResult]: ...

    def score(
        self, batch: Sequence[Prepared], answers: Sequence[str], pool_layers: Sequence[int]
    ) -> list[ScoreResult]: ...

    def explain(
        self, batch: Sequence[Prepared], max_new_tokens: int, cancel: threading.Event | None = None
    ) -> list[ExplainResult]: ...


IMAGE_KINDS = frozenset({RequestKind.DESCRIBE, RequestKind.EMBED})
"""Kinds whose prepared inputs are images: at most ``lookahead`` of them are prepared ahead."""
RESTARTS_ALLOWED = 3
"""Deaths of the model thread within RESTART_WINDOW_S that it is restarted after; one more ends the engine."""
RESTART_WINDOW_S = 60.0


class EngineBusy(Exception):
    """Too many requests are pending (a bound that callers with in-flight limits never reach)."""


@dataclass(slots=True, eq=False)
class _Pending:
    request: ModelRequest
    future: Future[ModelResult]
    enqueued: float = field(default_factory=time.monotonic)
    prepared: Prepared | None = None
    preparing: bool = False

    @property
    def key(self) -> Hashable:
        return self.request.batch_key


class BatchingEngine:
    """A :class:`~pipeline.inference.ModelClient` over in-process models, served from one thread in batches.

    ``describer`` describes images; ``judge`` (by default the same model) scores and explains. Serving both
    from one thread keeps one device busy with one batch at a time instead of two contending. A batch
    holds up to ``max_batch`` prepared requests of one kind with the same settings. A kind is due when
    its batch is full or requests have stopped arriving for ``max_wait_ms`` (at most ``linger_s`` after
    the oldest, while they keep coming; see :meth:`_pick`); a due score batch (one cheap
    forward pass that gates alerts) goes first, otherwise the due kind with the oldest request, so
    explanations are never starved.

    A batch that fails (an exception, out of memory) is tried again in halves, down to single requests,
    so one bad input or a batch too large for the device fails only itself. A model thread that dies of
    something else is restarted (logged); after :data:`RESTARTS_ALLOWED` deaths within a minute the
    engine gives up (``failure``; :meth:`failed` returns) and fails what waits with ModelFailed.

    With ``prepare_ahead`` (the default) a preparation thread readies requests as they arrive, at most
    ``2 * max_batch`` images ahead of the model (bounded memory); without it the model thread prepares
    each batch itself (kept for the benchmark that measures the difference).
    """

    def __init__(
        self,
        describer: BatchModel | None,
        *,
        judge: BatchModel | None = None,
        max_batch: int = 8,
        max_wait_ms: float = 50.0,
        max_pending: int | None = None,
        prepare_ahead: bool = True,
        name: str = "model",
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        judge = judge or describer
        if judge is None:
            raise ValueError("an engine needs a judge model or a describer")
        self._describer = describer
        self._judge = judge
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self.linger_s = max(0.5, 4 * self.max_wait_s)
        """The longest a request waits for company while others keep arriving."""
        self.max_pending = max_pending or 64 * max_batch
        self.prepare_ahead = prepare_ahead
        self.lookahead = 2 * max_batch
        self._stats = EngineStats()
        self._queues: dict[RequestKind, deque[_Pending]] = {k: deque() for k in RequestKind}
        self._ready_images = 0
        self._cond = threading.Condition()
        self._closed = False
        self._stopping = threading.Event()
        self.failure: BaseException | None = None
        self._failed: Future[BaseException] = Future()
        self._deaths: deque[float] = deque()
        self._thread = threading.Thread(target=self._run, name=f"engine-{name}", daemon=True)
        self._prep_thread = threading.Thread(target=self._prepare_loop, name=f"prepare-{name}", daemon=True)

    # -- ModelClient -------------------------------------------------------------------------------

    @property
    def describer(self) -> ModelInfo | None:
        return None if self._describer is None else self._describer.info

    @property
    def judge(self) -> ModelInfo:
        return self._judge.info

    @property
    def stats(self) -> EngineStats:
        return self._stats

    async def describe(self, request: DescribeRequest) -> DescribeResult:
        """Describe one frame (batched with other cameras' frames)."""
        result = await asyncio.wrap_future(self.submit(request))
        assert isinstance(result, DescribeResult)
        return result

    async def embed(self, request: EmbedRequest) -> EmbedResult:
        """The frame's pooled vision embedding (batched with other cameras' frames)."""
        result = await asyncio.wrap_future(self.submit(request))
        assert isinstance(result, EmbedResult)
        return result

    async def score(self, request: ScoreRequest) -> ScoreResult:
        """The judge's answer distribution (and pooled hidden states) for one prompt."""
        result = await asyncio.wrap_future(self.submit(request))
        assert isinstance(result, ScoreResult)
        return result

    async def explain(self, request: ExplainRequest) -> ExplainResult:
        """Free text for one prompt."""
        result = await asyncio.wrap_future(self.submit(request))
        assert isinstance(result, ExplainResult)
        return result

    async def failed(self) -> BaseException:
        """Wait until the engine gives up (its model thread kept dying); the error."""
        return await asyncio.shield(asyncio.wrap_future(self._failed))

    async def __aenter__(self) -> BatchingEngine:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop, STOP_WAIT_S)

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        if self.prepare_ahead:
            self._prep_thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Refuse new requests, fail the pending ones, cut the running generation short (at its next token)
        and wait for the model thread to finish, up to ``timeout``."""
        self._stopping.set()
        with self._cond:
            self._closed = True
            pending = [p for q in self._queues.values() for p in q]
            for q in self._queues.values():
                q.clear()
            self._cond.notify_all()
        for p in pending:
            if not p.future.done():
                p.future.set_exception(ModelClosed("the model engine stopped"))
        for thread in (self._thread, self._prep_thread):
            if thread.is_alive():
                thread.join(timeout)
                if thread.is_alive():
                    log.warning("model engine: %s is still busy after %.0f s; left behind", thread.name, timeout)

    def __enter__(self) -> BatchingEngine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pending(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    def submit(self, request: ModelRequest) -> Future[ModelResult]:
        """Queue one request from any thread; the future resolves to its result."""
        if isinstance(request, DescribeRequest | EmbedRequest) and self._describer is None:
            raise ModelRequestError(f"{self._judge.info.name} is a judge-only engine: it does not describe frames")
        fut: Future[ModelResult] = Future()
        with self._cond:
            if self._closed:
                if self.failure is not None:
                    raise ModelFailed(f"the model engine failed: {self.failure!r}")
                raise ModelClosed("the model engine has stopped")
            # Only images are refused when too many wait: a window's score or explanation (small, bounded by
            # the cameras' own queues) must not be lost because the cameras asked for many descriptions.
            if request.kind in IMAGE_KINDS and sum(len(self._queues[k]) for k in IMAGE_KINDS) >= self.max_pending:
                raise EngineBusy(f"{self.max_pending} image requests pending")
            self._queues[request.kind].append(_Pending(request, fut))
            self._cond.notify_all()
        return fut

    # -- preparation -------------------------------------------------------------------------------

    def _model_for(self, kind: RequestKind) -> BatchModel:
        if kind in IMAGE_KINDS:
            assert self._describer is not None
            return self._describer
        return self._judge

    def _next_to_prepare(self) -> _Pending | None:
        """The most urgent request not yet prepared (scores first, then oldest); caller holds the lock.

        Images are prepared at most ``lookahead`` ahead of the model; scores and explanations (text
        only) always.
        """
        best: _Pending | None = None
        for kind, q in self._queues.items():
            if any(p.prepared is None and p.future.cancelled() for p in q):  # never served: forget them
                kept = [p for p in q if p.prepared is not None or not p.future.cancelled()]
                q.clear()
                q.extend(kept)
            if kind in IMAGE_KINDS and self._ready_images >= self.lookahead:
                continue
            for p in q:
                if p.prepared is None and not p.preparing:
                    if kind is RequestKind.SCORE:
                        return p
                    if best is None or p.enqueued < best.enqueued:
                        best = p
                    break
        return best

    def _prepare_loop(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._closed and (p := self._next_to_prepare()) is None:
                        self._cond.wait()
                    if self._closed:
                        return
                    assert p is not None
                    p.preparing = True
                self._prepare_one(p)
        except BaseException as exc:  # a bug: the model thread would starve; fail everything loudly
            log.exception("model engine: the preparation thread failed")
            self._die(exc)

    def _prepare_one(self, p: _Pending) -> None:
        t0 = time.monotonic()
        try:
            prepared = self._model_for(p.request.kind).prepare(p.request)
        except Exception as exc:
            with self._cond:
                self._discard(p)
            self._stats.errors += 1
            log.error("%s request could not be prepared: %s", p.request.kind.value, exc)
            if not p.future.done():
                p.future.set_exception(exc)
            return
        finally:
            self._stats.prepare_s += time.monotonic() - t0
        with self._cond:
            p.prepared, p.preparing = prepared, False
            if p.request.kind in IMAGE_KINDS:
                self._ready_images += 1
            self._cond.notify_all()

    def _discard(self, p: _Pending) -> None:
        q = self._queues[p.request.kind]
        if p in q:
            q.remove(p)

    # -- the model thread --------------------------------------------------------------------------

    def _ready(self, p: _Pending) -> bool:
        return p.prepared is not None or not self.prepare_ahead

    def _pick(self, now: float) -> tuple[RequestKind | None, float | None]:
        """The kind to serve now, or (None, seconds until one is due). Caller holds the lock.

        A kind is due when a batch of ready requests is full, or when no request that would join it is
        still being prepared and either arrivals have paused for ``max_wait`` or its oldest request has
        waited ``linger_s``. So a burst (a file read ahead, many cameras at once) leaves in full batches
        (preparing takes milliseconds, a batch seconds), while a lone request waits only ``max_wait``.
        A due score batch goes first; otherwise the due kind with the oldest request.
        """
        due: list[tuple[float, RequestKind]] = []
        wait: float | None = None
        for kind, q in self._queues.items():
            head = next((p for p in q if self._ready(p)), None)
            if head is None:
                continue
            same = [p for p in q if p.key == head.key]
            ready = sum(1 for p in same if self._ready(p))
            coming = ready < min(len(same), self.max_batch) and self._can_prepare(kind)
            deadline = min(max(p.enqueued for p in same) + self.max_wait_s, head.enqueued + self.linger_s)
            if ready >= self.max_batch or (deadline <= now and not coming):
                if kind is RequestKind.SCORE:
                    return kind, None
                due.append((head.enqueued, kind))
            else:  # woken by the preparation thread when an input is ready, or by a new request
                left = max(deadline - now, self.max_wait_s if coming else 0.0)
                wait = left if wait is None else min(wait, left)
        if due:
            return min(due)[1], None
        return None, wait

    def _can_prepare(self, kind: RequestKind) -> bool:
        """Whether the preparation thread is free to prepare more requests of ``kind``."""
        return self.prepare_ahead and (kind not in IMAGE_KINDS or self._ready_images < self.lookahead)

    def _take_batch(self) -> list[_Pending] | None:
        """Block until a batch is due; None once the engine is closed."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                kind, wait = self._pick(time.monotonic())
                if kind is None:
                    self._cond.wait(wait)
                    continue
                q = self._queues[kind]
                key = next(p for p in q if self._ready(p)).key
                batch: list[_Pending] = []
                rest: deque[_Pending] = deque()
                while q:
                    p = q.popleft()
                    if p.key == key and self._ready(p) and len(batch) < self.max_batch:
                        if kind in IMAGE_KINDS and p.prepared is not None:
                            self._ready_images -= 1
                        if p.future.set_running_or_notify_cancel():
                            batch.append(p)
                    else:
                        rest.append(p)
                q.extend(rest)
                self._cond.notify_all()  # room to prepare more
                if batch:
                    return batch

    def _run(self) -> None:
        batch: list[_Pending] | None = None
        while True:
            try:
                while (batch := self._take_batch()) is not None:
                    self._serve(batch)
                return
            except BaseException as exc:  # not a model error: the thread would die; restart it, within reason
                now = time.monotonic()
                self._deaths.append(now)
                while self._deaths and now - self._deaths[0] > RESTART_WINDOW_S:
                    self._deaths.popleft()
                if len(self._deaths) > RESTARTS_ALLOWED:
                    log.exception("model engine: the model thread failed again; giving up")
                    self._die(exc, running=batch or ())
                    return
                for p in batch or ():
                    if not p.future.done():
                        p.future.set_exception(ModelUnavailable(f"the model thread failed: {exc!r}; restarted"))
                self._stats.restarts += 1
                log.exception("model engine: the model thread failed (%r); restarting it", exc)

    def _die(self, exc: BaseException, running: Sequence[_Pending] = ()) -> None:
        """Record the failure (:meth:`failed` returns it), refuse new requests, fail every waiting one."""
        self.failure = exc
        with self._cond:
            self._closed = True
            pending = [*running, *(p for q in self._queues.values() for p in q)]
            for q in self._queues.values():
                q.clear()
            self._cond.notify_all()
        self._failed.set_result(exc)
        for p in pending:
            if not p.future.done():
                p.future.set_exception(ModelFailed(f"the model engine failed: {exc!r}"))

    def _serve(self, batch: list[_Pending]) -> None:
        kind = batch[0].request.kind
        model = self._model_for(kind)
        t0 = time.monotonic()
        if not self.prepare_ahead:
            ready = []
            for p in batch:
                try:
                    p.prepared = model.prepare(p.request)
                    ready.append(p)
                except Exception as exc:
                    self._stats.errors += 1
                    log.error("%s request could not be prepared: %s", kind.value, exc)
                    p.future.set_exception(exc)
            spent = time.monotonic() - t0
            self._stats.prepare_s += spent
            self._stats.prepare_on_model_thread_s += spent
            batch = ready
            if not batch:
                return
        self._run_batch(model, batch)
        self._stats.record(kind, len(batch), time.monotonic() - t0)

    def _run_batch(self, model: BatchModel, batch: list[_Pending]) -> None:
        """Run a batch and hand out its results; a failed batch is tried again in halves."""
        try:
            results = self._execute(model, batch, self._stopping)
        except Exception as exc:
            kind = batch[0].request.kind.value
            if len(batch) == 1 or self._stopping.is_set():
                self._stats.errors += len(batch)
                log.error("%s request failed on %s: %s", kind, model.info.name, _brief(exc))
                for p in batch:
                    p.future.set_exception(exc)
                return
            self._stats.retries += 1
            log.warning(
                "%s batch of %d failed on %s (%s); trying it in halves", kind, len(batch), model.info.name, _brief(exc)
            )
            half = len(batch) // 2
            self._run_batch(model, batch[:half])
            self._run_batch(model, batch[half:])
            return
        for p, res in zip(batch, results, strict=True):
            p.future.set_result(res)

    @staticmethod
    def _execute(model: BatchModel, batch: list[_Pending], cancel: threading.Event) -> Sequence[ModelResult]:
        first = batch[0].request
        prepared = [p.prepared for p in batch if p.prepared is not None]
        if isinstance(first, DescribeRequest):
            return model.describe(prepared, first.max_new_tokens, cancel)
        if isinstance(first, EmbedRequest):
            return model.embed(prepared)
        if isinstance(first, ScoreRequest):
            return model.score(prepared, first.answers, first.pool_layers)
        return model.explain(prepared, first.max_new_tokens, cancel)


def _brief(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
