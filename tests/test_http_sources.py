"""HTTP and HLS sources through PyAV, served by a local HTTP server."""

from __future__ import annotations

import asyncio
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from pipeline.queues import Backpressure, QueueClosed, ThreadToAsyncQueue
from pipeline.records import Frame
from pipeline.sampling import FrameSampler, SamplingSettings
from pipeline.sources import SourceSettings, VideoSource
from tests.helpers.media import make_clip


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("www")
    clip = make_clip(root / "clip.mp4", seconds=4, fps=10)
    # An HLS playlist of 1-second segments, muxed by PyAV's (FFmpeg's) HLS muxer.
    with (
        av.open(str(clip)) as src,
        av.open(str(root / "live.m3u8"), "w", format="hls", options={"hls_time": "1", "hls_list_size": "0"}) as dst,
    ):
        out = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = out
            dst.mux(packet)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()


async def read_all(url: str, *, live: bool) -> tuple[list[Frame], VideoSource]:
    q: ThreadToAsyncQueue[Frame] = ThreadToAsyncQueue(
        maxsize=8, policy=Backpressure.WAIT, loop=asyncio.get_running_loop()
    )
    src = VideoSource(
        SourceSettings(
            name="web",
            url=url,
            live=live,
            open_timeout_s=5,
            read_timeout_s=5,
            reconnect_initial_s=0.1,
            reconnect_max_s=0.2,
        ),
        sampler=FrameSampler(SamplingSettings(every_n_frames=5)),
        queue=q,
    )
    src.start()
    frames: list[Frame] = []
    if live:  # a live source never ends by itself: take 12 frames (more than one pass), then stop
        while len(frames) < 12:
            frames.append(await asyncio.wait_for(q.get(), 20))
        src.stop()
    else:
        while True:
            try:
                frames.append(await asyncio.wait_for(q.get(), 20))
            except QueueClosed:
                break
    assert src.join(10)
    return frames, src


async def test_http_file(served: tuple[str, Path]) -> None:
    base, _ = served
    frames, src = await read_all(f"{base}/clip.mp4", live=False)
    assert [f.index for f in frames] == list(range(0, 40, 5))
    assert src.stats.error is None


async def test_hls_playlist_as_a_live_source(served: tuple[str, Path]) -> None:
    base, _ = served
    frames, src = await read_all(f"{base}/live.m3u8", live=True)
    times = [f.stream_time for f in frames]
    assert times == sorted(times)  # monotonic across the reconnect after the playlist ended
    assert src.stats.reconnects >= 1
