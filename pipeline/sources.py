"""Video sources: one PyAV decode thread per camera or file, feeding a bounded frame queue."""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import av
import numpy as np
from pydantic import Field, field_validator, model_validator

from pipeline.backoff import backoff_delay
from pipeline.clips import PacketRing
from pipeline.locations import checked_url, is_live_url
from pipeline.motion import THUMB_WIDTH
from pipeline.queues import Backpressure, ThreadToAsyncQueue
from pipeline.records import Frame
from pipeline.redaction import redact_url
from pipeline.sampling import FrameSampler
from pipeline.settings import Settings
from pipeline.stats import counter, gauge

log = logging.getLogger(__name__)

MAX_BAD_PACKETS = 100
"""Consecutive undecodable packets after which a file is reported as corrupt."""
JUMP_BACK_S = 0.5
"""Timestamps going back by more than this (or 5 frame periods) have restarted: the clock continues."""
JUMP_AHEAD_S = 5.0
"""A live source's timestamps running ahead of the wall clock by more than this have jumped."""
FPS_WINDOW_S = 1.0
"""The shortest time a source's frame rate is measured over."""
SLEW = 0.5
"""How fast a live connection's clock is pulled back to its least delayed frame: half the stream's pace."""


class SourceError(Exception):
    """A source that cannot be read (missing, corrupt, no video stream); ``url`` is already redacted."""

    def __init__(self, camera: str, url: str, reason: str) -> None:
        self.camera = camera
        self.url = url
        self.reason = reason
        super().__init__(f"camera {camera!r} ({url}): {reason}")


Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", title="Camera name: letters, digits, _ and -")]


class SourceSettings(Settings):
    """How to open and read one source: a live camera (RTSP, HTTP/HLS) or a video file."""

    name: Name
    url: str = Field(min_length=1, title="rtsp://, http(s):// or a file path")
    live: bool | None = Field(None, title="Live source (drop oldest, reconnect); unset: guessed from the URL")
    realtime: bool = Field(False, title="Pace a file at its own frame rate, like a camera")
    loop: bool = Field(False, title="Start a file again at its end")
    queue_size: int = Field(8, ge=1, le=10_000, title="Frames held between decoding and the model")
    backpressure: Backpressure | None = Field(None, title="wait, drop_oldest or drop_latest; unset: by source kind")
    open_timeout_s: float = Field(10.0, gt=0, le=600, title="Longest wait for a source to open")
    read_timeout_s: float = Field(
        5.0, gt=0, le=600, title="A connected stream that sends nothing this long is reconnected (a stall)"
    )
    reconnect_initial_s: float = Field(0.5, gt=0, le=600, title="Retry interval while an outage is young")
    reconnect_fast_s: float = Field(
        30.0, ge=0, le=3600, title="Retry every reconnect_initial_s for this long, then back off"
    )
    reconnect_max_s: float = Field(30.0, gt=0, le=3600, title="Longest interval between retries")
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    keyframes_only: bool = Field(
        False,
        title="Decode only keyframes: far cheaper when frames are sampled less often than the keyframe interval "
        "(sampling then picks among keyframes; use fps sampling)",
    )
    analyze_s: float = Field(
        0.5, gt=0, le=30, title="Live stream read to learn its format at each (re)connect (ffmpeg: 5 s; slower)"
    )

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return checked_url(url)

    @model_validator(mode="after")
    def _backoff(self) -> SourceSettings:
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must not be below reconnect_initial_s")
        return self

    @property
    def is_live(self) -> bool:
        """Whether this source is a live stream (explicit, or by its URL scheme)."""
        return self.live if self.live is not None else is_live_url(self.url)

    @property
    def queue_policy(self) -> Backpressure:
        """The frame queue policy: drop the oldest frame for live and paced sources, wait for files."""
        if self.backpressure is not None:
            return self.backpressure
        return Backpressure.DROP_OLDEST if self.is_live or self.realtime else Backpressure.WAIT


