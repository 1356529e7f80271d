"""Helpers shared by the benchmarks."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pipeline.queues import Backpressure, QueueClosed, ThreadToAsyncQueue
from pipeline.records import Frame
from pipeline.sampling import FrameSampler
from pipeline.sources import SourceSettings, VideoSource

ROOT = Path(__file__).resolve().parent.parent
PEOPLE = ROOT.parent / "shared" / "data" / "one-by-one-person-detection.mp4"


def decode_sampled(path: Path, every_n_frames: int, image_max_side: int = 896) -> tuple[list[Frame], VideoSource]:
    """All sampled frames of a file, through the pipeline's own source."""

    async def run() -> tuple[list[Frame], VideoSource]:
        q: ThreadToAsyncQueue[Frame] = ThreadToAsyncQueue(
            maxsize=64, policy=Backpressure.WAIT, loop=asyncio.get_running_loop()
        )
        src = VideoSource(
            SourceSettings(camera="bench", url=str(path), live=False, image_max_side=image_max_side),
            sampler=FrameSampler(every_n_frames=every_n_frames),
            queue=q,
        )
        src.start()
        frames = []
        while True:
            try:
                frames.append(await q.get())
            except QueueClosed:
                break
        src.join()
        return frames, src

    return asyncio.run(run())
