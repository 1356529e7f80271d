"""Fault suite, streams: a real RTSP server killed and restarted ten times, a stream that stalls, URLs that
never work. Figures are recorded in docs/reliability.md."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from monitor.config import validate
from monitor.live.monitor import Monitor
from pipeline.queues import Backpressure, ThreadToAsyncQueue
from pipeline.records import Description, Frame, Record, WindowScore
from pipeline.sampling import FrameSampler, SamplingSettings
from pipeline.sources import SourceSettings, VideoSource
from tests.helpers.fakes import FakeModel, fake_engine
from tests.helpers.media import make_clip
from tests.helpers.rtsp import RtspServer
from tests.helpers.sinks import CollectingSink
from tests.helpers.waiting import eventually_async

pytestmark = pytest.mark.slow


def open_fds() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


class Arrivals(CollectingSink):
    """Keeps each record with the time it arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: list[tuple[float, Record]] = []

    async def handle(self, record: Record) -> None:
        self.arrived.append((time.time(), record))
        await super().handle(record)


@pytest.mark.timeout(600)
def own_threads() -> int:
    """Threads other than the event loop's executor workers (``asyncio.to_thread`` keeps them for reuse,
    as many as calls ever ran at once: more under load, not a leak)."""
    return sum(1 for t in threading.enumerate() if not t.name.startswith("asyncio_"))


