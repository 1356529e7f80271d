"""Event clips: a bounded ring of each camera's recent video packets, cut and remuxed without re-encoding."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
from pydantic import Field, model_validator

from pipeline.settings import Settings
from pipeline.stats import counter

log = logging.getLogger(__name__)


class ClipSettings(Settings):
    """Short videos of events, from ``pre_s`` before their start to ``post_s`` after their end (``[clips]``)."""

    enabled: bool = Field(True, title="Keep a clip of every event beside its snapshot")
    pre_s: float = Field(5.0, ge=0, le=60, title="Seconds before the event's start")
    post_s: float = Field(5.0, ge=0, le=60, title="Seconds after its end")
    max_s: float = Field(60.0, gt=0, le=600, title="Longest clip; a longer event's clip stops here")
    ring_s: float = Field(120.0, gt=0, le=1800, title="Seconds of recent packets kept per camera")
    ring_mb: float = Field(48.0, gt=0, le=4096, title="Most memory the packets of one camera may take (MB)")

    @model_validator(mode="after")
    def _fits(self) -> ClipSettings:
        if self.ring_s < self.pre_s + self.post_s:
            raise ValueError(f"ring_s ({self.ring_s}) must hold at least pre_s + post_s")
        return self


OFFSET_JUMP_S = 1.0
"""A change of a segment's clock offset beyond this is a jump (a restarted clock), not a slew."""


@dataclass(slots=True)
class _Segment:
    """Packets of one connection (or one pass over a file): one set of codec parameters, one clock."""

    template: Any  # a stream holding the codec parameters (of an unwritten in-memory container)
    holder: Any  # that container, kept alive with it
    offset: float | None = None  # stream time = packet time + offset, once the source knows it


@dataclass(frozen=True, slots=True)
class _Entry:
    segment: _Segment
    packet: Any
    time: float  # packet time in seconds (its own clock)
    size: int


@dataclass(frozen=True, slots=True)
class ClipPackets:
    """Copies of the packets of a clip, from a keyframe on, with their codec parameters."""

    template: Any
    holder: Any
    packets: list[_Raw]
    start_time: float
    """Stream time of the first packet."""
    end_time: float


class PacketRing:
    """A camera's recent video packets, bounded by ``seconds`` and ``max_bytes`` (oldest dropped first).

    Filled by the decode thread (:meth:`start_segment` at each connection, :meth:`add` for each packet);
    read by clip writers (:meth:`cut`) on other threads.
    """

    def __init__(self, seconds: float, max_bytes: int) -> None:
        self.seconds = seconds
        self.max_bytes = max_bytes
        self._entries: deque[_Entry] = deque()
        self._bytes = 0
        self._segment: _Segment | None = None
        self._lock = threading.Lock()
        self.latest = float("-inf")
        """Stream time of the newest packet."""
        self.ended = False
        """The source has ended (a file): no later packets will come."""

    @property
    def bytes(self) -> int:
        """Memory the packets take."""
        return self._bytes

    @property
    def span_s(self) -> float:
        """Seconds of video held."""
        with self._lock:
            if not self._entries:
                return 0.0
            first = self._entries[0]
            start = first.time + first.segment.offset if first.segment.offset is not None else self.latest
        return max(0.0, self.latest - start)

    def start_segment(self, stream: Any) -> None:
        """A new connection: later packets belong to ``stream``'s codec parameters."""
        holder = av.open(io.BytesIO(), "w", format="matroska")
        try:
            template = holder.add_stream_from_template(stream)
        except (av.FFmpegError, ValueError) as exc:
            log.warning("no event clips for this stream: its codec parameters cannot be copied (%s)", exc)
            self._segment = None
            return
        with self._lock:
            self._segment = _Segment(template, holder)

    def set_offset(self, offset: float) -> None:
        """Packet time + ``offset`` = stream time, for the current segment. A clock jump (over
        OFFSET_JUMP_S) starts a new one; a live source's clock slewing towards the wall clock by
        milliseconds a frame moves the segment's offset (a clip is cut from one segment)."""
        seg = self._segment
        if seg is None:
            return
        if seg.offset is not None and abs(seg.offset - offset) > OFFSET_JUMP_S:
            seg = self._segment = _Segment(seg.template, seg.holder, offset)
        seg.offset = offset

    def add(self, packet: Any) -> None:
        """Keep a demuxed packet (ignored before the first segment or without a time)."""
        seg = self._segment
        pts = packet.pts if packet.pts is not None else packet.dts
        if seg is None or pts is None or packet.time_base is None or packet.size == 0:
            return
        t = float(pts * packet.time_base)
        entry = _Entry(seg, packet, t, packet.size)
        with self._lock:
            self._entries.append(entry)
            self._bytes += entry.size
            if seg.offset is not None:
                self.latest = max(self.latest, t + seg.offset)
            oldest = self.latest - self.seconds
            while self._entries and (
                self._bytes > self.max_bytes or self._stream_time(self._entries[0], default=oldest) < oldest
            ):
                gone = self._entries.popleft()
                self._bytes -= gone.size

    @staticmethod
    def _stream_time(e: _Entry, default: float) -> float:
        return default if e.segment.offset is None else e.time + e.segment.offset

    def cut(self, start: float, end: float) -> ClipPackets | None:
        """Copies of the packets from the last keyframe at or before ``start`` (or the first one after it)
        up to ``end`` (stream times), all of one segment (the one holding ``end``); None when the ring holds
        no keyframe for it."""
        with self._lock:
            entries = list(self._entries)
        timed = [
            (e, e.time + e.segment.offset)
            for e in entries
            if e.segment.offset is not None and e.time + e.segment.offset <= end
        ]
        if not timed:
            return None
        seg = timed[-1][0].segment
        ours = [(e, t) for e, t in timed if e.segment is seg]
        keys = [i for i, (e, _) in enumerate(ours) if e.packet.is_keyframe]
        if not keys:
            return None
        before = [i for i in keys if ours[i][1] <= start]
        ours = ours[before[-1] if before else keys[0] :]
        packets = [
            _Raw(
                bytes(e.packet), e.packet.pts, e.packet.dts, e.packet.duration, e.packet.time_base, e.packet.is_keyframe
            )
            for e, _ in ours
        ]
        return ClipPackets(seg.template, seg.holder, packets, ours[0][1], ours[-1][1])


