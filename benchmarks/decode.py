"""The source's decoding against ``ffmpeg -f null`` on the same file, and keyframe-only decoding.

    .venv/bin/python -m benchmarks.decode [--video PATH] [--every N] [--rounds 3]

* ffmpeg: ``ffmpeg -threads 0 -i FILE -f null -`` (decode every frame, throw it away): the physical reference;
* source, decode only: the pipeline's ``VideoSource`` sampling nothing (every frame decoded, none converted);
* source, sampled: every Nth frame converted to RGB and a grey thumbnail and queued, as the monitor runs;
* source, keyframes only: ``keyframes_only = true`` (the decoder skips the frames between keyframes), with
  ``fps`` sampling at one frame every 2 s.

Best of ``--rounds`` interleaved runs each.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import time
from pathlib import Path

from benchmarks.common import PEOPLE
from pipeline.queues import Backpressure, QueueClosed, ThreadToAsyncQueue
from pipeline.records import Frame
from pipeline.sampling import FrameSampler, SamplingSettings
from pipeline.sources import SourceSettings, VideoSource


def source(path: Path, sampling: SamplingSettings, **kw: object) -> tuple[float, int, int]:
    """(seconds, frames decoded, frames queued) for reading the whole file through the source."""

    async def run() -> tuple[float, int, int]:
        q: ThreadToAsyncQueue[Frame] = ThreadToAsyncQueue(
            maxsize=10_000, policy=Backpressure.WAIT, loop=asyncio.get_running_loop()
        )
        src = VideoSource(SourceSettings(name="b", url=str(path), **kw), sampler=FrameSampler(sampling), queue=q)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        src.start()
        n = 0
        while True:
            try:
                await q.get()
                n += 1
            except QueueClosed:
                break
        return time.perf_counter() - t0, src.stats.frames_read, n

    return asyncio.run(run())


def ffmpeg(path: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["ffmpeg", "-v", "error", "-threads", "0", "-i", str(path), "-f", "null", "-"], check=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, default=PEOPLE)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    nothing = SamplingSettings(every_n_frames=10_000_000 // 1000)  # effectively never sampled: decode only
    ways = {
        "ffmpeg -f null": lambda: (ffmpeg(args.video), 0, 0),
        "source, decode only": lambda: source(args.video, nothing),
        f"source, every {args.every}th frame converted": lambda: source(
            args.video, SamplingSettings(every_n_frames=args.every)
        ),
        "source, keyframes only, 1 frame / 2 s": lambda: source(
            args.video, SamplingSettings(fps=0.5), keyframes_only=True
        ),
    }
    best: dict[str, tuple[float, int, int]] = {}
    for _ in range(args.rounds):
        for name, way in ways.items():
            result = way()
            if name not in best or result[0] < best[name][0]:
                best[name] = result
    reference = best["ffmpeg -f null"][0]
    total = best["source, decode only"][1]
    print(f"{args.video.name}: {total} frames")
    for name, (secs, decoded, queued) in best.items():
        extra = f"{decoded:5d} decoded, {queued:4d} converted" if decoded else " " * 30
        print(f"{name:40s} {secs:6.2f} s  {extra}  speed vs ffmpeg {reference / secs:5.2f}")


if __name__ == "__main__":
    main()
