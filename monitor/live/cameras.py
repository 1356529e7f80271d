"""One camera's parts: decode thread, frame queue and pipeline stage, built from its merged settings."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.camera import CameraPipeline, CameraSettings
from pipeline.clips import ClipRecorder, ClipSettings, PacketRing
from pipeline.controls import CameraControls
from pipeline.inference import ModelClient
from pipeline.judge import Judge
from pipeline.queues import ThreadToAsyncQueue
from pipeline.records import CameraStatus, Frame, Record
from pipeline.sampling import FrameSampler
from pipeline.sources import VideoSource
from pipeline.stats import figures


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


class CameraParts:
    """One camera's decode thread, frame queue and pipeline stage; its status and summary."""

    def __init__(self, source: VideoSource, frames: ThreadToAsyncQueue[Frame], stage: CameraPipeline) -> None:
        self.source = source
        self.frames = frames
        self.stage = stage

    @property
    def name(self) -> str:
        return self.stage.camera

    def stats(self) -> list[object]:
        """The stats objects of the camera's parts: source, frame queue, stage and clip recorder."""
        parts: list[object] = [self.source.stats, self.frames.stats, self.stage.counters]
        return parts if self.stage.clips is None else [*parts, self.stage.clips.stats]

    def status(self) -> CameraStatus:
        st = self.source.stats
        ring = self.source.ring
        return CameraStatus(
            camera=self.name,
            wall_time=time.time(),
            connected=st.connected,
            fps=st.fps,
            frames_read=st.frames_read,
            frames_sampled=st.frames_sampled,
            frames_gated=self.stage.counters.gated,
            frames_dropped=self.frames.dropped,
            queue_depth=len(self.frames),
            error=st.error,
            clip_buffer_bytes=0 if ring is None else ring.bytes,
            clip_buffer_s=0.0 if ring is None else ring.span_s,
            figures={f.name: f.value for part in self.stats() for f in figures(part)},
        )

    def summary(self) -> CameraSummary:
        """The camera's figures; ``source_error`` for a file that could not be read through or a stream
        that never delivered a frame (its last error), not for a stream that had outages."""
        st, c = self.source.stats, self.stage.counters
        error = st.error if not self.source.live or st.frames_read == 0 else None
        return CameraSummary(
            camera=self.name,
            frames_read=st.frames_read,
            frames_sampled=st.frames_sampled,
            frames_gated=c.gated,
            frames_dropped=self.frames.dropped,
            described=c.described,
            windows=c.windows,
            events=c.events,
            errors=c.errors,
            source_error=None if error is None else f"never connected: {error}" if self.source.live else error,
        )


def descriptions_in_flight(max_batch: int, cameras: int) -> int:
    """How many descriptions one of ``cameras`` cameras sharing a model may have requested at a time.

    Together about three batches (one running, one ready, one forming), so the model is always fed; but at
    least two per camera, so a lone camera can fill batches. More would only queue stale frames (and
    their memory) in front of an overloaded model; beyond it, frames wait in the camera's own queue, where
    its policy drops them (counted) for a live source.
    """
    return max(2, math.ceil(3 * max_batch / max(1, cameras)))


def build_camera(
    cam: CameraSettings,
    *,
    models: ModelClient,
    judge: Judge,
    emit: Callable[[Record], None],
    image_max_side: int,
    max_batch: int,
    instance: str = "",
    controls: CameraControls | None = None,
    clips: ClipSettings | None = None,
    clip_dir: Path | None = None,
    sharing: int = 1,
) -> CameraParts:
    """A camera's decode thread, frame queue and pipeline stage (not started); call on the event loop.
    With ``clips`` and ``clip_dir`` its recent packets are kept in a ring and each event gets a clip.
    ``sharing`` cameras share the model: see :func:`descriptions_in_flight`."""
    frames: ThreadToAsyncQueue[Frame] = ThreadToAsyncQueue(
        maxsize=cam.queue_size, policy=cam.queue_policy, loop=asyncio.get_running_loop()
    )
    recorder = None
    ring = None
    if clips is not None and clips.enabled and clip_dir is not None:
        ring = PacketRing(clips.ring_s, int(clips.ring_mb * 1_000_000))
        recorder = ClipRecorder(cam.name, clips, ring, clip_dir)
    source = VideoSource(
        cam, sampler=FrameSampler(cam.sampling), queue=frames, image_max_side=image_max_side, ring=ring
    )
    stage = CameraPipeline(
        cam,
        frames=frames,
        models=models,
        judge=judge,
        emit=emit,
        max_inflight=descriptions_in_flight(max_batch, sharing),
        instance=instance,
        controls=controls,
        clips=recorder,
    )
    return CameraParts(source, frames, stage)
