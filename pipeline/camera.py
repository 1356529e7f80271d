"""One camera's stage: frames -> motion gate -> descriptions -> windows -> judge -> events."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import Field, ValidationInfo, field_validator, model_validator

from pipeline.alerts import AlertMachine, AlertSettings, instance_tag, new_event_id
from pipeline.clips import ClipRecorder
from pipeline.controls import CameraControls
from pipeline.inference import DescribeRequest, EmbedRequest, ModelClient
from pipeline.judge import Judge, JudgeSettings, Smoother, Verdict
from pipeline.locations import is_live_url
from pipeline.motion import MotionGate
from pipeline.prompts import DEFAULT_DESCRIBE_PROMPT
from pipeline.queues import QueueClosed, ThreadToAsyncQueue
from pipeline.records import Description, Event, Frame, Record, WindowScore
from pipeline.rules import GENERAL_RULE, Rule, check_rules, complete_rule, general_rule
from pipeline.sampling import SamplingSettings
from pipeline.settings import Settings
from pipeline.snapshots import encode_jpeg
from pipeline.sources import SourceSettings
from pipeline.stats import counter
from pipeline.windows import SlidingWindows, WindowSettings

log = logging.getLogger(__name__)

WindowItem = tuple[Description, Frame]


class DescribeSettings(Settings):
    """How frames are described (the prompt part of ``[model]``, overridable per camera)."""

    prompt: str = Field(DEFAULT_DESCRIBE_PROMPT, min_length=1, title="Frame description prompt")
    max_new_tokens: int = Field(64, ge=1, le=1024, title="Longest frame description, in tokens")


GENERAL_RULE_MARK: dict[str, Any] = {"name": GENERAL_RULE}
"""Where the configuration merge puts the general rule (with its ``calibration``): built during validation."""


class CameraSettings(SourceSettings):
    """Everything about one camera: its source and the settings of each stage, with the camera's own
    overrides already merged over the global sections (``[[cameras]]`` in config.toml)."""

    context: str | None = Field(None, title='What the camera shows, e.g. "a parking lot"; given to the judge')
    sampling: SamplingSettings = SamplingSettings()
    model: DescribeSettings = DescribeSettings()
    judge: JudgeSettings = JudgeSettings()
    windows: WindowSettings = WindowSettings()
    alerting: AlertSettings = AlertSettings()
    rules: tuple[Rule, ...] = Field(
        (GENERAL_RULE_MARK,),
        validate_default=True,
        title="What the camera watches for: the general anomaly rule, then its [[rules]] and [[cameras.rules]]",
    )

    @field_validator("rules", mode="before")
    @classmethod
    def _complete_rules(cls, value: Any, info: ValidationInfo) -> Any:
        """The general rule built from the camera's ``judge`` and ``alerting`` (its calibration as the
        merge gave it), the others completed with ``alerting``'s hysteresis and severity bands."""
        judge, alerting = info.data.get("judge"), info.data.get("alerting")
        if not isinstance(value, list | tuple) or judge is None or alerting is None:
            return value  # their own errors are reported
        base = alerting.model_dump()
        out: list[Any] = []
        for r in value:
            mark = r if isinstance(r, dict) and r.keys() <= {"name", "calibration"} else None
            if mark is not None and mark.get("name") == GENERAL_RULE and not out:
                out.append(general_rule(judge, alerting, mark.get("calibration")))
            elif isinstance(r, dict) and r.get("name") == GENERAL_RULE:
                raise ValueError(f"{GENERAL_RULE!r} is the general anomaly rule; set it up in [alerting] and [judge]")
            else:
                out.append(complete_rule(r, base))
        return out

    @field_validator("rules")
    @classmethod
    def _general_first(cls, value: tuple[Rule, ...]) -> tuple[Rule, ...]:
        if not value or not value[0].general:
            raise ValueError(f"the first rule must be the general one ({GENERAL_RULE!r})")
        return check_rules(value)

    @model_validator(mode="before")
    @classmethod
    def _gate_default(cls, data: Any) -> Any:
        """An unset motion gate is on for live cameras and off for files."""
        if not isinstance(data, dict) or "url" not in data:
            return data
        sampling = data.get("sampling", {})
        if isinstance(sampling, SamplingSettings):
            sampling = sampling.model_dump(exclude_unset=True)
        if isinstance(sampling, dict) and sampling.get("motion_gate") is None:
            live = data.get("live")
            if not isinstance(live, bool):
                live = isinstance(data["url"], str) and is_live_url(data["url"])
            data = {**data, "sampling": {**sampling, "motion_gate": live}}
        return data


