"""One camera's stage: frames -> motion gate -> descriptions -> windows -> judge -> events."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from pipeline.alerts import AlertMachine
from pipeline.judge import Judge, Smoother
from pipeline.motion import MotionGate
from pipeline.queues import QueueClosed, ThreadToAsyncQueue
from pipeline.records import Description, Event, Frame, Record, WindowScore
from pipeline.snapshots import encode_jpeg
from pipeline.windows import SlidingWindows
from pipeline.worker import InferenceWorker

log = logging.getLogger(__name__)

WindowItem = tuple[Description, Frame]


@dataclass(frozen=True, slots=True)
class CameraSettings:
    """The per-camera choices of the stage (prompts already resolved from config overrides)."""

    camera: str
    describe_prompt: str
    max_new_tokens: int
    max_inflight: int = 8
    context: str | None = None
    judge_template: str | None = None
    snapshot_quality: int = 85
    smoothing: float = 1.0
    """EMA weight of the newest window score (1: none)."""


@dataclass(slots=True)
class _Pending:
    frame: Frame
    text: asyncio.Task[str | BaseException]
    reused: bool


@dataclass(slots=True)
class _Judging:
    window: tuple[WindowItem, ...]
    score: asyncio.Task[float | BaseException]


T = TypeVar("T")


async def _outcome(work: Awaitable[T]) -> T | BaseException:
    """The result of ``work`` or the exception it raised (so one failure does not end the task group)."""
    try:
        return await work
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return exc


@dataclass
class CameraCounters:
    """What one camera's stage has done."""

    described: int = 0
    gated: int = 0
    errors: int = 0
    windows: int = 0
    events: int = 0
    last_score: float | None = None
    last_time: float = 0.0


class CameraPipeline:
    """Runs one camera from its frame queue to sinks.

    Up to ``max_inflight`` descriptions are requested ahead (so one camera can fill a batch), and results
    are consumed in frame order. A gated frame reuses the description of the last described frame.
    """

    def __init__(
        self,
        settings: CameraSettings,
        *,
        frames: ThreadToAsyncQueue[Frame],
        describer: InferenceWorker,
        judge: Judge,
        gate: MotionGate,
        windows: SlidingWindows[WindowItem],
        alerts: AlertMachine,
        emit: Callable[[Record], None],
    ) -> None:
        self.settings = settings
        self.frames = frames
        self.describer = describer
        self.judge = judge
        self.gate = gate
        self.windows = windows
        self.alerts = alerts
        self.emit = emit
        self.counters = CameraCounters()
        self._seq = 0
        self._smoother = Smoother(settings.smoothing)

    @property
    def camera(self) -> str:
        return self.settings.camera

    async def run(self) -> None:
        """Process frames until the queue is closed and drained (or the task is cancelled).

        Three tasks, joined by bounded queues that keep frame order: ``feed`` (gate, request
        descriptions), ``collect`` (descriptions into windows, request scores) and ``alert`` (scores
        into events, in order).
        """
        n = self.settings.max_inflight
        described: asyncio.Queue[_Pending | None] = asyncio.Queue(n)
        judged: asyncio.Queue[_Judging | None] = asyncio.Queue(n)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._feed(described, tg), name=f"{self.camera}-feed")
                tg.create_task(self._collect(described, judged, tg), name=f"{self.camera}-collect")
                tg.create_task(self._alert(judged, tg), name=f"{self.camera}-alert")
        finally:
            change = self.alerts.close(self.counters.last_time)
            if change is not None:
                self.emit(change)

    async def _feed(self, described: asyncio.Queue[_Pending | None], tg: asyncio.TaskGroup) -> None:
        ref: asyncio.Task[str | BaseException] | None = None
        while True:
            try:
                frame = await self.frames.get()
            except QueueClosed:
                break
            fresh = self.gate.needs_model(frame.thumb, frame.stream_time)
            if fresh or ref is None:
                ref = tg.create_task(_outcome(self._describe(frame)), name=f"{self.camera}-describe-{frame.index}")
            else:
                self.counters.gated += 1
            await described.put(_Pending(frame, ref, reused=not fresh))
        await described.put(None)

    def _describe(self, frame: Frame) -> Awaitable[str]:
        s = self.settings
        return self.describer.describe(frame.image, s.describe_prompt, s.max_new_tokens)

    async def _collect(
        self,
        described: asyncio.Queue[_Pending | None],
        judged: asyncio.Queue[_Judging | None],
        tg: asyncio.TaskGroup,
    ) -> None:
        while (item := await described.get()) is not None:
            result = await item.text
            frame = item.frame
            if isinstance(result, BaseException):
                self.counters.errors += 1
                log.error("camera %r: description of frame %d failed: %s", self.camera, frame.index, result)
                continue
            if not item.reused:
                self.counters.described += 1
            desc = Description(
                camera=self.camera,
                frame_index=frame.index,
                stream_time=frame.stream_time,
                wall_time=frame.wall_time,
                text=result,
                reused=item.reused,
            )
            self.counters.last_time = frame.stream_time
            self.emit(desc)
            window = self.windows.add((desc, frame))
            if window is not None:
                await judged.put(self._request_score(window, tg))
        tail = self.windows.flush()
        if tail is not None:
            await judged.put(self._request_score(tail, tg))
        await judged.put(None)

    def _request_score(self, window: tuple[WindowItem, ...], tg: asyncio.TaskGroup) -> _Judging:
        texts = tuple(d.text for d, _ in window)
        s = self.settings
        task = tg.create_task(_outcome(self.judge.score(texts, s.context, s.judge_template)))
        return _Judging(window, task)

    async def _alert(self, judged: asyncio.Queue[_Judging | None], tg: asyncio.TaskGroup) -> None:
        while (item := await judged.get()) is not None:
            score = await item.score
            window = item.window
            if isinstance(score, BaseException):
                self.counters.errors += 1
                log.error("camera %r: judging a window failed: %s", self.camera, score)
                continue
            self._seq += 1
            raw, score = score, self._smoother.update(score)
            ws = WindowScore(
                camera=self.camera,
                seq=self._seq,
                start_time=window[0][0].stream_time,
                end_time=window[-1][0].stream_time,
                wall_time=time.time(),
                score=score,
                descriptions=tuple(d.text for d, _ in window),
                frame_indices=tuple(d.frame_index for d, _ in window),
                raw_score=raw if self.settings.smoothing < 1 else None,
            )
            self.counters.windows += 1
            self.counters.last_score = score
            self.emit(ws)
            snapshot = None
            if self.alerts.wants_snapshot(score):
                image = window[-1][1].image
                snapshot = await asyncio.to_thread(encode_jpeg, image, self.settings.snapshot_quality)
            for change in self.alerts.update(ws, snapshot):
                self.emit(change)
                if change.type == "new":
                    self.counters.events += 1
                    tg.create_task(self._explain(change.after), name=f"{self.camera}-explain-{change.after.id}")

    async def _explain(self, event: Event) -> None:
        try:
            text = await self.judge.explain(event.descriptions, self.settings.context)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("camera %r: no explanation for event %s: %s", self.camera, event.id, exc)
            return
        change = self.alerts.set_explanation(event.id, text)
        if change is not None:
            self.emit(change)
