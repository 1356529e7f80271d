"""Event clips: cut from a bounded ring of recent packets, remuxed, kept with the event (file and RTSP)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import av
import pytest

from monitor.config import AppConfig, validate
from monitor.live.monitor import Monitor
from monitor.live.sinks import build_sinks
from pipeline.clips import PacketRing, write_clip
from pipeline.engines.batching import Prepared
from pipeline.inference import DescribeResult
from sinks.event_store import EventStore, clip_dir
from tests.helpers.cli import monitor_command
from tests.helpers.fakes import AlarmAfter, FakeModel, fake_engine
from tests.helpers.media import make_clip
from tests.helpers.rtsp import RtspServer
from tests.helpers.sinks import CollectingSink

ROOT = Path(__file__).resolve().parent.parent


def played(path: Path) -> tuple[int, float]:
    """Frames decoded and the duration PyAV reads back."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames = sum(1 for _ in c.decode(stream))
        assert c.duration is not None
        return frames, c.duration / 1_000_000


def fill(ring: PacketRing, path: Path) -> None:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        ring.start_segment(stream)
        ring.set_offset(100.0)  # stream time = file time + 100
        for packet in c.demux(stream):
            ring.add(packet)


def test_the_ring_is_bounded_and_cuts_from_a_keyframe(tmp_path: Path) -> None:
    video = make_clip(tmp_path / "long.mp4", seconds=30, fps=10, size=(320, 180))  # a keyframe every second
    ring = PacketRing(seconds=10, max_bytes=10**9)
    fill(ring, video)
    assert ring.latest == pytest.approx(129.9) and 9 <= ring.span_s <= 10
    assert ring.cut(105.0, 110.0) is None  # long gone
    clip = ring.cut(123.5, 127.2)  # starts at the keyframe before 123.5
    assert clip is not None and clip.start_time == pytest.approx(123.0) and clip.end_time == pytest.approx(127.2)
    frames, duration = played(write_clip(clip, tmp_path / "cut"))
    assert frames == 43 and duration == pytest.approx(4.3, abs=0.05)
    small = PacketRing(seconds=1000, max_bytes=50_000)
    fill(small, video)
    assert 0 < small.bytes <= 50_000 and small.span_s < 30


def test_a_slewing_clock_keeps_one_segment_and_a_jump_starts_another(tmp_path: Path) -> None:
    """A live source's clock moves by milliseconds a frame while it slews to the wall clock: the clip still
    spans all of it (before: each step began a new segment, and clips came out a fraction of a second
    long under load); a restarted clock (a jump) begins a new one."""
    video = make_clip(tmp_path / "v.mp4", seconds=6, fps=10, size=(320, 180))
    ring = PacketRing(seconds=60, max_bytes=10**9)
    with av.open(str(video)) as c:
        stream = c.streams.video[0]
        ring.start_segment(stream)
        for k, packet in enumerate(c.demux(stream)):
            ring.set_offset(100.0 - 0.005 * k)  # slewing: 5 ms a frame, 0.3 s in all
            ring.add(packet)
    clip = ring.cut(100.5, 105.0)
    assert clip is not None and clip.start_time < 100.5 and len(clip.packets) >= 40
    ring.set_offset(200.0)  # a jump
    assert ring.cut(100.5, 105.0) is not None  # the packets before it stay cuttable, in their own segment


def config(tmp_path: Path, url: str, **camera: object) -> AppConfig:
    return validate(
        {
            "cameras": [{"name": "cam", "url": url, **camera}],
            "windows": {"size": 2, "stride": 1},
            "alerting": {"threshold": 0.6, "hysteresis": 0.1, "severity": [0.7, 0.95]},
            "clips": {"pre_s": 1, "post_s": 1, "max_s": 30},
            "store": {"path": str(tmp_path / "events.db")},
            "outputs": {"dir": str(tmp_path / "out")},
        },
        env={},
    )


