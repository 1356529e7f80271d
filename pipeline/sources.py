"""Video sources: one PyAV decode thread per camera or file, feeding a bounded frame queue."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import av
import numpy as np

from pipeline.motion import THUMB_WIDTH
from pipeline.queues import ThreadToAsyncQueue
from pipeline.records import Frame
from pipeline.redaction import redact_url
from pipeline.sampling import FrameSampler

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


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """How to open and read one source."""

    camera: str
    url: str
    live: bool
    realtime: bool = False
    loop: bool = False
    open_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    reconnect_initial_s: float = 1.0
    reconnect_max_s: float = 30.0
    rtsp_transport: str = "tcp"
    image_max_side: int = 896


class SourceStats:
    """Counters of one source, written by its thread and read by anyone (plain ints and floats)."""

    def __init__(self) -> None:
        self.frames_read = 0
        self.frames_sampled = 0
        self.connected = False
        self.reconnects = 0
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


def backoff_delay(attempt: int, initial: float, cap: float, rng: random.Random) -> float:
    """Capped exponential backoff with jitter: uniform in [d/2, d] where d = min(cap, initial * 2**attempt)."""
    d = min(cap, initial * (2 ** min(attempt, 30)))
    return rng.uniform(d / 2, d)


def scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Even width and height that fit in ``max_side``, keeping the aspect ratio and never upscaling."""
    scale = min(1.0, max_side / max(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


class VideoSource:
    """Decodes one source in its own thread, samples frames and puts them into ``queue``.

    Files end (or loop); live sources reconnect forever with capped, jittered backoff until stopped.
    The queue is closed when the thread ends, so the consumer sees the end of the stream.
    """

    def __init__(
        self,
        settings: SourceSettings,
        *,
        sampler: FrameSampler,
        queue: ThreadToAsyncQueue[Frame],
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.sampler = sampler
        self.queue = queue
        self.stats = SourceStats()
        self.safe_url = redact_url(settings.url)
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"decode-{settings.camera}", daemon=True)
        self._index = 0
        self._offset = 0.0
        self._last_time: float | None = None
        self._last_wall: float | None = None
        self._period = 0.1
        self._outage_start: float | None = None

    @property
    def camera(self) -> str:
        return self.settings.camera

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
            if self.settings.live:
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
        if not self.settings.live:
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
        w, h = scaled_size(frame.width, frame.height, self.settings.image_max_side)
        image = frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="AREA")
        th = max(2, round(THUMB_WIDTH * frame.height / frame.width))
        thumb = frame.reformat(width=THUMB_WIDTH, height=th, format="gray", interpolation="AREA").to_ndarray()
        return image, thumb


def _reason(exc: BaseException) -> str:
    """A short, secret-free reason: PyAV errors carry the URL as their filename, so leave it out."""
    strerror = getattr(exc, "strerror", None)
    return str(strerror) if strerror else type(exc).__name__
