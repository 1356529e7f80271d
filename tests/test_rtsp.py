"""Live RTSP against a real GStreamer RTSP server, which is stopped and restarted mid-stream."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.queues import Backpressure, ThreadToAsyncQueue
from pipeline.records import Frame
from pipeline.sampling import FrameSampler, SamplingSettings
from pipeline.sources import SourceSettings, VideoSource
from tests.helpers.rtsp import RtspServer
from tests.helpers.waiting import eventually, eventually_async

ROOT = Path(__file__).resolve().parent.parent


async def test_source_reconnects_after_server_restart(
    rtsp_server: RtspServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pipeline.sources")
    q: ThreadToAsyncQueue[Frame] = ThreadToAsyncQueue(
        maxsize=64, policy=Backpressure.DROP_OLDEST, loop=asyncio.get_running_loop()
    )
    src = VideoSource(
        SourceSettings(
            name="rtsp",
            url=rtsp_server.url("viewer:s3cretpw"),
            live=True,
            open_timeout_s=3,
            read_timeout_s=2,
            reconnect_initial_s=0.2,
            reconnect_max_s=1.0,
        ),
        sampler=FrameSampler(SamplingSettings(every_n_frames=5)),
        queue=q,
    )
    src.start()
    try:
        before = [await asyncio.wait_for(q.get(), 15) for _ in range(6)]
        assert src.stats.connected
        rtsp_server.stop()
        await eventually_async(lambda: not src.stats.connected, what="the source to notice the server going away")
        while len(q):
            await q.get()
        await asyncio.sleep(2.0)  # stays down for a while: several reconnect attempts fail
        rtsp_server.start()
        after = [await asyncio.wait_for(q.get(), 20) for _ in range(6)]
        assert src.stats.connected and src.stats.reconnects >= 1
    finally:
        src.stop()
        assert src.join(10)
    times = [f.stream_time for f in before + after]
    assert times == sorted(times)
    assert after[0].stream_time - before[-1].stream_time >= 2.0  # the outage shows on the clock
    assert after[0].image.shape == (180, 320, 3)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("reconnecting" in m for m in messages) == 1  # once per outage
    assert any("reconnected after" in m for m in messages)
    assert not any("s3cretpw" in m for m in messages)


@pytest.mark.slow
def test_monitor_carries_on_through_a_server_restart(rtsp_server: RtspServer, tiny_vlm: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    url = rtsp_server.url("viewer:s3cretpw")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"""
[[cameras]]
name = "door"
url = "{url}"
read_timeout_s = 2
reconnect_initial_s = 0.2
reconnect_max_s = 1
[cameras.sampling]
every_n_frames = 5
""")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "monitor",
            "run",
            "--config",
            str(cfg),
            "--model",
            str(tiny_vlm),
            "--output",
            str(out),
            "--max-seconds",
            "40",
            "--log-level",
            "DEBUG",
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    results = out / "results.jsonl"

    def descriptions() -> list[dict]:
        if not results.exists():
            return []
        lines = [json.loads(x) for x in results.read_text().splitlines() if x.strip()]
        return [x for x in lines if x["kind"] == "description"]

    def wait_for(n: int, timeout: float) -> None:
        eventually(lambda: len(descriptions()) >= n or proc.poll() is not None, timeout=timeout, every=0.2)
        assert len(descriptions()) >= n, f"only {len(descriptions())} descriptions"

    try:
        wait_for(4, 60)
        rtsp_server.stop()
        time.sleep(3.0)
        n_down = len(descriptions())
        rtsp_server.start()
        wait_for(n_down + 4, 30)
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "s3cretpw" not in err
    assert "viewer:***@127.0.0.1" in err
    times = [d["stream_time"] for d in descriptions()]
    assert times == sorted(times) and len(times) >= n_down + 4
