"""Description throughput of the batching engine against the LLMVAD way, and its throughput/latency curve.

    .venv/bin/python -m benchmarks.batching [--frames 32] [--max-new-tokens 32] [--model DIR]

The bench VLM (``scripts/make_test_models.py .models --bench``) describes the same sampled frames of the
sample footage, every description exactly ``--max-new-tokens`` long (end of sequence ignored):

* LLMVAD: one frame per ``generate`` call, prepared on the same thread, one after the other;
* the bare model: batches of the default size, prepared on the same thread (what the engine adds or loses);
* the engine with all frames waiting at once, at ``max_batch`` 1, 2, 4, 8 and 16 (throughput, and the
  mean latency of a frame from submission to its description);
* the engine at the default ``max_batch`` with frames arriving at a steady rate below its capacity, at
  ``max_wait_ms`` 0, 20, 50 and 200 (how long waiting for company pays).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.common import PEOPLE, ROOT, decode_sampled, describe_now
from pipeline.engines.batching import BatchingEngine
from pipeline.engines.transformers import TransformersModel
from pipeline.inference import DescribeRequest
from pipeline.prompts import DEFAULT_DESCRIBE_PROMPT


async def _engine(
    model: TransformersModel, images: list[np.ndarray], tokens: int, *, max_batch: int, max_wait_ms: float, rate: float
) -> tuple[float, float, float]:
    """(frames/s, mean latency s, mean batch) with frames submitted at ``rate`` per second (0: all at once)."""
    engine = BatchingEngine(model, max_batch=max_batch, max_wait_ms=max_wait_ms)
    latencies: list[float] = []

    async def one(image: np.ndarray, delay: float) -> None:
        await asyncio.sleep(delay)
        t = time.perf_counter()
        await engine.describe(DescribeRequest(image, DEFAULT_DESCRIBE_PROMPT, tokens))
        latencies.append(time.perf_counter() - t)

    async with engine:
        t0 = time.perf_counter()
        await asyncio.gather(*(one(im, i / rate if rate else 0.0) for i, im in enumerate(images)))
        wall = time.perf_counter() - t0
    return len(images) / wall, statistics.mean(latencies), engine.stats.mean_batch(DescribeRequest.kind)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--model", type=Path, default=ROOT / ".models" / "bench-gemma3-vlm")
    ap.add_argument("--default-batch", type=int, default=8)
    args = ap.parse_args()
    model = TransformersModel(str(args.model), device="cpu")
    model.model.generation_config.min_new_tokens = args.max_new_tokens  # fixed length: every way does equal work
    frames = [f.image for f in decode_sampled(PEOPLE, 10, 896)[0][: args.frames]]
    tokens = args.max_new_tokens
    describe_now(model, frames[:1], DEFAULT_DESCRIBE_PROMPT, 4)  # warm-up
    print(f"{len(frames)} frames, {tokens} new tokens each, {args.model.name}")

    t0 = time.perf_counter()
    for image in frames:
        describe_now(model, [image], DEFAULT_DESCRIBE_PROMPT, tokens)
    llmvad = len(frames) / (time.perf_counter() - t0)
    print(f"LLMVAD way (one frame per generate)      {llmvad:6.3f} frames/s   1.00x")
    n = args.default_batch
    t0 = time.perf_counter()
    for i in range(0, len(frames), n):
        describe_now(model, frames[i : i + n], DEFAULT_DESCRIBE_PROMPT, tokens)
    bare = len(frames) / (time.perf_counter() - t0)
    print(f"bare model, batches of {n} (no engine)    {bare:6.3f} frames/s  {bare / llmvad:5.2f}x")

    print("all frames waiting at once:")
    for max_batch in (1, 2, 4, 8, 16):
        fps, latency, mean_batch = asyncio.run(
            _engine(model, frames, tokens, max_batch=max_batch, max_wait_ms=50, rate=0)
        )
        mark = "  (default)" if max_batch == args.default_batch else ""
        print(
            f"  max_batch {max_batch:2d}: {fps:6.3f} frames/s  {fps / llmvad:5.2f}x LLMVAD  mean latency "
            f"{latency:5.1f} s  mean batch {mean_batch:4.1f}{mark}"
        )
    rate = 0.6 * llmvad * 2  # a steady load the default engine keeps up with, above what one-by-one would
    print(f"frames arriving at {rate:.2f}/s, max_batch {args.default_batch}:")
    for wait in (0, 20, 50, 200):
        fps, latency, mean_batch = asyncio.run(
            _engine(model, frames, tokens, max_batch=args.default_batch, max_wait_ms=wait, rate=rate)
        )
        print(
            f"  max_wait_ms {wait:3d}: {fps:6.3f} frames/s  mean latency {latency:5.2f} s  mean batch {mean_batch:4.1f}"
        )


if __name__ == "__main__":
    main()