@dataclass(slots=True)
class _Described:
    frame: Frame
    text: asyncio.Task[str | BaseException]
    reused: bool
    forced: bool = False


@dataclass(slots=True)
class _Judging:
    window: tuple[WindowItem, ...]
    rules: tuple[Rule, ...]
    verdicts: asyncio.Task[list[Verdict] | BaseException]
    """One per rule asked."""


T = TypeVar("T")


async def _outcome(work: Awaitable[T]) -> T | BaseException:
    """The result of ``work`` or the exception it raised (so one failure does not end the task group)."""
    try:
        return await work
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return exc


NO_EXPLANATION = "[no explanation: the model did not answer]"
"""The explanation of an event whose explanation request failed."""


class FailureLog:
    """Logs the first failure of a streak (and every 100th), then the recovery, so an outage of the model
    gives a few lines, not one per frame."""

    def __init__(self, camera: str, what: str) -> None:
        self.camera = camera
        self.what = what
        self.streak = 0

    def failed(self, task: str, exc: BaseException) -> None:
        self.streak += 1
        if self.streak == 1:
            log.error("camera %r: %s failed: %s", self.camera, task, exc)
        elif self.streak % 100 == 0:
            log.error("camera %r: %s still failing (%d in a row): %s", self.camera, self.what, self.streak, exc)

    def recovered(self) -> None:
        if self.streak:
            log.info("camera %r: %s work again after %d failures", self.camera, self.what, self.streak)
            self.streak = 0


@dataclass(slots=True)
class CameraCounters:
    """What one camera's stage has done."""

    described: int = counter("Frames described by the model", metric="frames_described")
    gated: int = counter("Sampled frames the motion gate kept from the model", metric="frames_gated")
    semantic_gated: int = counter(
        "Of the gated frames: those the motion gate let through but the semantic gate kept from the model",
        metric="frames_semantic_gated",
    )
    paused: int = counter("Frames passed over while an operator had the camera switched off", metric="frames_paused")
    errors: int = counter("Model or judge failures")
    windows: int = counter("Windows scored by the judge", metric="windows_scored")
    events: int = counter("Events started")
    suppressed: int = counter("Threshold crossings of a rule ignored while it cooled down", metric="alerts_suppressed")
    last_time: float = 0.0


