"""``monitor batch``: the live engine over a folder of recorded videos, with per-video outputs."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

from monitor.config import AppConfig
from monitor.live.cameras import CameraParts, build_camera
from monitor.models import build_judge
from monitor.offline.annotations import VIDEO_SUFFIXES, Format, VideoTruth, truth_for, video_key
from monitor.offline.llmvad_compat import write_llmvad_pickles
from monitor.offline.plots import plot_scores
from pipeline.inference import ModelClient
from pipeline.records import Description, EventChange, Record, WindowScore

log = logging.getLogger(__name__)
FORMAT_VERSION = 1


def find_videos(root: Path) -> list[Path]:
    """Every file under ``root`` (recursively) with a common video extension, sorted."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def settings_fingerprint(cfg: AppConfig) -> str:
    """A hash of every setting that changes a video's results (models, prompts, sampling, windows, alerts)."""
    relevant = {
        "model": cfg.model.model_dump(mode="json", exclude={"device", "max_batch", "max_wait_ms"}),
        "judge": cfg.judge.model_dump(mode="json", exclude={"device", "cache_size"}),
        "sampling": cfg.sampling.model_dump(mode="json"),
        "windows": cfg.windows.model_dump(mode="json"),
        "alerting": cfg.alerting.model_dump(mode="json"),
        "format": FORMAT_VERSION,
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def estimate_frames(path: Path) -> int | None:
    """The video's frame count from its header (None when it does not say or cannot be opened)."""
    try:
        with av.open(str(path), timeout=5) as c:
            s = c.streams.video[0]
            if s.frames:
                return int(s.frames)
            if s.duration and s.time_base and s.average_rate:
                return int(float(s.duration * s.time_base) * float(s.average_rate))
    except (av.FFmpegError, OSError, IndexError):
        return None
    return None


@dataclass
class VideoJob:
    """One video of the folder and where its outputs go."""

    path: Path
    rel: Path
    out_dir: Path
    estimate: int | None = None

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def result_path(self) -> Path:
        return self.out_dir / f"{self.stem}.json"

    def done_with(self, fingerprint: str) -> bool:
        """Complete outputs made with the same settings exist."""
        try:
            data = json.loads(self.result_path.read_text())
        except (OSError, ValueError):
            return False
        return (
            bool(data.get("complete"))
            and data.get("settings") == fingerprint
            and (self.out_dir / f"{self.stem}.png").is_file()
        )


@dataclass
class Collected:
    """Everything one video produced."""

    descriptions: list[Description] = field(default_factory=list)
    windows: list[WindowScore] = field(default_factory=list)
    events: dict[str, EventChange] = field(default_factory=dict)

    def emit(self, record: Record) -> None:
        if isinstance(record, Description):
            self.descriptions.append(record)
        elif isinstance(record, WindowScore):
            self.windows.append(record)
        elif isinstance(record, EventChange):
            self.events[record.after.id] = record


@dataclass(frozen=True, slots=True)
class VideoOutcome:
    video: str
    status: str  # done, skipped, failed
    seconds: float = 0.0
    frames: int = 0
    duration: float = 0.0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class BatchSummary:
    outcomes: tuple[VideoOutcome, ...]
    seconds: float
    interrupted: bool

    @property
    def failed(self) -> tuple[VideoOutcome, ...]:
        return tuple(o for o in self.outcomes if o.status == "failed")


def write_outputs(
    job: VideoJob,
    got: Collected,
    *,
    fingerprint: str,
    cfg: AppConfig,
    frames: int,
    fps: float,
    truth: VideoTruth | None,
    pickles: bool,
) -> None:
    """The video's JSON (written last, atomically: its ``complete`` flag marks the video done), the PNG plot,
    event snapshots and, with ``pickles``, LLMVAD's three pickles."""
    job.out_dir.mkdir(parents=True, exist_ok=True)
    duration = frames / fps if fps else (got.descriptions[-1].stream_time if got.descriptions else 0.0)
    events: list[dict[str, Any]] = []
    for n, change in enumerate(sorted(got.events.values(), key=lambda c: c.after.start_time), 1):
        ev = change.after
        snap = None
        if ev.snapshot is not None:
            snap = f"{job.stem}.event{n}.jpg"
            (job.out_dir / snap).write_bytes(ev.snapshot)
        events.append(
            {
                "id": ev.id,
                "start_time": ev.start_time,
                "end_time": ev.end_time if ev.end_time is not None else duration,
                "peak_score": ev.peak_score,
                "explanation": ev.explanation,
                "descriptions": list(ev.descriptions),
                "peak_frame_index": ev.peak_frame_index,
                "snapshot": snap,
            }
        )
    windows: list[dict[str, Any]] = [
        {
            "seq": w.seq,
            "start_time": w.start_time,
            "end_time": w.end_time,
            "frame_indices": list(w.frame_indices),
            "descriptions": list(w.descriptions),
            "summary": " ".join(w.descriptions),
            "score": w.score,
        }
        for w in got.windows
    ]
    plot_scores(
        job.out_dir / f"{job.stem}.png",
        title=str(job.rel),
        end_times=[w.end_time for w in got.windows],
        scores=[w.score for w in got.windows],
        duration=duration,
        threshold=cfg.alerting.threshold,
        events=[(e["start_time"], e["end_time"]) for e in events],
        truth=truth.seconds() if truth is not None else (),
    )
    if pickles:
        write_llmvad_pickles(
            job.out_dir,
            job.stem,
            [d.text for d in got.descriptions],
            [w["summary"] for w in windows],
            [w.score for w in got.windows],
        )
    result = {
        "video": str(job.rel),
        "source": str(job.path),
        "settings": fingerprint,
        "complete": True,
        "fps": fps,
        "frames": frames,
        "duration": duration,
        "sampling": {"every_n_frames": cfg.sampling.every_n_frames, "fps": cfg.sampling.fps},
        "windows_config": {"size": cfg.windows.size, "stride": cfg.windows.stride},
        "threshold": cfg.alerting.threshold,
        "descriptions": [
            {"frame_index": d.frame_index, "time": d.stream_time, "text": d.text, "reused": d.reused}
            for d in got.descriptions
        ],
        "windows": windows,
        "events": events,
        "peak_score": max((w.score for w in got.windows), default=0.0),
    }
    tmp = job.result_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, ensure_ascii=False, indent=1))
    tmp.replace(job.result_path)


