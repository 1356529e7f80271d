"""The live monitor: every configured camera through one model client, results out to the sinks.

The monitor owns its tasks: a camera stage that fails is logged at once and stops the run (exit status
1); the model engine dying does the same (the run awaits its failure with its other tasks); the status
reporter is restarted; each sink runner is supervised by the sink hub. It carries out what comes in over
MQTT (:class:`~sinks.mqtt_commands.CommandHandler`): operators' commands go to the cameras' settings owners,
summary requests are answered as records through the sinks.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any

from monitor.config import AppConfig
from monitor.live.cameras import CameraParts, CameraSummary, build_camera
from monitor.live.controls import ControlStore
from monitor.live.sinks import mqtt_topics
from monitor.models import build_judge
from pipeline.controls import Command
from pipeline.inference import EngineStats, ModelClient, ModelLoadError
from pipeline.judge import Judge
from pipeline.records import Answer, EventChange, Record
from pipeline.supervision import LagProbe, restarting
from sinks.base import Sink, SinkHub, SinkStats
from sinks.event_store import EventStore, clip_dir
from sinks.mqtt_commands import CommandListener
from sinks.mqtt_connection import MqttConnection

log = logging.getLogger(__name__)


def _check_describer(models: ModelClient) -> None:
    if models.describer is None or not models.describer.images:
        name = models.judge.name if models.describer is None else models.describer.name
        raise ModelLoadError(name, "it cannot describe images", "Configure a vision-language model as [model].")


@dataclass(frozen=True, slots=True)
class RunSummary:
    """The outcome of :meth:`Monitor.run`."""

    cameras: tuple[CameraSummary, ...]
    seconds: float
    stopped: bool
    """True when the run was interrupted (signal, time limit or a failure) before its files ended."""
    crashed: tuple[str, ...] = ()
    """Parts of the monitor that failed and stopped the run (a camera stage, the model engine)."""
    abandoned: tuple[str, ...] = ()
    """What was still busy when the stop's time was up and was left behind (the model load)."""

    @property
    def failed(self) -> tuple[CameraSummary, ...]:
        """Cameras whose source could not be read: a file not read through, a stream never connected."""
        return tuple(c for c in self.cameras if c.source_error is not None)


STOP_SLACK_S = 1.5
"""How long a stop may take beyond the drain (engine, decode threads, sinks): the process is out within
``drain_timeout_s`` + 2 s of a signal or the time limit."""