async def test_rtsp_server_restarted_ten_times(rtsp_server: RtspServer, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "other.mp4", seconds=4, fps=10)
    cfg = validate(
        {
            "cameras": [
                {
                    "name": "door",
                    "url": rtsp_server.url(),
                    "read_timeout_s": 2,
                    "sampling": {"fps": 2, "motion_gate": False},
                },
                {"name": "hall", "url": str(clip), "realtime": True, "loop": True},
            ],
            "sampling": {"every_n_frames": 5},
            "windows": {"size": 1, "stride": 1},
            "store": {"enabled": False},
        },
        env={},
    )
    threads_before, fds_before = own_threads(), open_fds()
    sink = Arrivals()
    stop = asyncio.Event()
    monitor = Monitor(cfg, models=fake_engine(FakeModel(), cfg), sinks=[sink])
    run = asyncio.create_task(monitor.run(stop))

    def door() -> list[tuple[float, Description]]:
        return [(t, r) for t, r in sink.arrived if isinstance(r, Description) and r.camera == "door"]

    async def until(predicate, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
        await eventually_async(predicate, timeout=timeout, every=0.02)

    delays, pace_errors, hall_during_outage = [], [], []
    try:
        await until(lambda: len(door()) >= 3)
        for _ in range(10):
            last = door()[-1][1]
            hall_before = sum(1 for _, r in sink.arrived if isinstance(r, WindowScore) and r.camera == "hall")
            rtsp_server.stop()
            await asyncio.sleep(1.0)
            await asyncio.to_thread(rtsp_server.start)
            back = time.time()
            await until(lambda back=back: door()[-1][0] > back)
            arrived, first = next((t, r) for t, r in door() if t > back)
            delays.append(arrived - back)
            # stream time kept pace with the clock across the outage
            pace_errors.append(abs((first.stream_time - last.stream_time) - (first.wall_time - last.wall_time)))
            hall_during_outage.append(
                sum(1 for _, r in sink.arrived if isinstance(r, WindowScore) and r.camera == "hall") - hall_before
            )
            await until(lambda back=back: door()[-1][0] > back + 0.5)
        stop.set()
        summary = await asyncio.wait_for(run, 60)
    finally:
        stop.set()
    # over the ten outages, stream time and wall time ran the same: no reconnect moved the stream clock ahead
    first_d, last_d = door()[0][1], door()[-1][1]
    drift = (last_d.stream_time - first_d.stream_time) - (last_d.wall_time - first_d.wall_time)
    print(
        "next description after each return (s):", [round(d, 2) for d in delays], "stream-time error (s):",
        [round(e, 2) for e in pace_errors], "event-loop lag max (ms):", round(1000 * monitor.lag.stats.max_lag_s),
        f"stream - wall over the run: {drift:+.2f} s",
    )  # fmt: skip
    assert abs(drift) <= 0.5, drift
    assert all(d < 2.0 for d in delays), delays
    assert all(e < 1.0 for e in pace_errors), pace_errors
    assert all(n > 0 for n in hall_during_outage)  # the other camera kept scoring through every outage
    assert not summary.crashed
    stream = [r.stream_time for _, r in door()]
    assert stream == sorted(stream)
    # every reconnect was logged once, nothing leaked
    assert own_threads() <= threads_before + 1, [t.name for t in threading.enumerate()]
    assert open_fds() <= fds_before + 3
    assert monitor.lag.stats.max_lag_s < 0.1


async def test_a_stream_that_stalls_is_reconnected(rtsp_server: RtspServer, caplog: pytest.LogCaptureFixture) -> None:
    """The server stops sending (SIGSTOP) but keeps the connection: noticed after read_timeout_s."""
    caplog.set_level(logging.INFO, logger="pipeline.sources")
    q: ThreadToAsyncQueue[Frame] = ThreadToAsyncQueue(
        maxsize=64, policy=Backpressure.DROP_OLDEST, loop=asyncio.get_running_loop()
    )
    settings = SourceSettings(name="door", url=rtsp_server.url(), read_timeout_s=2)
    src = VideoSource(settings, sampler=FrameSampler(SamplingSettings(every_n_frames=1)), queue=q)
    src.start()
    try:
        await asyncio.wait_for(q.get(), 30)
        assert rtsp_server.proc is not None
        rtsp_server.proc.send_signal(signal.SIGSTOP)
        for _ in range(600):
            if not src.stats.connected:
                break
            await asyncio.sleep(0.05)
        error = src.stats.error
        rtsp_server.proc.send_signal(signal.SIGCONT)
        rtsp_server.stop()
        await asyncio.to_thread(rtsp_server.start)
        before = src.stats.frames_read
        for _ in range(600):
            if src.stats.frames_read > before + 5:
                break
            await asyncio.sleep(0.05)
    finally:
        src.stop()
        await asyncio.to_thread(src.join, 15)
    assert error == "stalled: nothing received for 2 s"
    assert src.stats.frames_read > before + 5  # and it came back
    assert any("reconnected after" in r.getMessage() for r in caplog.records)


async def test_urls_that_never_work_are_reported_once_with_the_true_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts connections, never answers
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        refused_port = s.getsockname()[1]
    q: ThreadToAsyncQueue[Frame] = ThreadToAsyncQueue(
        maxsize=4, policy=Backpressure.DROP_OLDEST, loop=asyncio.get_running_loop()
    )
    sources = [
        VideoSource(
            SourceSettings(name=name, url=url, open_timeout_s=1, read_timeout_s=1, reconnect_initial_s=0.1),
            sampler=FrameSampler(SamplingSettings()),
            queue=q,
        )
        for name, url in (
            ("refused", f"rtsp://127.0.0.1:{refused_port}/x"),
            ("silent", f"rtsp://127.0.0.1:{silent.getsockname()[1]}/x"),
        )
    ]
    for src in sources:
        src.start()
    await asyncio.sleep(5)
    for src in sources:
        src.stop()
    await asyncio.gather(*(asyncio.to_thread(src.join, 10) for src in sources))
    silent.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len([w for w in warnings if "'refused'" in w]) == 1
    assert len([w for w in warnings if "'silent'" in w]) == 1
    assert "cannot open: connection refused" in sources[0].stats.error.lower()  # type: ignore[union-attr]
    assert "no answer within 1 s" in (sources[1].stats.error or "")
    assert sources[0].stats.reconnects >= 5 and sources[1].stats.reconnects >= 2  # retried, quietly