def _camera_name(i: int, path: Path) -> str:
    return f"v{i:05d}-{re.sub(r'[^A-Za-z0-9_-]+', '-', path.stem)[:40]}".rstrip("-")


async def run_batch(
    cfg: AppConfig,
    jobs: list[VideoJob],
    *,
    models: ModelClient,
    parallel: int = 4,
    pickles: bool = False,
    truths: dict[str, VideoTruth] | None = None,
    fmt: Format | None = None,
    progress: Callable[[int, int, int, int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> BatchSummary:
    """Process ``jobs`` (videos), up to ``parallel`` at once, through one model client (started here).

    ``progress(frames_done, videos_done, videos_total, failed)`` is called about twice a second. A video
    whose processing fails, for whatever reason, gets a ``failed`` outcome naming the error; the others go on.
    """
    t0 = time.monotonic()
    fingerprint = settings_fingerprint(cfg)
    stop = stop or asyncio.Event()
    outcomes: list[VideoOutcome] = []
    todo = []
    for job in jobs:
        if job.done_with(fingerprint):
            outcomes.append(VideoOutcome(str(job.rel), "skipped"))
        else:
            todo.append(job)
    if outcomes:
        log.info("%d videos are already done with these settings; %d to process", len(outcomes), len(todo))
    async with models:
        run = _BatchRun(cfg, models, fingerprint, outcomes, pickles=pickles, truths=truths, fmt=fmt, stop=stop)
        await run.run(todo, parallel=parallel, progress=progress, total=len(jobs))
    return BatchSummary(tuple(outcomes), time.monotonic() - t0, stop.is_set())


class _BatchRun:
    """The videos of one batch run through one started model client; outcomes are appended as they end."""

    def __init__(
        self,
        cfg: AppConfig,
        models: ModelClient,
        fingerprint: str,
        outcomes: list[VideoOutcome],
        *,
        pickles: bool,
        truths: dict[str, VideoTruth] | None,
        fmt: Format | None,
        stop: asyncio.Event,
    ) -> None:
        self.cfg = cfg
        self.models = models
        self.judge = build_judge(cfg, models)
        self.fingerprint = fingerprint
        self.outcomes = outcomes
        self.pickles = pickles
        self.truths = truths
        self.fmt = fmt
        self.stop = stop
        self.active: dict[str, CameraParts] = {}
        self.sharing = 1
        """How many videos share the model at once (sets how far ahead each asks for descriptions)."""
        self.frames_finished = 0

    @property
    def frames(self) -> int:
        return self.frames_finished + sum(p.source.stats.frames_read for p in list(self.active.values()))

    @property
    def failed(self) -> int:
        return sum(o.status == "failed" for o in self.outcomes)

    async def process(self, i: int, job: VideoJob) -> VideoOutcome | None:
        """One video through a camera stage, then its outputs; None when the run was stopped."""
        cfg = self.cfg
        got = Collected()
        try:
            str(job.path).encode("utf-8")
        except UnicodeEncodeError:
            log.error("%s: the file name is not valid UTF-8; rename it", job.rel)
            return VideoOutcome(str(job.rel), "failed", error="the file name is not valid UTF-8")
        cam = cfg.new_camera(name=_camera_name(i, job.path), url=str(job.path), live=False)
        parts = build_camera(
            cam,
            models=self.models,
            judge=self.judge,
            emit=got.emit,
            image_max_side=cfg.model.image_max_side,
            max_batch=cfg.model.max_batch,
            sharing=self.sharing,
        )
        self.active[cam.name] = parts
        started = time.monotonic()
        parts.source.start()
        try:
            await parts.stage.run()
        finally:
            parts.source.stop()
            self.active.pop(cam.name, None)
            self.frames_finished += parts.source.stats.frames_read
        st = parts.source.stats
        if self.stop.is_set():
            return None
        if st.error is not None:  # the source has logged it, naming the file
            return VideoOutcome(str(job.rel), "failed", error=st.error)
        truths, fmt = self.truths, self.fmt
        truth = truth_for(video_key(job.path.name), truths, fmt) if truths is not None and fmt else None
        fps = st.nominal_fps or 30.0
        try:
            await asyncio.to_thread(
                write_outputs,
                job,
                got,
                fingerprint=self.fingerprint,
                cfg=cfg,
                frames=st.frames_read,
                fps=fps,
                truth=truth,
                pickles=self.pickles,
            )
        except OSError as exc:
            log.error("%s: cannot write outputs: %s", job.rel, exc)
            return VideoOutcome(str(job.rel), "failed", error=f"cannot write outputs: {exc}")
        return VideoOutcome(str(job.rel), "done", time.monotonic() - started, st.frames_read, st.frames_read / fps)

    async def one(self, i: int, job: VideoJob, slots: asyncio.Semaphore) -> None:
        async with slots:
            if self.stop.is_set():
                return
            try:
                outcome = await self.process(i, job)
            except Exception as exc:
                log.error("%s: processing failed: %r", job.rel, exc, exc_info=exc)
                outcome = VideoOutcome(str(job.rel), "failed", error=f"processing failed: {exc!r}")
            if outcome is not None:
                self.outcomes.append(outcome)

    async def run(
        self, todo: list[VideoJob], *, parallel: int, progress: Callable[[int, int, int, int], None] | None, total: int
    ) -> None:
        async def report() -> None:
            while True:
                if progress is not None:
                    progress(self.frames, len(self.outcomes), total, self.failed)
                await asyncio.sleep(0.5)

        slots = asyncio.Semaphore(max(1, parallel))
        self.sharing = max(1, min(parallel, len(todo)))
        reporter = asyncio.create_task(report(), name="batch-progress")
        tasks = [asyncio.create_task(self.one(i, job, slots), name=f"video-{i}") for i, job in enumerate(todo)]
        stopper = asyncio.create_task(self.stop.wait(), name="batch-stop")
        try:
            pending: set[asyncio.Task[Any]] = set(tasks)
            while pending and not self.stop.is_set():
                _, pending = await asyncio.wait(pending | {stopper}, return_when=asyncio.FIRST_COMPLETED)
                pending.discard(stopper)
            if pending:  # interrupted: what is unfinished is simply not written, and done next time
                for parts in list(self.active.values()):
                    parts.source.stop()
                for t in pending:
                    t.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        finally:
            stopper.cancel()
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
        if progress is not None:
            progress(self.frames_finished, len(self.outcomes), total, self.failed)


def plan_jobs(video_dir: Path, out_dir: Path) -> list[VideoJob]:
    """A job per video under ``video_dir``; outputs mirror its folders under ``out_dir``."""
    jobs = []
    for path in find_videos(video_dir):
        rel = path.relative_to(video_dir)
        jobs.append(VideoJob(path=path, rel=rel, out_dir=out_dir / rel.parent))
    return jobs


def write_summary(out_dir: Path, summary: BatchSummary) -> Path:
    path = out_dir / "batch_summary.json"
    path.write_text(
        json.dumps(
            {
                "seconds": summary.seconds,
                "interrupted": summary.interrupted,
                "videos": [
                    {
                        "video": o.video,
                        "status": o.status,
                        "error": o.error,
                        "seconds": o.seconds,
                        "frames": o.frames,
                        "duration": o.duration,
                    }
                    for o in summary.outcomes
                ],
            },
            indent=1,
        )
    )
    return path