@dataclass(slots=True)
class SourceStats:
    """Figures of one source, written by its thread and read by anyone (plain ints and floats)."""

    frames_read: int = counter("Frames decoded")
    frames_sampled: int = counter("Frames sampled for the model")
    reconnects: int = counter("Times a live source was opened again", metric="source_reconnects")
    failures: int = counter(
        "Unexpected errors of the decode loop (a live source restarts it)", metric="source_failures"
    )
    clock_jumps: int = counter("Times the stream's timestamps restarted or jumped", metric="source_clock_jumps")
    connected: bool = gauge("1 while the source delivers frames", metric="source_connected", default=False)
    fps: float = gauge("Frames decoded per second", metric="source_fps")
    nominal_fps: float = 0.0
    """The stream's own frame rate."""
    truncated: str | None = None
    """Set when a file ends well before the duration its header declares."""
    error: str | None = None
    _since: float | None = None
    _frames_since: int = 0

    def tick(self, now: float) -> None:
        """A frame was decoded at ``now``; ``fps`` is the rate over the last second or more (frames decoded
        in bursts, as from a file read at full speed, count at the rate they really came)."""
        self.frames_read += 1
        if self._since is None:
            self._since = now
            return
        self._frames_since += 1
        if now - self._since >= FPS_WINDOW_S:
            self.fps = self._frames_since / (now - self._since)
            self._since, self._frames_since = now, 0


def scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Even width and height that fit in ``max_side``, keeping the aspect ratio and never upscaling."""
    scale = min(1.0, max_side / max(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


class VideoSource:
    """Decodes one source in its own thread, samples frames and puts them into ``queue``.

    Files end (or loop); live sources reconnect forever with capped, jittered backoff until stopped,
    after an unexpected error too (logged with its traceback). A file whose thread fails ends with that
    error. The queue is closed when the thread ends, so the consumer sees the end of the stream.
    """

    def __init__(
        self,
        settings: SourceSettings,
        *,
        sampler: FrameSampler,
        queue: ThreadToAsyncQueue[Frame],
        image_max_side: int = 896,
        rng: random.Random | None = None,
        ring: PacketRing | None = None,
    ) -> None:
        """``ring``: where the demuxed video packets are kept for event clips, if anywhere."""
        self.settings = settings
        self.ring = ring
        self.live = settings.is_live
        self.image_max_side = image_max_side
        self.sampler = sampler
        self.queue = queue
        self.stats = SourceStats()
        self.safe_url = redact_url(settings.url)
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"decode-{settings.name}", daemon=True)
        self._index = 0
        self._conn_raw: float | None = None
        self._offset = 0.0
        self._wall_base: float | None = None
        """A live source's wall time at stream time 0."""
        self._least_lag = 0.0
        """The least wall time minus timestamp of the frames of a live source's clock so far."""
        self._last_time: float | None = None
        self._last_wall: float | None = None
        self._period = 0.1
        self._outage_start: float | None = None

    @property
    def camera(self) -> str:
        return self.settings.name

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end; it closes the queue on its way out."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True if it has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    # -- the thread --------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            if self.live:
                self._run_live()
            else:
                _yield_to_the_model()
                self._run_file()
        except Exception as exc:  # a bug must not vanish silently with the thread
            self.stats.error = f"unexpected error: {exc!r}"
            log.exception("camera %r: decode thread failed", self.camera)
        finally:
            self.stats.connected = False
            if self.ring is not None:
                self.ring.ended = True
            self.queue.close()

    def _run_file(self) -> None:
        s = self.settings
        while not self._stop.is_set():
            try:
                self._read_once()
            except SourceError as exc:
                self.stats.error = exc.reason
                log.error("%s", exc)
                return
            if not s.loop:
                return

    def _run_live(self) -> None:
        while not self._stop.is_set():
            try:
                self._read_once()
                reason = "stream ended"
            except SourceError as exc:
                reason = exc.reason
            except Exception as exc:  # a bug: say so at once, with its traceback, and read the stream anew
                self.stats.failures += 1
                reason = f"unexpected error: {exc!r}"
                log.exception("camera %r (%s): the decode loop failed; restarting it", self.camera, self.safe_url)
            self.stats.connected = False
            if self._stop.is_set():
                return
            self.stats.error = reason
            if self._outage_start is None:  # log once per outage
                self._outage_start = time.monotonic()
                log.warning("camera %r (%s): %s; reconnecting", self.camera, self.safe_url, reason)
            else:
                log.debug("camera %r: reconnect attempt failed: %s", self.camera, reason)
            if self._stop.wait(self._retry_delay()):
                return
            self.stats.reconnects += 1

    def _retry_delay(self) -> float:
        """Retry fast while an outage is young (a camera or server restart comes back in seconds), then
        back off exponentially, with jitter, for a source that stays down."""
        s = self.settings
        assert self._outage_start is not None
        slow_for = time.monotonic() - self._outage_start - s.reconnect_fast_s
        if slow_for < 0:
            return self._rng.uniform(0.5, 1.0) * s.reconnect_initial_s
        attempt = int(math.log2(1 + slow_for / max(s.reconnect_initial_s, 1e-3)))
        return backoff_delay(attempt, s.reconnect_initial_s, s.reconnect_max_s, self._rng)

    def _open(self) -> Any:
        s = self.settings
        options: dict[str, str] = {}
        if s.url.lower().startswith(("rtsp://", "rtsps://")):
            options["rtsp_transport"] = s.rtsp_transport
        if self.live:
            options["analyzeduration"] = str(int(s.analyze_s * 1_000_000))
        # ffmpeg gives up on a silent stream after two read timeouts: half the stall time each
        read_timeout = s.read_timeout_s / 2 if self.live else s.read_timeout_s
        t0 = time.monotonic()
        try:
            return av.open(s.url, options=options, timeout=(s.open_timeout_s, read_timeout))
        except av.error.FileNotFoundError:
            raise SourceError(self.camera, self.safe_url, "file not found") from None
        except (av.FFmpegError, OSError) as exc:
            if self.live and time.monotonic() - t0 >= 0.9 * min(s.open_timeout_s, read_timeout):
                # ffmpeg says "invalid data" when a peer accepts the connection and never answers
                reason = f"no answer within {time.monotonic() - t0:.0f} s"
            elif not self.live and isinstance(exc, av.error.InvalidDataError):
                reason = "not a video, or damaged (ffmpeg finds no readable media in it)"
            else:
                reason = _reason(exc)
            raise SourceError(self.camera, self.safe_url, f"cannot open: {reason}") from None

    def _read_once(self) -> None:
        """Open the source and read it to its end (or until stopped), queueing sampled frames."""
        container = self._open()
        try:
            if not container.streams.video:
                raise SourceError(self.camera, self.safe_url, "no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if self.settings.keyframes_only:
                stream.codec_context.skip_frame = "NONKEY"
            if self.ring is not None:
                self.ring.start_segment(stream)
            rate = stream.average_rate or stream.guessed_rate
            self._period = 1.0 / float(rate) if rate else 0.1
            self.stats.nominal_fps = 1.0 / self._period
            self._conn_raw = None
            pace_origin: tuple[float, float] | None = None
            for frame in self._decode(container, stream):
                if self._stop.is_set():
                    return
                now = time.time()
                if self._conn_raw is None and self._outage_start is not None:
                    log.info("camera %r: reconnected after %.1f s", self.camera, time.monotonic() - self._outage_start)
                    self._outage_start = None
                if self._conn_raw is None:
                    self.stats.connected = True
                    self.stats.error = None
                t = self._clock(frame.time, now)
                if self.settings.realtime:
                    if pace_origin is None:
                        pace_origin = (time.monotonic(), t)
                    wait = pace_origin[0] + (t - pace_origin[1]) - time.monotonic()
                    if wait > 0 and self._stop.wait(wait):
                        return
                    now = time.time()
                self._last_time, self._last_wall = t, now
                self.stats.tick(now)
                index = self._index
                self._index += 1
                if not self.sampler.take(index, t):
                    continue
                self.stats.frames_sampled += 1
                image, thumb = self._convert(frame)
                out = Frame(camera=self.camera, index=index, stream_time=t, wall_time=now, image=image, thumb=thumb)
                self.queue.put(out, cancel=self._stop)
            if not self.live and not self._stop.is_set():
                self._check_length(container, stream)
        finally:
            container.close()

    def _check_length(self, container: Any, stream: Any) -> None:
        """Warn (once) when a file ends well before the duration its header declares: truncated."""
        declared = None
        if stream.duration and stream.time_base:
            declared = float(stream.duration * stream.time_base)
        elif container.duration:
            declared = container.duration / 1_000_000
        reached = self._conn_raw
        if declared is None or reached is None or self.stats.truncated is not None:
            return
        start = float(stream.start_time * stream.time_base) if stream.start_time and stream.time_base else 0.0
        if reached - start < declared - max(1.0, 0.05 * declared):
            self.stats.truncated = f"ends at {reached - start:.1f} s of the {declared:.1f} s its header declares"
            log.warning(
                "camera %r (%s): the file %s: truncated or damaged; read up to there",
                self.camera,
                self.safe_url,
                self.stats.truncated,
            )

    def _clock(self, frame_time: float | None, now: float) -> float:
        """Stream time of the next frame: the source's own clock, made continuous and monotonic.

        A file (or the next pass over a looped one) continues one period after the last frame; a frame
        without a timestamp is one period after the previous one (never a global frame count); timestamps
        that restart or jump (a .ts file spliced together) continue the clock from the last frame.

        A live source keeps pace with the wall clock, across outages too: stream time is the wall time at
        which a frame was sent, less that of the first frame. A connection's (or a restarted RTP clock's)
        first frames come out of the decoder's analysis buffer in a burst, later than they were sent, so
        the frame that arrived soonest after its timestamp (:attr:`_least_lag`) tells when frames are
        sent; the clock is slewed down to it at half the stream's pace, so timestamps stay increasing and
        a reconnect's delay is gone a second or two into it, never added to the next.
        """
        prev = self._conn_raw
        raw = frame_time if frame_time is not None else (0.0 if prev is None else prev + self._period)
        if self.live:
            self._live_offset(raw, prev, now)
        elif prev is None:
            self._offset = 0.0 if self._last_time is None else self._last_time + self._period - raw
        elif raw < prev - max(JUMP_BACK_S, 5 * self._period):
            assert self._last_time is not None
            self._offset = self._last_time + self._period - raw
            self._jumped(prev, raw)
        self._conn_raw = raw
        if self.ring is not None:
            self.ring.set_offset(self._offset)
        t = raw + self._offset
        if self._last_time is not None and t <= self._last_time:
            t = self._last_time + 1e-3  # jitter of a few milliseconds: keep the clock strictly increasing
        return t

    def _live_offset(self, raw: float, prev: float | None, now: float) -> None:
        if self._wall_base is None:
            self._wall_base = now  # the first frame is stream time 0
        restarted = prev is not None and (
            raw < prev - max(JUMP_BACK_S, 5 * self._period)
            or (self._last_wall is not None and raw - prev > (now - self._last_wall) + JUMP_AHEAD_S)
        )
        if restarted:
            assert prev is not None
            self._jumped(prev, raw)
        if prev is None or restarted:  # a new clock: judged by its first frame until better ones come
            self._least_lag = now - raw
            self._offset = self._least_lag - self._wall_base
            return
        self._least_lag = min(self._least_lag, now - raw)
        target = self._least_lag - self._wall_base
        if self._offset > target:
            self._offset = max(target, self._offset - SLEW * max(0.0, raw - prev))

    def _jumped(self, prev: float, raw: float) -> None:
        self.stats.clock_jumps += 1
        log.debug("camera %r: timestamps jumped from %.3f to %.3f s; clock continued", self.camera, prev, raw)

    def _decode(self, container: Any, stream: Any) -> Iterator[Any]:
        """Decode packet by packet, skipping bad packets; fail after too many in a row."""
        bad = 0
        last = time.monotonic()
        try:
            for packet in container.demux(stream):
                last = time.monotonic()
                if self.ring is not None:
                    self.ring.add(packet)
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError as exc:
                    bad += 1
                    if bad >= MAX_BAD_PACKETS:
                        raise SourceError(self.camera, self.safe_url, f"corrupt video: {_reason(exc)}") from None
                    continue
                bad = 0
                yield from frames
        except SourceError:
            raise
        except (av.FFmpegError, OSError) as exc:
            stall = self.settings.read_timeout_s
            if self.live and time.monotonic() - last >= 0.45 * stall:
                raise SourceError(self.camera, self.safe_url, f"stalled: nothing received for {stall:g} s") from None
            raise SourceError(self.camera, self.safe_url, f"read failed: {_reason(exc)}") from None

    def _convert(self, frame: Any) -> tuple[np.ndarray, np.ndarray]:
        w, h = scaled_size(frame.width, frame.height, self.image_max_side)
        image = frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")
        th = max(2, round(THUMB_WIDTH * frame.height / frame.width))
        thumb = frame.reformat(width=THUMB_WIDTH, height=th, format="gray", interpolation="AREA").to_ndarray()
        return image, thumb


FILE_DECODE_NICENESS = 5
"""How much lower a file's decode thread (and the decoder threads it starts) runs than the model's."""


def _yield_to_the_model() -> None:
    """Lower this thread's scheduling priority: a file is decoded far faster than any model describes it,
    so when both want the cores the model's threads should win (live streams keep their priority: they
    must keep pace with the camera). The decoder's own threads, started from here, inherit it."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + FILE_DECODE_NICENESS))
    except (OSError, AttributeError):  # not Linux, or not allowed: decode at the normal priority
        pass


def _reason(exc: BaseException) -> str:
    """A short, secret-free reason: PyAV errors carry the URL as their filename, so leave it out."""
    strerror = getattr(exc, "strerror", None)
    return str(strerror) if strerror else type(exc).__name__