@dataclass(frozen=True, slots=True)
class _Raw:
    data: bytes
    pts: int | None
    dts: int | None
    duration: int | None
    time_base: Any
    keyframe: bool

    def packet(self, stream: Any, base: int) -> Any:
        p = av.Packet(self.data)
        p.pts = None if self.pts is None else self.pts - base
        p.dts = None if self.dts is None else self.dts - base
        p.duration, p.time_base, p.is_keyframe = self.duration, self.time_base, self.keyframe
        p.stream = stream
        return p


def write_clip(clip: ClipPackets, path: Path) -> Path:
    """Remux the packets into ``path`` + ``.mp4`` (``.mkv``, Matroska, for a codec MP4 cannot hold),
    timestamps starting at 0; the path written. Raises av.FFmpegError/ValueError if neither works."""
    base = min(r.dts if r.dts is not None else r.pts or 0 for r in clip.packets)
    error: Exception | None = None
    for suffix, fmt in ((".mp4", "mp4"), (".mkv", "matroska")):
        target = path.with_name(path.name + suffix)
        tmp = target.with_name(target.name + ".part")
        try:
            with av.open(str(tmp), "w", format=fmt) as out:
                stream = out.add_stream_from_template(clip.template)
                for raw in clip.packets:
                    out.mux(raw.packet(stream, base))
            tmp.replace(target)
            return target
        except (av.FFmpegError, ValueError) as exc:
            error = exc
            tmp.unlink(missing_ok=True)
    assert error is not None
    raise error


@dataclass(slots=True)
class ClipStats:
    """Figures of one camera's clip recorder."""

    written: int = counter("Event clips written", metric="clips_written")
    failed: int = counter("Event clips that could not be cut or written", metric="clips_failed")


class ClipRecorder:
    """Writes one camera's event clips from its packet ring into ``folder`` (a file per event)."""

    POLL_S = 0.25

    def __init__(self, camera: str, settings: ClipSettings, ring: PacketRing, folder: Path) -> None:
        self.camera = camera
        self.settings = settings
        self.ring = ring
        self.folder = folder
        self.stats = ClipStats()

    def span(self, start: float, end: float) -> tuple[float, float]:
        """The stream times a clip of an event from ``start`` to ``end`` covers (at most ``max_s``)."""
        s = self.settings
        first = max(0.0, start - s.pre_s)
        return first, min(end + s.post_s, first + s.max_s)

    async def record(self, event_id: str, start: float, end: float) -> str | None:
        """Wait for the packets up to ``post_s`` after ``end`` (or the end of the source), cut and remux
        them; the clip's file name, or None (logged) when there is nothing to cut or writing failed."""
        first, last = self.span(start, end)
        deadline = time.monotonic() + self.settings.post_s + 30.0  # a stalled source still gets its clip
        while self.ring.latest < last and not self.ring.ended and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(self.POLL_S)  # the ring is filled by the decode thread: look now and then
        clip = self.ring.cut(first, last)
        if clip is None:
            self.stats.failed += 1
            log.warning("camera %r: no clip for event %s: no keyframe of that time is buffered", self.camera, event_id)
            return None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = await asyncio.to_thread(write_clip, clip, self.folder / event_id)
        except (av.FFmpegError, ValueError, OSError) as exc:
            self.stats.failed += 1
            log.warning("camera %r: the clip of event %s could not be written: %s", self.camera, event_id, exc)
            return None
        self.stats.written += 1
        log.info(
            "camera %r: clip of event %s: %s (%.1f-%.1f s of the stream)",
            self.camera,
            event_id,
            path,
            clip.start_time,
            clip.end_time,
        )
        return path.name
