"""Run every benchmark, one after the other: ``python -m benchmarks [--only a,b] [--skip c]``.

Each part is also a module of its own (``python -m benchmarks.batching --help``); docs/benchmarks.md has
their figures and the commands behind them. The bench VLM is built first if it is missing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from benchmarks.common import ROOT

PARTS: list[tuple[str, list[str], str]] = [
    ("decode", [], "the source against ffmpeg -f null; keyframes only"),
    ("batching", [], "description throughput against the LLMVAD way; batch and wait curves"),
    ("preparation", [], "input preparation on and off the model thread"),
    (
        "pipeline_fps",
        ["--vlm", str(ROOT / ".models" / "bench-gemma3-vlm"), "--every", "40", "--rounds", "1"],
        "the whole pipeline against the bare model on the same frames",
    ),
    ("gating", [], "work the motion and semantic gates avoid; entries kept"),
    ("judge_cost", [], "one window: a forward pass against generating a number"),
    ("rules_cost", [], "N rules of a window in one pass sharing its prefix, against one rule"),
    ("scale", [], "cameras one machine keeps up with; memory when input outpaces the model"),
    ("batch_throughput", [], "monitor batch against the LLMVAD way"),
    ("openai_backend", [], "the HTTP path against the same models in process"),
    ("mqtt_alerts", [], "alert latency and throughput through the outbox"),
    ("console_load", [], "the console under 16 cameras and bursts"),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="comma-separated parts to run")
    ap.add_argument("--skip", default="", help="comma-separated parts to leave out")
    args = ap.parse_args()
    chosen = set(args.only.split(",")) if args.only else {name for name, _, _ in PARTS}
    chosen -= set(filter(None, args.skip.split(",")))
    subprocess.run([sys.executable, "scripts/make_test_models.py", ".models", "--bench"], cwd=ROOT, check=True)
    failed = []
    for name, extra, what in PARTS:
        if name not in chosen:
            continue
        print(f"\n=== {name}: {what}", flush=True)
        t0 = time.monotonic()
        if subprocess.run([sys.executable, "-m", f"benchmarks.{name}", *extra], cwd=ROOT).returncode != 0:
            failed.append(name)
        print(f"=== {name}: {time.monotonic() - t0:.0f} s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
