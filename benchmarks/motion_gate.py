"""Share of model calls the motion gate saves, and decode speed against ``ffmpeg -f null``.

    .venv/bin/python -m benchmarks.motion_gate [--video PATH] [--every N]

Decodes the video with the pipeline's own source (every Nth frame sampled), runs the motion gate over
the sampled frames at several thresholds and prints how many model calls each one saves. It also
times the source's decoding against ffmpeg decoding the same file to nothing.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time
from pathlib import Path

from benchmarks.common import PEOPLE, decode_sampled
from pipeline.motion import MotionGate
from pipeline.sampling import SamplingSettings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, default=PEOPLE)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--max-reuse", type=float, default=60.0)
    args = ap.parse_args()

    t0 = time.perf_counter()
    frames, src = decode_sampled(args.video, args.every)
    t_ours = time.perf_counter() - t0
    print(f"{args.video.name}: {src.stats.frames_read} frames decoded, {len(frames)} sampled (every {args.every}th)")
    print(f"decode+sample+convert (pipeline source): {t_ours:6.2f} s  {src.stats.frames_read / t_ours:7.1f} frames/s")
    if shutil.which("ffmpeg"):
        t0 = time.perf_counter()
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(args.video), "-f", "null", "-"], check=True)
        t_ff = time.perf_counter() - t0
        print(
            f"ffmpeg -f null (decode only):            {t_ff:6.2f} s  {src.stats.frames_read / t_ff:7.1f} "
            f"frames/s   ratio ours/ffmpeg time = {t_ours / t_ff:.2f}"
        )
    print(f"{'threshold':>9}  {'model calls':>11}  {'saved':>6}")
    for threshold in (0.005, 0.01, 0.02, 0.03, 0.05):
        gate = MotionGate(
            SamplingSettings(motion_gate=True, motion_threshold=threshold, motion_max_reuse_s=args.max_reuse)
        )
        calls = sum(gate.needs_model(f.thumb, f.stream_time) for f in frames)
        print(f"{threshold:9.3f}  {calls:5d} / {len(frames):<4d}  {1 - calls / len(frames):6.1%}")


if __name__ == "__main__":
    main()
