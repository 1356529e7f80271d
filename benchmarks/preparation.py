"""Share of the model thread's time spent preparing inputs, with preparation on it and ahead of it.

    .venv/bin/python -m benchmarks.preparation [--frames 32] [--batch 8] [--max-new-tokens 32] [--rounds 2]

The bench VLM (``scripts/make_test_models.py .models --bench``: the real Gemma 3 270M with a random
SigLIP-B/16 vision tower at 256 px) describes the same sampled frames of the sample footage (scaled to
896 px, as the monitor does) through the batching engine twice per round:

* on the model thread: each batch's images are processed and its prompts tokenised by the model thread
  right before the batch runs (how the first version worked);
* ahead: a preparation thread readies requests as they arrive, so the model thread only pads and computes.

It prints, for each, the model thread's busy time, the part of it spent preparing and the throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from benchmarks.common import PEOPLE, ROOT, decode_sampled
from pipeline.engines.batching import BatchingEngine
from pipeline.engines.transformers import TransformersModel
from pipeline.inference import DescribeRequest
from pipeline.prompts import DEFAULT_DESCRIBE_PROMPT


def run(model: TransformersModel, frames: list, batch: int, tokens: int, ahead: bool) -> tuple[float, float, float]:
    """(wall seconds, model-thread busy seconds, of which preparing) for describing every frame."""

    async def go() -> tuple[float, float, float]:
        engine = BatchingEngine(model, max_batch=batch, max_wait_ms=50, prepare_ahead=ahead)
        async with engine:
            t0 = time.perf_counter()
            await asyncio.gather(
                *(engine.describe(DescribeRequest(f.image, DEFAULT_DESCRIBE_PROMPT, tokens)) for f in frames)
            )
            wall = time.perf_counter() - t0
        st = engine.stats
        return wall, sum(st.busy_s.values()), st.prepare_on_model_thread_s

    return asyncio.run(go())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--model", default=str(ROOT / ".models" / "bench-gemma3-vlm"))
    args = ap.parse_args()
    model = TransformersModel(args.model, device="cpu")
    frames = decode_sampled(PEOPLE, 10, 896)[0][: args.frames]
    h, w = frames[0].image.shape[:2]
    print(f"{len(frames)} frames of {PEOPLE.name} at {w}x{h}, batch {args.batch}, {args.max_new_tokens} new tokens")
    run(model, frames[: args.batch], args.batch, 4, True)  # warm-up
    best: dict[bool, tuple[float, float, float]] = {}
    for _ in range(args.rounds):
        for ahead in (False, True):
            result = run(model, frames, args.batch, args.max_new_tokens, ahead)
            if ahead not in best or result[0] < best[ahead][0]:
                best[ahead] = result
    for ahead, label in ((False, "prepared on the model thread"), (True, "prepared ahead")):
        wall, busy, prep = best[ahead]
        print(
            f"{label:30s} wall {wall:6.1f} s  model thread busy {busy:6.1f} s, preparing {prep:5.2f} s "
            f"({100 * prep / busy:4.1f} %)  {len(frames) / wall:5.2f} frames/s"
        )
    print(f"throughput ahead / on the model thread = {best[False][0] / best[True][0]:.3f}")
    # The real Gemma 3 processor works at 896 px (256 image tokens): what preparation costs there.
    processor = model.processor.image_processor
    size, processor.size = processor.size, {"height": 896, "width": 896}
    try:
        t0 = time.perf_counter()
        for f in frames:
            model.prepare(DescribeRequest(f.image, DEFAULT_DESCRIBE_PROMPT, args.max_new_tokens))
        per_frame = (time.perf_counter() - t0) / len(frames)
    finally:
        processor.size = size
    print(f"preparation with the processor at 896 px (Gemma 3 4B's input size): {1000 * per_frame:.1f} ms a frame")


if __name__ == "__main__":
    main()
