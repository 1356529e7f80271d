"""Video sources: one PyAV decode thread per camera or file, feeding a bounded frame queue."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import av
import numpy as np
from pydantic import Field, model_validator

from pipeline.backoff import backoff_delay
from pipeline.motion import THUMB_WIDTH
from pipeline.queues import Backpressure, ThreadToAsyncQueue
from pipeline.records import Frame
from pipeline.redaction import redact_url
from pipeline.sampling import FrameSampler
from pipeline.settings import Settings

log = logging.getLogger(__name__)

MAX_BAD_PACKETS = 100
"""Consecutive undecodable packets after which a file is reported as corrupt."""


class SourceError(Exception):
    """A source that cannot be read (missing, corrupt, no video stream); ``url`` is already redacted."""

    def __init__(self, camera: str, url: str, reason: str) -> None:
        self.camera = camera
        self.url = url
        self.reason = reason
        super().__init__(f"camera {camera!r} ({url}): {reason}")


LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp"})

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", title="Camera name: letters, digits, _ and -")]


def is_live_url(url: str) -> bool:
    """Whether a URL names a live stream (by its scheme) rather than a file."""
    return urlsplit(url).scheme.lower() in LIVE_SCHEMES


class SourceSettings(Settings):
    """How to open and read one source: a live camera (RTSP, HTTP/HLS) or a video file."""

    name: Name
    url: str = Field(min_length=1, title="rtsp://, http(s):// or a file path")
    live: bool | None = Field(None, title="Live source (drop oldest, reconnect); unset: guessed from the URL")
    realtime: bool = Field(False, title="Pace a file at its own frame rate, like a camera")
    loop: bool = Field(False, title="Start a file again at its end")
    queue_size: int = Field(8, ge=1, le=10_000, title="Frames held between decoding and the model")
    backpressure: Backpressure | None = Field(None, title="wait, drop_oldest or drop_latest; unset: by source kind")
    open_timeout_s: float = Field(10.0, gt=0, le=600)
    read_timeout_s: float = Field(10.0, gt=0, le=600)
    reconnect_initial_s: float = Field(1.0, gt=0, le=600)
    reconnect_max_s: float = Field(30.0, gt=0, le=3600)
    rtsp_transport: Literal["tcp", "udp"] = "tcp"

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


class SourceStats:
    """Counters of one source, written by its thread and read by anyone (plain ints and floats)."""

    def __init__(self) -> None:
        self.frames_read = 0
        self.frames_sampled = 0
        self.connected = False
        self.reconnects = 0
        self.failures = 0
        """Unexpected errors of the decode loop (a live source restarts it)."""
        self.fps = 0.0
        self.nominal_fps = 0.0
        """The stream's own frame rate."""
        self.error: str | None = None
        self._last_wall: float | None = None

    def tick(self, now: float) -> None:
        self.frames_read += 1
        if self._last_wall is not None:
            dt = now - self._last_wall
            if dt > 0:
                self.fps = 1.0 / dt if self.fps == 0 else 0.9 * self.fps + 0.1 / dt
        self._last_wall = now


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
    ) -> None:
        self.settings = settings
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
        self._offset = 0.0
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
                self._run_file()
        except Exception as exc:  # a bug must not vanish silently with the thread
            self.stats.error = f"unexpected error: {exc!r}"
            log.exception("camera %r: decode thread failed", self.camera)
        finally:
            self.stats.connected = False
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
            # Keep stream time increasing across loops.
            if self._last_time is not None:
                self._offset = self._last_time + self._period

    def _run_live(self) -> None:
        s = self.settings
        attempt = 0
        while not self._stop.is_set():
            frames_before = self.stats.frames_read
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
            if self.stats.frames_read > frames_before:
                attempt = 0  # it worked for a while: start the backoff again from the bottom
            self.stats.error = reason
            if self._outage_start is None:  # log once per outage
                self._outage_start = time.monotonic()
                log.warning("camera %r (%s): %s; reconnecting", self.camera, self.safe_url, reason)
            else:
                log.debug("camera %r: reconnect attempt %d failed: %s", self.camera, attempt, reason)
            if self._stop.wait(backoff_delay(attempt, s.reconnect_initial_s, s.reconnect_max_s, self._rng)):
                return
            attempt += 1
            self.stats.reconnects += 1

    def _open(self) -> Any:
        s = self.settings
        options: dict[str, str] = {}
        if s.url.lower().startswith(("rtsp://", "rtsps://")):
            options["rtsp_transport"] = s.rtsp_transport
        try:
            return av.open(s.url, options=options, timeout=(s.open_timeout_s, s.read_timeout_s))
        except av.error.FileNotFoundError:
            raise SourceError(self.camera, self.safe_url, "file not found") from None
        except (av.FFmpegError, OSError) as exc:
            raise SourceError(self.camera, self.safe_url, f"cannot open: {_reason(exc)}") from None

    def _read_once(self) -> None:
        """Open the source and read it to its end (or until stopped), queueing sampled frames."""
        container = self._open()
        try:
            if not container.streams.video:
                raise SourceError(self.camera, self.safe_url, "no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            rate = stream.average_rate or stream.guessed_rate
            self._period = 1.0 / float(rate) if rate else 0.1
            self.stats.nominal_fps = 1.0 / self._period
            first_time: float | None = None
            pace_origin: tuple[float, float] | None = None
            for frame in self._decode(container, stream):
                if self._stop.is_set():
                    return
                now = time.time()
                raw_t = frame.time if frame.time is not None else self._index * self._period
                if first_time is None:
                    first_time = raw_t
                    self._rebase(raw_t, now)
                    if self._outage_start is not None:
                        down = time.monotonic() - self._outage_start
                        log.info("camera %r: reconnected after %.1f s", self.camera, down)
                        self._outage_start = None
                    self.stats.connected = True
                    self.stats.error = None
                t = raw_t + self._offset
                if self._last_time is not None and t <= self._last_time:
                    t = self._last_time + 1e-3  # timestamps went backwards: keep the clock monotonic
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
        finally:
            container.close()

    def _rebase(self, raw_t: float, now: float) -> None:
        """Choose the offset that keeps stream time continuous when a connection (re)starts."""
        if not self.live:
            return
        if self._last_time is None or self._last_wall is None:
            self._offset = -raw_t  # live streams start at 0
        else:
            self._offset = self._last_time + max(self._period, now - self._last_wall) - raw_t

    def _decode(self, container: Any, stream: Any) -> Iterator[Any]:
        """Decode packet by packet, skipping bad packets; fail after too many in a row."""
        bad = 0
        try:
            for packet in container.demux(stream):
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
            raise SourceError(self.camera, self.safe_url, f"read failed: {_reason(exc)}") from None

    def _convert(self, frame: Any) -> tuple[np.ndarray, np.ndarray]:
        w, h = scaled_size(frame.width, frame.height, self.image_max_side)
        image = frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")
        th = max(2, round(THUMB_WIDTH * frame.height / frame.width))
        thumb = frame.reformat(width=THUMB_WIDTH, height=th, format="gray", interpolation="AREA").to_ndarray()
        return image, thumb


def _reason(exc: BaseException) -> str:
    """A short, secret-free reason: PyAV errors carry the URL as their filename, so leave it out."""
    strerror = getattr(exc, "strerror", None)
    return str(strerror) if strerror else type(exc).__name__
