"""Wiring: configuration + model backends + sinks -> a running monitor."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from monitor.config import AppConfig, CameraConfig

if TYPE_CHECKING:
    from monitor.probe import JudgeCalibration
from pipeline.alerts import AlertMachine, AlertSettings
from pipeline.backend import ModelBackend
from pipeline.camera import CameraCounters, CameraPipeline, CameraSettings, WindowItem
from pipeline.judge import Judge, JudgeSettings
from pipeline.motion import MotionGate
from pipeline.queues import ThreadToAsyncQueue
from pipeline.records import CameraStatus, Frame, Record
from pipeline.sampling import FrameSampler
from pipeline.sources import SourceSettings, VideoSource
from pipeline.windows import SlidingWindows
from pipeline.worker import InferenceWorker, WorkerStats
from sinks.base import Sink, SinkHub, SinkRunner

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CameraSummary:
    """What happened on one camera during a run."""

    camera: str
    frames_read: int
    frames_sampled: int
    frames_gated: int
    frames_dropped: int
    described: int
    windows: int
    events: int
    errors: int
    source_error: str | None


@dataclass(frozen=True, slots=True)
class RunSummary:
    """The outcome of :meth:`Monitor.run`."""

    cameras: tuple[CameraSummary, ...]
    seconds: float
    stopped: bool
    """True when the run was interrupted (signal or time limit) rather than reaching the end of its files."""

    @property
    def failed(self) -> tuple[CameraSummary, ...]:
        """Cameras whose file source could not be read through."""
        return tuple(c for c in self.cameras if c.source_error is not None)


@dataclass(frozen=True, slots=True)
class LiveStats:
    """A view of the running monitor's counters."""

    cameras: list[tuple[CameraStatus, CameraCounters]]
    worker: WorkerStats | None
    sinks: list[SinkRunner]


class CameraParts:
    """One camera's parts: decode thread, frame queue and pipeline stage; its status and summary."""

    def __init__(self, source: VideoSource, frames: ThreadToAsyncQueue[Frame], stage: CameraPipeline) -> None:
        self.source = source
        self.frames = frames
        self.stage = stage

    def status(self) -> CameraStatus:
        st = self.source.stats
        return CameraStatus(
            camera=self.stage.camera,
            wall_time=time.time(),
            connected=st.connected,
            fps=st.fps,
            frames_read=st.frames_read,
            frames_sampled=st.frames_sampled,
            frames_gated=self.stage.counters.gated,
            frames_dropped=self.frames.dropped,
            queue_depth=len(self.frames),
            error=st.error,
        )

    def summary(self, live: bool) -> CameraSummary:
        st, c = self.source.stats, self.stage.counters
        return CameraSummary(
            camera=self.stage.camera,
            frames_read=st.frames_read,
            frames_sampled=st.frames_sampled,
            frames_gated=c.gated,
            frames_dropped=self.frames.dropped,
            described=c.described,
            windows=c.windows,
            events=c.events,
            errors=c.errors,
            source_error=None if live else st.error,
        )


def judge_settings(cfg: AppConfig) -> JudgeSettings:
    """The judge settings of a configuration."""
    j = cfg.judge
    return JudgeSettings(
        system=j.system,
        prompt=j.prompt,
        answers=j.answers,
        explain_prompt=j.explain_prompt,
        explain_max_new_tokens=j.explain_max_new_tokens,
    )


def alert_settings(cfg: AppConfig) -> AlertSettings:
    """The alert state machine's settings of a configuration."""
    a = cfg.alerting
    return AlertSettings(
        threshold=a.threshold, hysteresis=a.hysteresis, min_duration_s=a.min_duration_s, cooldown_s=a.cooldown_s
    )


