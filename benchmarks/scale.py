"""Cameras on one machine: how many looped files paced at 10 fps, sampled at 1 fps, the monitor keeps up
with, and whether memory stays flat when input outpaces the model.

    .venv/bin/python -m benchmarks.scale [--cameras 8,16,32,48] [--batch 8,16] [--seconds 60]
                                         [--memory-cameras 64 --minutes 10]

The tiny test VLM describes every sampled frame (motion gate off) and judges windows of 3 (stride 2); no
store, no MQTT. For each camera count it prints the description rate achieved per camera (1.0 keeps up),
the frames dropped by policy (live-paced sources drop the oldest frame) and the resident memory. The
memory run keeps more cameras than the model can serve for ``--minutes`` and prints RSS every 30 s.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from benchmarks.common import PEOPLE, ROOT
from monitor.config import validate
from monitor.live.monitor import Monitor
from monitor.models import batching_engine
from pipeline.engines.transformers import TransformersModel
from pipeline.records import Description, Record, WindowScore


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Counter:
    name = "count"

    def __init__(self) -> None:
        self.described = 0
        self.windows = 0

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def handle(self, record: Record) -> None:
        if isinstance(record, Description) and not record.reused:
            self.described += 1
        elif isinstance(record, WindowScore):
            self.windows += 1


def run(
    model: TransformersModel,
    cameras: int,
    seconds: float,
    *,
    batch: int = 8,
    keyframes: bool = False,
    clips: bool = True,
    rss_every: float = 0.0,
) -> dict[str, float]:
    cfg = validate(
        {
            "model": {"max_batch": batch, "max_new_tokens": 16},
            "sampling": {"fps": 1.0, "motion_gate": False},
            "judge": {"cache_size": 0},
            "store": {"enabled": False},
            "clips": {"enabled": clips},
            "outputs": {"status_interval_s": 60},
            "cameras": [
                {"name": f"cam{i:02d}", "url": str(PEOPLE), "realtime": True, "loop": True, "keyframes_only": keyframes}
                for i in range(cameras)
            ],
        },
        env={},
    )
    counter = Counter()
    samples: list[tuple[float, float]] = []

    async def main() -> Monitor:
        monitor = Monitor(cfg, models=batching_engine(cfg, model), sinks=[counter], max_seconds=seconds)
        task = asyncio.create_task(monitor.run())
        t0 = time.monotonic()
        while not task.done():
            await asyncio.sleep(rss_every or 5.0)
            if rss_every:
                samples.append((time.monotonic() - t0, rss_mb()))
                print(f"  {samples[-1][0]:6.0f} s  RSS {samples[-1][1]:7.1f} MB", flush=True)
        await task
        return monitor

    t0 = time.monotonic()
    monitor = asyncio.run(main())
    wall = time.monotonic() - t0
    stats = monitor.live_stats()
    dropped = sum(s.frames_dropped for s, _ in stats.cameras)
    read = sum(s.frames_read for s, _ in stats.cameras)
    out = {
        "rate": counter.described / cameras / wall,
        "windows": counter.windows / wall,
        "dropped": dropped / max(1, read),
        "rss": rss_mb(),
    }
    if samples:
        warm = [mb for t, mb in samples if t >= 60] or [mb for _, mb in samples]
        out["growth"] = max(warm) - warm[0]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", default="8,16,32,48", help='camera counts to run ("": none, the memory run only)')
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--memory-cameras", type=int, default=64)
    ap.add_argument("--minutes", type=float, default=10.0, help="0: no memory run")
    ap.add_argument("--model", type=Path, default=ROOT / ".models" / "tiny-gemma3-vlm")
    ap.add_argument("--batch", default="8", help="max_batch values to run each camera count with")
    ap.add_argument("--keyframes-only", action="store_true", help="decode keyframes only (one a second here)")
    ap.add_argument("--no-clips", action="store_true", help="keep no ring of packets for event clips")
    args = ap.parse_args()
    model = TransformersModel(str(args.model), device="cpu")
    batches = [int(x) for x in args.batch.split(",")]
    decode = "keyframes only" if args.keyframes_only else "every frame decoded"
    print(f"cameras: looped {PEOPLE.name} paced at 10 fps, sampled at 1 fps, {decode}; {args.seconds:.0f} s each")
    for n, batch in ((int(x), b) for x in args.cameras.split(",") if x for b in batches):
        r = run(model, n, args.seconds, batch=batch, keyframes=args.keyframes_only, clips=not args.no_clips)
        print(
            f"{n:3d} cameras, max_batch {batch:2d}: {r['rate']:5.2f} descriptions/s per camera (1.00 keeps up), "
            f"{r['windows']:6.1f} windows/s, {r['dropped']:6.1%} of frames dropped by policy, RSS {r['rss']:6.0f} MB",
            flush=True,
        )
    if args.minutes:
        print(
            f"memory: {args.memory_cameras} cameras for {args.minutes:.0f} min, max_batch {batches[-1]} "
            "(more than the model serves)"
        )
        r = run(
            model,
            args.memory_cameras,
            args.minutes * 60,
            batch=batches[-1],
            keyframes=args.keyframes_only,
            rss_every=30,
        )
        print(f"RSS growth after the first minute: {r['growth']:.1f} MB; {r['rate']:.2f} descriptions/s per camera")


if __name__ == "__main__":
    main()