def test_clips_sit_with_their_instances_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default store path names the instance; its clips go beside it, and its retention finds them."""
    monkeypatch.setenv("LLMVAD_STATE_DIR", str(tmp_path / "state"))
    video = make_clip(tmp_path / "c.mp4", seconds=6, fps=10, static_until=3.0)
    cfg = validate(
        {
            "instance": "yard-1",
            "cameras": [{"name": "cam", "url": str(video), "sampling": {"every_n_frames": 5}}],
            "windows": {"size": 2, "stride": 1},
            "alerting": {"threshold": 0.6, "hysteresis": 0.1},
            "clips": {"pre_s": 1, "post_s": 1},
            "outputs": {"dir": str(tmp_path / "out")},
        },
        env={},
    )
    sink = CollectingSink()
    monitor = Monitor(cfg, models=fake_engine(AlarmAfter(), cfg), sinks=[sink])
    asyncio.run(monitor.run())
    home = tmp_path / "state" / "yard-1"
    assert monitor.cfg.store.path == home / "events.sqlite"
    clip = home / "events-clips" / str(sink.events[-1].after.clip)
    assert clip.is_file() and not [p for p in (tmp_path / "state").rglob("*") if "{" in p.name]
    store = EventStore(home / "events.sqlite")  # the event stored by the run itself, from its own sinks
    try:
        store.upsert_event(sink.events[-1].after)
        assert store.clip_dir() == clip.parent
        store.enforce_retention(max_age_s=0.0, max_bytes=1e12)  # everything is too old now
        assert not clip.exists()
    finally:
        store.close()


def test_a_file_event_gets_a_clip_kept_in_the_store_and_shown(tmp_path: Path) -> None:
    video = make_clip(tmp_path / "c.mp4", seconds=6, fps=10, static_until=3.0)
    cfg = config(tmp_path, str(video), sampling={"every_n_frames": 5})
    sink = CollectingSink()
    sinks = [*build_sinks(cfg).sinks, sink]
    asyncio.run(Monitor(cfg, models=fake_engine(AlarmAfter(), cfg), sinks=sinks).run())
    last = sink.events[-1].after
    assert sink.events[-1].type == "update" and last.clip is not None and last.severity == 2
    assert (last.start_time, last.end_time) == (pytest.approx(3.0), pytest.approx(5.5))
    path = clip_dir(cfg.store.path) / last.clip
    frames, duration = played(path)
    # from the keyframe at 2.0 (start - pre_s) to the end of the file (before end + post_s)
    assert frames == 40 and duration == pytest.approx(4.0, abs=0.05)
    store = EventStore(cfg.store.path, readonly=True)
    try:
        (stored,) = store.events()
        assert stored.clip == last.clip and stored.severity == 2
    finally:
        store.close()
    out = tmp_path / "copy.mp4"
    shown = subprocess.run(
        [
            sys.executable,
            "-m",
            "monitor",
            "events",
            "show",
            stored.id[:12],
            "--db",
            str(cfg.store.path),
            "--clip",
            str(out),
            "--snapshot",
            str(tmp_path / "s.jpg"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert (
        f"clip: {path}" in shown
        and "severity: 2 dangerous" in shown
        and played(out) == (40, pytest.approx(4.0, abs=0.05))
    )
    listed = subprocess.run(
        monitor_command("events", "--db", cfg.store.path),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "2 dangerous" in listed
    # retention takes the clip with its event
    writer = EventStore(cfg.store.path)
    try:
        writer.enforce_retention(max_age_s=0, max_bytes=10**9, now=last.end_wall + 10 if last.end_wall else None)
    finally:
        writer.close()
    assert not path.exists()


class AlarmBetween(FakeModel):
    """Describes the ``first``-th to ``last``-th frame it is asked about as ALARM (whatever they show)."""

    def __init__(self, first: int, last: int) -> None:
        super().__init__()
        self.first, self.last, self.n = first, last, 0
        self._count = threading.Lock()

    def describe(
        self, batch: Sequence[Prepared], max_new_tokens: int, cancel: threading.Event | None = None
    ) -> list[DescribeResult]:
        out = []
        for r in super().describe(batch, max_new_tokens, cancel):
            with self._count:
                self.n += 1
                hot = self.first <= self.n <= self.last
            out.append(DescribeResult(("ALARM " if hot else "") + r.text))
        return out


async def test_an_rtsp_event_gets_a_clip_that_plays(tmp_path: Path, rtsp_server: RtspServer) -> None:
    cfg = config(tmp_path, rtsp_server.url(), live=True, sampling={"fps": 4, "motion_gate": False})
    sink = CollectingSink()
    monitor = Monitor(cfg, models=fake_engine(AlarmBetween(16, 24), cfg), sinks=[*build_sinks(cfg).sinks, sink])
    stop = asyncio.Event()
    run = asyncio.create_task(monitor.run(stop))
    try:
        async with asyncio.timeout(60):
            while not any(e.after.clip for e in sink.events):
                assert not run.done(), "the monitor stopped"
                await asyncio.sleep(0.2)
        status = monitor._cameras[0].status()
        assert 0 < status.clip_buffer_bytes <= 48_000_000 and status.clip_buffer_s > 3
    finally:
        stop.set()
        await run
    ended = next(e.after for e in sink.events if e.type == "end")
    named = next(e.after for e in sink.events if e.after.clip)
    assert named.id == ended.id and ended.end_time is not None
    frames, duration = played(clip_dir(cfg.store.path) / str(named.clip))
    want = ended.end_time + 1 - (ended.start_time - 1)  # pre_s and post_s of 1 s, from a keyframe (1 s GOP)
    assert want <= duration + 0.15 <= want + 1.2 and frames >= 10 * (duration - 0.2)
