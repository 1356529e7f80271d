from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from pipeline.backoff import backoff_delay
from pipeline.queues import Backpressure, QueueClosed, ThreadToAsyncQueue
from pipeline.records import Frame
from pipeline.sampling import FrameSampler, SamplingSettings
from pipeline.sources import SourceSettings, VideoSource, scaled_size
from tests.helpers.media import corrupt_copy, make_clip


async def drain(source: VideoSource, limit_s: float = 30) -> list[Frame]:
    frames = []
    source.start()
    deadline = time.monotonic() + limit_s
    while True:
        try:
            frames.append(await asyncio.wait_for(source.queue.get(), max(0.1, deadline - time.monotonic())))
        except QueueClosed:
            break
    assert source.join(5)
    return frames


def make_source(
    url: str,
    *,
    live: bool = False,
    k: int = 1,
    maxsize: int = 4,
    policy: Backpressure = Backpressure.WAIT,
    image_max_side: int = 896,
    **kw: object,
) -> VideoSource:
    q: ThreadToAsyncQueue[Frame] = ThreadToAsyncQueue(maxsize=maxsize, policy=policy, loop=asyncio.get_running_loop())
    return VideoSource(
        SourceSettings(name="c", url=url, live=live, **kw),  # type: ignore[arg-type]
        sampler=FrameSampler(SamplingSettings(every_n_frames=k)),
        queue=q,
        image_max_side=image_max_side,
    )


async def test_file_is_read_completely_with_times(clip: Path) -> None:
    src = make_source(str(clip), k=3, image_max_side=64)
    frames = await drain(src)
    assert [f.index for f in frames] == list(range(0, 30, 3))
    assert [round(f.stream_time, 3) for f in frames] == [round(i / 10, 3) for i in range(0, 30, 3)]
    assert all(f.camera == "c" and f.wall_time > 1e9 for f in frames)
    assert frames[0].image.shape == (38, 64, 3)  # 160x96 scaled to fit 64, even sizes
    assert frames[0].thumb.shape == (38, 64)
    assert src.stats.frames_read == 30 and src.stats.frames_sampled == 10 and src.stats.error is None
    assert src.queue.dropped == 0


async def test_looped_file_keeps_stream_time_increasing(clip: Path) -> None:
    src = make_source(str(clip), k=10, loop=True)
    src.start()
    frames = [await asyncio.wait_for(src.queue.get(), 10) for _ in range(7)]
    src.stop()
    assert src.join(5)
    times = [f.stream_time for f in frames]
    assert times == sorted(times) and times[3] == pytest.approx(3.0, abs=0.01)
    assert [f.index for f in frames] == [0, 10, 20, 30, 40, 50, 60]


async def test_realtime_pacing(clip: Path) -> None:
    src = make_source(str(clip), k=5, realtime=True)
    t0 = time.monotonic()
    frames = await drain(src)
    elapsed = time.monotonic() - t0
    assert len(frames) == 6
    assert elapsed >= 2.5  # 3 s of video at its own pace


async def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    src = make_source(str(tmp_path / "nope.mp4"))
    assert await drain(src) == []
    assert src.stats.error == "file not found"


async def test_corrupt_file_is_reported(tmp_path: Path, clip: Path, caplog: pytest.LogCaptureFixture) -> None:
    bad = corrupt_copy(clip, tmp_path / "bad.mp4")
    src = make_source(str(bad))
    await drain(src)
    assert src.stats.error is not None
    (line,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "bad.mp4" in line and "\n" not in line


async def test_not_a_video(tmp_path: Path) -> None:
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    src = make_source(str(txt))
    await drain(src)
    assert src.stats.error is not None and src.stats.error.startswith("cannot open")


async def test_live_source_that_cannot_connect_keeps_retrying(caplog: pytest.LogCaptureFixture) -> None:
    src = make_source(
        "rtsp://127.0.0.1:9/none",
        live=True,
        open_timeout_s=0.5,
        read_timeout_s=0.5,
        reconnect_initial_s=0.05,
        reconnect_max_s=0.1,
    )
    src.start()
    await asyncio.sleep(1.5)
    assert src.running and src.stats.reconnects >= 2 and not src.stats.connected
    src.stop()
    assert src.join(5)
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1  # logged once per outage


async def test_live_file_drops_oldest_when_consumer_is_slow(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "c.mp4", seconds=2, fps=20)
    src = make_source(str(clip), live=False, k=1, maxsize=2, policy=Backpressure.DROP_OLDEST)
    src.start()
    assert src.join(10)
    assert len(src.queue) == 2 and src.queue.dropped == 38


def test_backoff_is_capped_and_jittered() -> None:
    import random

    rng = random.Random(1)
    delays = [backoff_delay(a, 1.0, 8.0, rng) for a in range(10)]
    assert all(0.5 <= d <= 8.0 for d in delays)
    assert all(4.0 <= d <= 8.0 for d in delays[3:])
    assert len({round(d, 6) for d in delays}) == 10


def test_scaled_size() -> None:
    assert scaled_size(1920, 1080, 896) == (896, 504)
    assert scaled_size(320, 240, 896) == (320, 240)


def test_the_frame_rate_is_what_really_came() -> None:
    """Frames decoded in bursts (a file read at full speed, waiting for a full queue) count at their real
    rate, not at the rate of the burst."""
    from pipeline.sources import SourceStats

    st = SourceStats()
    t = 1000.0
    for _ in range(10):  # ten bursts of 20 frames, a microsecond apart, each second
        for k in range(20):
            st.tick(t + k * 1e-6)
        t += 1.0
    st.tick(t)
    assert 19 <= st.fps <= 21 and st.frames_read == 201