def make_worker(cfg: AppConfig, describer: ModelBackend, judge: ModelBackend) -> tuple[InferenceWorker, Judge]:
    """One inference worker for both models (not started) and the judge that uses it."""
    worker = InferenceWorker(
        describer, judge=judge, max_batch=cfg.model.max_batch, max_wait_ms=cfg.model.max_wait_ms, name="model"
    )
    calibration = calibration_for(cfg, judge)
    return worker, Judge(worker, judge_settings(cfg), cache_size=cfg.judge.cache_size, calibration=calibration)


def calibration_for(cfg: AppConfig, judge: ModelBackend) -> JudgeCalibration | None:
    """The configured calibration if it was fitted for this judge model and prompt; else None (logged)."""
    from monitor.probe import JudgeCalibration, prompt_hash

    if cfg.judge.calibration is None:
        return None
    cal = JudgeCalibration.load(cfg.judge.calibration)
    j = cfg.judge
    if cal.fingerprint and cal.fingerprint != judge.fingerprint:
        log.warning(
            "judge calibration %s was fitted for %s, not for the judge %s: scoring without it",
            cfg.judge.calibration,
            cal.model,
            judge.name,
        )
        return None
    if cal.prompt and cal.prompt != prompt_hash(j.system, j.prompt, j.answers):
        log.warning(
            "judge calibration %s was fitted with another judge prompt: scoring without it "
            "(run monitor calibrate-judge again)",
            cfg.judge.calibration,
        )
        return None
    log.info("judge calibrated by %s (layer %d)", cfg.judge.calibration, cal.layer)
    return cal


def build_camera(
    cfg: AppConfig, cam: CameraConfig, worker: InferenceWorker, judge: Judge, emit: Callable[[Record], None]
) -> CameraParts:
    """A camera's decode thread, frame queue and pipeline stage (not started); call on the event loop."""
    sampling = cfg.sampling_for(cam)
    frames: ThreadToAsyncQueue[Frame] = ThreadToAsyncQueue(
        maxsize=cam.queue_size, policy=cam.queue_policy, loop=asyncio.get_running_loop()
    )
    source = VideoSource(
        SourceSettings(
            camera=cam.name,
            url=cam.url,
            live=cam.is_live,
            realtime=cam.realtime,
            loop=cam.loop,
            open_timeout_s=cam.open_timeout_s,
            read_timeout_s=cam.read_timeout_s,
            reconnect_initial_s=cam.reconnect_initial_s,
            reconnect_max_s=cam.reconnect_max_s,
            rtsp_transport=cam.rtsp_transport,
            image_max_side=cfg.model.image_max_side,
        ),
        sampler=FrameSampler(every_n_frames=sampling.every_n_frames, fps=sampling.fps),
        queue=frames,
    )
    stage = CameraPipeline(
        CameraSettings(
            camera=cam.name,
            describe_prompt=cam.prompt or cfg.model.prompt,
            max_new_tokens=cfg.model.max_new_tokens,
            max_inflight=2 * cfg.model.max_batch,  # one batch running, the next one ready
            context=cam.context,
            judge_template=cam.judge_prompt,
            snapshot_quality=cfg.alerting.snapshot_quality,
            smoothing=cfg.judge.smoothing,
        ),
        frames=frames,
        describer=worker,
        judge=judge,
        gate=MotionGate(
            threshold=sampling.motion_threshold,
            max_reuse_s=sampling.motion_max_reuse_s,
            enabled=bool(sampling.motion_gate),
        ),
        windows=SlidingWindows[WindowItem](size=cfg.windows.size, stride=cfg.windows.stride),
        alerts=AlertMachine(cam.name, alert_settings(cfg)),
        emit=emit,
    )
    return CameraParts(source, frames, stage)