class CameraPipeline:
    """Runs one camera from its frame queue to sinks.

    Up to ``max_inflight`` descriptions are requested ahead (so one camera can fill a batch), and results
    are consumed in frame order. A gated frame reuses the description of the last described frame.
    ``controls`` (the owner of the camera's settings in force) are read on every frame and window:
    switched off, the camera's frames are passed over and its open events end; a description asked for is
    made of the next frame and judged at once; every window is asked of each rule not paused (a paused
    rule's open event ends); a rule changed by an operator applies from the next window.
    """

    def __init__(
        self,
        settings: CameraSettings,
        *,
        frames: ThreadToAsyncQueue[Frame],
        models: ModelClient,
        judge: Judge,
        emit: Callable[[Record], None],
        max_inflight: int = 8,
        instance: str = "",
        controls: CameraControls | None = None,
        clips: ClipRecorder | None = None,
    ) -> None:
        self.settings = settings
        self.controls = controls or CameraControls(settings.name, settings.rules)
        self.clips = clips
        self.frames = frames
        self.models = models
        self.judge = judge
        self.emit = emit
        self.max_inflight = max_inflight
        self.gate = MotionGate(settings.sampling)
        self.windows = SlidingWindows[WindowItem](settings.windows)
        tag = instance_tag(instance)

        def new_id(wall: float) -> str:
            return new_event_id(wall, tag)

        self.machines = {
            name: AlertMachine(settings.name, rule, id_factory=new_id) for name, rule in self.controls.rules.items()
        }
        """Each rule's alert machine, the general rule first."""
        self.controls.watch(lambda rule: self.machines[rule.name].use(rule))
        self.counters = CameraCounters()
        self._seq = 0
        self._smoothers = {name: Smoother(settings.judge.smoothing) for name in self.machines}
        self._semantic = bool(settings.sampling.semantic_gate)
        self._reference: npt.NDArray[np.float32] | None = None
        self._described_at = float("-inf")
        self._describe_failures = FailureLog(settings.name, "descriptions")
        self._judge_failures = FailureLog(settings.name, "window scores")

    @property
    def camera(self) -> str:
        return self.settings.name

    async def run(self) -> None:
        """Process frames until the queue is closed and drained (or the task is cancelled).

        Three tasks, joined by bounded queues that keep frame order: ``feed`` (gate, request
        descriptions), ``collect`` (descriptions into windows, request scores) and ``alert`` (scores
        into events, in order).
        """
        n = self.max_inflight
        described: asyncio.Queue[_Described | None] = asyncio.Queue(n)
        judged: asyncio.Queue[_Judging | None] = asyncio.Queue(n)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._feed(described, tg), name=f"{self.camera}-feed")
                tg.create_task(self._collect(described, judged, tg), name=f"{self.camera}-collect")
                tg.create_task(self._alert(judged, tg), name=f"{self.camera}-alert")
            for ended in self._end_events(self.counters.last_time):  # the end of a file: clips are cut too
                if self.clips is not None:
                    await self._clip(ended)
        finally:
            self._end_events(self.counters.last_time)  # cancelled (a stop): events end, without a clip

    async def _feed(self, described: asyncio.Queue[_Described | None], tg: asyncio.TaskGroup) -> None:
        ref: asyncio.Task[str | BaseException] | None = None
        while True:
            try:
                frame = await self.frames.get()
            except QueueClosed:
                break
            if not self.controls.enabled:
                self.counters.paused += 1
                for ended in self._end_events(frame.stream_time):
                    self._clip_later(ended, tg)
                continue
            forced = self.controls.take_describe_now()
            fresh = self.gate.needs_model(frame.thumb, frame.stream_time, force=forced)
            if fresh and self._semantic and not forced:
                fresh = await self._changed_in_meaning(frame, first=ref is None)
            if fresh:
                self._described_at = frame.stream_time
            if fresh or ref is None:
                ref = tg.create_task(_outcome(self._describe(frame)), name=f"{self.camera}-describe-{frame.index}")
            else:
                self.counters.gated += 1
            await described.put(_Described(frame, ref, reused=not fresh, forced=forced))
        await described.put(None)

    async def _changed_in_meaning(self, frame: Frame, *, first: bool) -> bool:
        """The semantic gate: whether the frame's vision embedding moved away from the last described frame's
        (always True for the first frame and once ``motion_max_reuse_s`` has passed)."""
        try:
            vector = (await self.models.embed(EmbedRequest(frame.image))).vector
        except Exception as exc:  # no embeddings (a remote VLM): describe, and say once why the gate is off
            log.warning("camera %r: the semantic gate is off: %s", self.camera, exc)
            self._semantic = False
            return True
        s = self.settings.sampling
        ref = self._reference
        recent = frame.stream_time - self._described_at < s.motion_max_reuse_s
        if not first and ref is not None and recent and float(vector @ ref) >= s.semantic_threshold:
            self.counters.semantic_gated += 1
            return False
        self._reference = vector
        return True

    async def _describe(self, frame: Frame) -> str:
        s = self.settings.model
        result = await self.models.describe(DescribeRequest(frame.image, s.prompt, s.max_new_tokens))
        return result.text

    async def _collect(
        self,
        described: asyncio.Queue[_Described | None],
        judged: asyncio.Queue[_Judging | None],
        tg: asyncio.TaskGroup,
    ) -> None:
        while (item := await described.get()) is not None:
            result = await item.text
            frame = item.frame
            if isinstance(result, BaseException):
                self.counters.errors += 1
                self._describe_failures.failed(f"description of frame {frame.index}", result)
                continue
            if not item.reused:
                self._describe_failures.recovered()
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
            if window is None and item.forced:  # asked for by an operator: judged now
                window = self.windows.flush()
            if window is not None:
                await judged.put(self._request_score(window, tg))
        tail = self.windows.flush()
        if tail is not None:
            await judged.put(self._request_score(tail, tg))
        await judged.put(None)

    def _request_score(self, window: tuple[WindowItem, ...], tg: asyncio.TaskGroup) -> _Judging:
        """Every active rule's question about the window, asked at once (so the engine batches them and the
        questions share the window's prefix)."""
        texts = tuple(d.text for d, _ in window)
        rules = tuple(self.controls.active())
        context = self.settings.context

        async def all_rules() -> list[Verdict]:
            return list(await asyncio.gather(*(self.judge.score(r, texts, context) for r in rules)))

        return _Judging(window, rules, tg.create_task(_outcome(all_rules())))

    async def _alert(self, judged: asyncio.Queue[_Judging | None], tg: asyncio.TaskGroup) -> None:
        while (item := await judged.get()) is not None:
            verdicts = await item.verdicts
            window = item.window
            if not self.controls.enabled:  # switched off while it was being judged
                continue
            for ended in self._end_events(window[-1][0].stream_time, only=self.controls.paused):
                self._clip_later(ended, tg)
            if isinstance(verdicts, BaseException):
                self.counters.errors += 1
                self._judge_failures.failed("judging a window", verdicts)
                continue
            self._judge_failures.recovered()
            self._seq += 1
            self.counters.windows += 1
            snapshot = None
            for rule, verdict in zip(item.rules, verdicts, strict=True):
                if rule.name in self.controls.paused:  # paused while it was being judged
                    continue
                machine = self.machines[rule.name]
                raw, score = verdict.score, self._smoothers[rule.name].update(verdict.score)
                ws = WindowScore(
                    camera=self.camera,
                    seq=self._seq,
                    start_time=window[0][0].stream_time,
                    end_time=window[-1][0].stream_time,
                    wall_time=time.time(),
                    score=score,
                    descriptions=tuple(d.text for d, _ in window),
                    frame_indices=tuple(d.frame_index for d, _ in window),
                    raw_score=raw if self.settings.judge.smoothing < 1 else None,
                    exact=verdict.exact,
                    rule=rule.name,
                )
                self.emit(ws)
                if snapshot is None and machine.wants_snapshot(score):
                    image = window[-1][1].image
                    snapshot = await asyncio.to_thread(encode_jpeg, image, self.settings.alerting.snapshot_quality)
                changes = machine.update(ws, snapshot)
                self.counters.suppressed = sum(m.suppressed for m in self.machines.values())
                for change in changes:
                    self.emit(change)
                    if change.type == "new":
                        self.counters.events += 1
                        tg.create_task(self._explain(change.after), name=f"{self.camera}-explain-{change.after.id}")
                    elif change.type == "end":
                        self._clip_later(change.after, tg)

    def _clip_later(self, event: Event, tg: asyncio.TaskGroup) -> None:
        if self.clips is not None:
            tg.create_task(self._clip(event), name=f"{self.camera}-clip-{event.id}")

    async def _clip(self, event: Event) -> None:
        assert self.clips is not None and event.end_time is not None
        name = await self.clips.record(event.id, event.start_time, event.end_time)
        change = None if name is None else self.machines[event.rule].set_clip(event.id, name)
        if change is not None:
            self.emit(change)

    def _end_events(self, stream_time: float, only: set[str] | None = None) -> list[Event]:
        """End the open events, if any (of the rules ``only`` names: an operator paused them; else all: the
        camera was switched off, or the stage ends); the events that ended."""
        ended = []
        for name, machine in self.machines.items():
            if only is not None and name not in only:
                continue
            change = machine.close(max(stream_time, self.counters.last_time))
            if change is not None:
                self.emit(change)
                ended.append(change.after)
        return ended

    async def _explain(self, event: Event) -> None:
        try:
            text = await self.judge.explain(self.settings.judge, event.descriptions, self.settings.context)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the event went out without it; say in it that none will come
            log.warning("camera %r: no explanation for event %s: %s", self.camera, event.id, exc)
            text = f"{NO_EXPLANATION} ({type(exc).__name__})"
        change = self.machines[event.rule].set_explanation(event.id, text)
        if change is not None:
            self.emit(change)