class _Run:
    """When a run stops: a stop asked for, or its deadline; and the budget of its way out."""

    def __init__(self, stop: asyncio.Event, limit_s: float | None) -> None:
        self.stop = stop
        self.limit_s = limit_s
        self.deadline = None if limit_s is None else time.monotonic() + limit_s
        self.drain_s = 0.0
        self.stopped_at: float | None = None
        self.crashed: list[str] = []
        self.abandoned: list[str] = []

    async def until(self, *tasks: asyncio.Future[Any]) -> set[asyncio.Future[Any]]:
        """Wait for the first of ``tasks``; the ones done, or nothing when the run stopped first (a stop
        or the time limit, then remembered as the moment the way out began)."""
        waiter = asyncio.ensure_future(self.stop.wait())
        try:
            timeout = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
            done, _ = await asyncio.wait({*tasks, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        done.discard(waiter)
        if done:
            return done
        if self.stopped_at is None:
            self.stopped_at = time.monotonic()
            if not self.stop.is_set():
                log.info("time limit of %.0f s reached", self.limit_s)
        return set()

    def left(self, wanted_s: float, *, drain: bool = False) -> float:
        """How long a step of the way out may take: ``wanted_s``, cut to what the stop's budget leaves."""
        if self.stopped_at is None:
            return wanted_s
        if drain:
            self.drain_s = wanted_s
        end = self.stopped_at + self.drain_s + STOP_SLACK_S
        return max(0.0, min(wanted_s, end - time.monotonic()))


@dataclass(frozen=True, slots=True)
class LiveStats:
    """The running monitor's figures: each camera's stats objects, the engine's, each sink's, and those of
    the monitor's other parts (event loop, judge, MQTT connection and commands)."""

    cameras: list[tuple[str, list[object]]]
    engine: EngineStats | None
    sinks: list[tuple[str, SinkStats]]
    parts: list[object]


class Monitor:
    """Runs every configured camera through one model client (which serves the judge too)."""

    def __init__(
        self,
        cfg: AppConfig,
        *,
        sinks: Sequence[Sink],
        models: ModelClient | None = None,
        load_models: Callable[[], ModelClient] | None = None,
        judge: Judge | None = None,
        max_seconds: float | None = None,
        mqtt: MqttConnection | None = None,
    ) -> None:
        """``models``, or ``load_models`` to load them once the sinks are open (a ModelLoadError then
        comes out of :meth:`run`); ``mqtt``: the broker connection whose commands it obeys (when
        ``[mqtt] commands``)."""
        if not cfg.cameras:
            raise ValueError("no cameras configured: add [[cameras]] to the config or pass --source")
        if (models is None) == (load_models is None):
            raise ValueError("give models or load_models")
        if models is not None:
            _check_describer(models)
        cfg = cfg.bind_instance()  # its name in the state paths (the clips sit with the instance's store)
        self.cfg = cfg
        self.models = models
        self.load_models = load_models
        self.sinks = sinks
        self.judge = judge
        self.max_seconds = max_seconds
        self.drain_timeout_s = cfg.outputs.drain_timeout_s
        self.lag = LagProbe()
        self.controls = ControlStore(cfg.mqtt.controls, cfg.cameras, publish=self._publish)
        self.mqtt = mqtt
        self.commands: CommandListener | None = None
        if mqtt is not None and cfg.mqtt.commands:
            self.commands = CommandListener(mqtt_topics(cfg), [c.name for c in cfg.cameras], self)
            mqtt.listen(self.commands)
        self._cameras: list[CameraParts] = []
        self._judge: Judge | None = None
        self._hub: SinkHub | None = None
        self._summaries: set[asyncio.Task[None]] = set()

    def _publish(self, record: Record) -> None:
        if self._hub is not None:
            self._hub.publish(record)

    def command(self, command: Command) -> str | None:
        """Carry out an operator's command (from the event loop); the settings owner of its camera publishes
        the settings now in force. The reason it is refused, if it is."""
        return self.controls.apply(command)

    def summarize(self, payload: bytes) -> str | None:
        """Start answering a summarize request (from the event loop); the reason it is refused, if it is."""
        from monitor.live.summary import answer, parse_request

        try:
            request = parse_request(payload, [c.name for c in self.cfg.cameras])
        except ValueError as exc:
            return str(exc)
        if self.models is None or not self.cfg.store.enabled:
            return "the models are still loading" if self.models is not None else "the event history is off"
        models = self.models

        async def reply() -> None:
            try:
                result = await answer(request, self.cfg.store.path, models, self.cfg.summaries, self.cfg.instance or "")
            except Exception as exc:  # the asker gets an answer either way
                log.warning("summary of %s failed: %s", request, exc)
                result = {"id": request.id, "since": request.since, "until": request.until, "error": str(exc)}
            self._publish(Answer("summary", result, time.time()))

        task = asyncio.create_task(reply(), name="summarize")
        self._summaries.add(task)
        task.add_done_callback(self._summaries.discard)
        return None

    def live_stats(self) -> LiveStats:
        """The running monitor's figures (for the metrics endpoint); no cameras before :meth:`run`."""
        parts: list[object] = [self.lag.stats]
        parts += [p.stats for p in (self._judge, self.mqtt, self.commands) if p is not None]
        parts += [st for s in self.sinks if (st := getattr(s, "stats", None)) is not None]  # e.g. the store's
        return LiveStats(
            cameras=[(c.name, c.stats()) for c in self._cameras],
            engine=None if self.models is None else self.models.stats,
            sinks=[] if self._hub is None else [(r.sink.name, r.stats) for r in self._hub.runners],
            parts=parts,
        )

    def _left_open(self) -> list[EventChange]:
        """``end`` changes for the events a killed run left open in the event store (sent to every sink)."""
        s = self.cfg.store
        if not s.enabled or not s.path.is_file():
            return []
        store = EventStore(s.path)
        try:
            events = store.open_events()
        finally:
            store.close()
        now = time.time()
        if events:
            log.info("%d events left open by an earlier run are ended now", len(events))
        return [EventChange("end", e, replace(e, end_time=e.start_time, end_wall=now)) for e in events]

    async def run(self, stop: asyncio.Event | None = None) -> RunSummary:
        """Run until every file source has ended, ``stop`` is set, ``max_seconds`` have passed or a part of
        the monitor fails.

        The sinks open first: events a killed run left open are ended everywhere and the outbox delivers
        while the models load (a stop or the time limit during the load leaves it behind). On the way out
        sources stop, stages drain for ``drain_timeout_s`` and are then cancelled (their events end), the
        engine cuts its running generation short, sinks flush: all of it within ``drain_timeout_s`` +
        :data:`STOP_SLACK_S` of the stop, whatever was running (what is still busy then is left behind).
        """
        cfg = self.cfg
        stop = stop or asyncio.Event()
        t0 = time.monotonic()
        run = _Run(stop, self.max_seconds)
        left_open = await asyncio.to_thread(self._left_open)
        hub = SinkHub(self.sinks, maxsize=cfg.outputs.sink_queue_size)
        async with hub:
            self._hub = hub
            try:
                for change in left_open:
                    hub.publish(change)
                self.controls.publish_all()
                models = self.models or await self._load(run)
                if models is not None:
                    self.models = models
                    await self._run_cameras(models, hub, run)
            finally:
                hub.close_timeout_s = run.left(hub.close_timeout_s)
        summary = RunSummary(
            cameras=tuple(c.summary() for c in self._cameras),
            seconds=time.monotonic() - t0,
            stopped=run.stopped_at is not None,
            crashed=tuple(run.crashed),
            abandoned=tuple(run.abandoned),
        )
        for cs in summary.cameras:
            log.info(
                "%s: %d frames read, %d sampled, %d described, %d gated, %d dropped, %d windows, %d events%s",
                cs.camera,
                cs.frames_read,
                cs.frames_sampled,
                cs.described,
                cs.frames_gated,
                cs.frames_dropped,
                cs.windows,
                cs.events,
                f"; FAILED: {cs.source_error}" if cs.source_error else "",
            )
        return summary

    async def _load(self, run: _Run) -> ModelClient | None:
        """The models, loaded in a thread of their own; None when the run is stopped or out of time first
        (the load goes on in its thread, left behind: nothing waits for it)."""
        assert self.load_models is not None
        loaded: Future[ModelClient] = Future()

        def load() -> None:
            loaded.set_running_or_notify_cancel()  # running: a stop leaves it, it cannot be cancelled
            try:
                loaded.set_result(self.load_models())  # type: ignore[misc]
            except BaseException as exc:
                loaded.set_exception(exc)

        threading.Thread(target=load, name="load-models", daemon=True).start()
        waiting = asyncio.wrap_future(loaded)
        if await run.until(waiting):
            return waiting.result()
        waiting.cancel()
        run.abandoned.append("the model load")
        log.info("stopped while the models load; the load is left behind")
        return None

    async def _run_cameras(self, models: ModelClient, hub: SinkHub, run: _Run) -> None:
        """The cameras through the models, from their start to the end of the stop."""
        cfg = self.cfg
        _check_describer(models)
        try:
            async with models:
                judge = self._judge = self.judge or build_judge(cfg, models)
                cameras = self._cameras = [
                    build_camera(
                        cam,
                        models=models,
                        judge=judge,
                        emit=hub.publish,
                        image_max_side=cfg.model.image_max_side,
                        max_batch=cfg.model.max_batch,
                        instance=cfg.instance or "",
                        controls=self.controls.cameras[cam.name],
                        clips=cfg.clips,
                        clip_dir=clip_dir(cfg.store.path) if cfg.store.enabled else cfg.outputs.dir / "clips",
                        sharing=len(cfg.cameras),
                    )
                    for cam in cfg.cameras
                ]
                for c in cameras:
                    c.source.start()
                stages = {asyncio.create_task(c.stage.run(), name=f"camera-{c.name}"): c for c in cameras}
                helpers = [
                    asyncio.create_task(
                        restarting("camera status reporter", lambda: self._report_status(cameras, hub)), name="status"
                    ),
                    asyncio.create_task(restarting("event loop lag probe", self.lag.run), name="lag-probe"),
                ]
                failure = asyncio.create_task(models.failed(), name="model-failure")
                try:
                    await self._watch(stages, failure, run)
                finally:
                    failure.cancel()
                    for h in [*helpers, *self._summaries]:
                        h.cancel()
                    for c in cameras:
                        c.source.stop()
        finally:
            await asyncio.to_thread(self._join_sources, self._cameras, run.left(1.0))
            for c in self._cameras:
                hub.publish(c.status())

    async def _watch(
        self, stages: dict[asyncio.Task[None], CameraParts], failure: asyncio.Task[BaseException], run: _Run
    ) -> None:
        """Wait for the stages to end, a stop, the time limit or a failure; then stop what is left."""
        remaining = set(stages)
        while remaining and not run.crashed:
            done = await run.until(*remaining, failure)
            if not done:
                break
            for task in remaining & done:
                exc = None if task.cancelled() else task.exception()
                if exc is not None:
                    name = stages[task].name
                    log.error("camera %r: its stage failed: %r; stopping the run", name, exc, exc_info=exc)
                    run.crashed.append(f"camera {name}")
            remaining -= done
            if failure in done:
                log.error("the model engine failed (%r); stopping the run", failure.result())
                run.crashed.append("model engine")
        if remaining:
            if run.stopped_at is None:
                run.stopped_at = time.monotonic()
            await self._shutdown([stages[t] for t in remaining], remaining, run)

    def _join_sources(self, cameras: list[CameraParts], within_s: float) -> None:
        """Wait for the decode threads, ``within_s`` in all (a source may be inside a blocking open; a thread
        still busy then is left behind: it is a daemon)."""
        end = time.monotonic() + within_s
        for c in cameras:
            if not c.source.join(max(0.0, end - time.monotonic())):
                log.warning("camera %r: its decode thread did not end; left behind", c.name)

    async def _shutdown(self, cameras: list[CameraParts], remaining: set[asyncio.Task[None]], run: _Run) -> None:
        """Stop sources, let the stages drain (descriptions, scores and explanations in flight finish), then
        cancel what is left (its model requests too)."""
        for c in cameras:
            c.source.stop()
        _, still = await asyncio.wait(remaining, timeout=run.left(self.drain_timeout_s, drain=True))
        for task in still:
            task.cancel()
        if still:
            await asyncio.wait(still, timeout=run.left(2.0))

    async def _report_status(self, cameras: list[CameraParts], hub: SinkHub) -> None:
        while True:
            await asyncio.sleep(self.cfg.outputs.status_interval_s)
            for c in cameras:
                hub.publish(c.status())