class Monitor:
    """Runs every configured camera through one shared inference worker (which also serves the judge)."""

    def __init__(
        self,
        cfg: AppConfig,
        *,
        describer: ModelBackend,
        judge: ModelBackend,
        sinks: Sequence[Sink],
        max_seconds: float | None = None,
        drain_timeout_s: float = 2.0,
    ) -> None:
        if not cfg.cameras:
            raise ValueError("no cameras configured: add [[cameras]] to the config or pass --source")
        if not describer.supports_images:
            raise ValueError(f"model {describer.name!r} cannot describe images: configure a vision-language model")
        self.cfg = cfg
        self.describer = describer
        self.judge_backend = judge
        self.sinks = sinks
        self.max_seconds = max_seconds
        self.drain_timeout_s = drain_timeout_s
        self._cameras: list[CameraParts] = []
        self._worker: InferenceWorker | None = None
        self._hub: SinkHub | None = None

    def live_stats(self) -> LiveStats:
        """The running monitor's counters (for the metrics endpoint); empty before :meth:`run`."""
        return LiveStats(
            cameras=[(c.status(), c.stage.counters) for c in self._cameras],
            worker=None if self._worker is None else self._worker.stats,
            sinks=[] if self._hub is None else list(self._hub.runners),
        )

    async def run(self, stop: asyncio.Event | None = None) -> RunSummary:
        """Run until every file source has ended, ``stop`` is set, or ``max_seconds`` have passed."""
        cfg = self.cfg
        stop = stop or asyncio.Event()
        t0 = time.monotonic()
        worker, judge = make_worker(cfg, self.describer, self.judge_backend)
        self._worker = worker
        interrupted = False
        async with SinkHub(self.sinks, maxsize=cfg.outputs.sink_queue_size) as hub:
            self._hub = hub
            cameras = self._cameras = [build_camera(cfg, cam, worker, judge, hub.publish) for cam in cfg.cameras]
            worker.start()
            for c in cameras:
                c.source.start()
            stages = {asyncio.create_task(c.stage.run(), name=f"camera-{c.stage.camera}"): c for c in cameras}
            status_task = asyncio.create_task(self._report_status(cameras, hub), name="status")
            stop_task = asyncio.create_task(stop.wait(), name="stop-signal")
            try:
                remaining = set(stages)
                deadline = None if self.max_seconds is None else t0 + self.max_seconds
                while remaining and not stop.is_set():
                    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                    done, _ = await asyncio.wait(
                        remaining | {stop_task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                    )
                    remaining -= done
                    if deadline is not None and time.monotonic() >= deadline:
                        log.info("time limit of %.0f s reached", self.max_seconds)
                        break
                interrupted = bool(remaining)
                if remaining:
                    await self._shutdown(cameras, remaining, worker)
                for task in stages:
                    if task.done() and not task.cancelled() and task.exception() is not None:
                        log.error("camera %s stopped with an error: %r", stages[task].stage.camera, task.exception())
            finally:
                stop_task.cancel()
                status_task.cancel()
                for c in cameras:
                    c.source.stop()
                await asyncio.to_thread(worker.stop, 1.0)
                for c in cameras:
                    hub.publish(c.status())
        summary = RunSummary(
            cameras=tuple(c.summary(cfg.cameras[i].is_live) for i, c in enumerate(cameras)),
            seconds=time.monotonic() - t0,
            stopped=interrupted,
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

    async def _shutdown(
        self, cameras: list[CameraParts], remaining: set[asyncio.Task[None]], worker: InferenceWorker
    ) -> None:
        """Stop sources, let the stages drain briefly, then stop the model and cancel what is left."""
        for c in cameras:
            c.source.stop()
        _, still = await asyncio.wait(remaining, timeout=self.drain_timeout_s)
        if still:
            await asyncio.to_thread(worker.stop, 0.5)  # fail pending model requests: stages finish promptly
            _, still = await asyncio.wait(still, timeout=1.0)
        for task in still:
            task.cancel()
        if still:
            await asyncio.wait(still, timeout=1.0)

    async def _report_status(self, cameras: list[CameraParts], hub: SinkHub) -> None:
        while True:
            await asyncio.sleep(self.cfg.outputs.status_interval_s)
            for c in cameras:
                hub.publish(c.status())
