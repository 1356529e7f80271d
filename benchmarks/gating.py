"""Work avoided: how many sampled frames the gates keep from the model, and whether every person who
enters the scene still gets a fresh description.

    .venv/bin/python -m benchmarks.gating [--video PATH] [--every 10] [--model DIR]

On the sample footage (people walk in one at a time; long empty stretches), every ``--every``-th frame:

* the reference: frame differences between consecutive sampled frames; an *entry* where more than 3 % of
  the grey thumbnail changed (by > 25 levels) after two sampled frames that changed less; an entry is
  kept when the gate describes that frame or the next one;
* the motion gate at several thresholds (the share of the thumbnail that must change);
* the semantic cascade: frames the motion gate lets through are embedded by the VLM's vision tower (the
  bench VLM: a random SigLIP-B/16) and skipped while their cosine similarity to the last described frame
  stays above a threshold;
* both again on a harder copy of the footage made here: lighting that flickers (+-30 % at ~1/7 Hz),
  sensor noise (sigma 10) and a "swaying tree" (a textured patch that moves back and forth in a corner).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import PEOPLE, ROOT, decode_sampled
from pipeline.engines.batching import BatchingEngine
from pipeline.engines.transformers import TransformersModel
from pipeline.inference import EmbedRequest
from pipeline.motion import PIXEL_DELTA, THUMB_WIDTH, frame_change
from pipeline.sampling import SamplingSettings


def thumb(image: np.ndarray) -> np.ndarray:
    h = max(2, round(THUMB_WIDTH * image.shape[0] / image.shape[1]))
    return np.asarray(Image.fromarray(image).convert("L").resize((THUMB_WIDTH, h), Image.Resampling.BOX))


ONSET = 0.03
"""Share of the thumbnail that changes between sampled frames when someone walks in (a still scene: < 0.01)."""


def entries(thumbs: list[np.ndarray]) -> list[int]:
    """The frame-difference reference: sampled frames where the scene starts to move (more than ``ONSET`` of
    the thumbnail changed since the previous sampled frame) after two still ones: someone walks in.

    (A static background does not work on this footage: what people leave on the table changes it.)
    """
    motion = [0.0] + [frame_change(thumbs[i], thumbs[i - 1]) for i in range(1, len(thumbs))]
    return [i for i in range(2, len(thumbs)) if motion[i] > ONSET and max(motion[i - 2 : i]) < ONSET]


def harder(images: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    """Flickering light, sensor noise and a swaying patch over the same footage."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(40, 200, (120, 160, 3)).astype(np.float32)
    out = []
    for i, im in enumerate(images):
        x = im.astype(np.float32) * (1.0 + 0.3 * np.sin(2 * np.pi * i / 7))
        x += rng.normal(0, 10, x.shape)
        dx = int(40 + 30 * np.sin(2 * np.pi * i / 5))
        x[10:130, dx : dx + 160] = texture
        out.append(np.clip(x, 0, 255).astype(np.uint8))
    return out


def run_gates(
    thumbs: list[np.ndarray],
    vectors: np.ndarray | None,
    times: list[float],
    *,
    threshold: float,
    semantic: float | None,
    max_reuse_s: float = 60.0,
) -> list[bool]:
    """Which sampled frames the gates send to the model (the first always)."""
    from pipeline.motion import MotionGate

    gate = MotionGate(SamplingSettings(motion_gate=True, motion_threshold=threshold, motion_max_reuse_s=max_reuse_s))
    described, ref, last = [], None, float("-inf")
    for i, (th, t) in enumerate(zip(thumbs, times, strict=True)):
        fresh = gate.needs_model(th, t)
        if fresh and semantic is not None and vectors is not None:
            if ref is not None and t - last < max_reuse_s and float(vectors[i] @ vectors[ref]) >= semantic:
                fresh = False
            else:
                ref = i
        if fresh:
            last = t
        described.append(fresh)
    return described


def score(described: list[bool], entry_frames: list[int]) -> tuple[int, float, int]:
    kept = sum(1 for e in entry_frames if described[e] or (e + 1 < len(described) and described[e + 1]))
    return sum(described), 1 - sum(described) / len(described), kept


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, default=PEOPLE)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--model", type=Path, default=ROOT / ".models" / "bench-gemma3-vlm")
    args = ap.parse_args()
    frames, _ = decode_sampled(args.video, args.every)
    times = [f.stream_time for f in frames]
    clean = [f.image for f in frames]
    hard = harder(clean)
    model = TransformersModel(str(args.model), device="cpu")

    async def embed(images: list[np.ndarray]) -> np.ndarray:
        async with BatchingEngine(model, max_batch=8, max_wait_ms=20) as engine:
            out = await asyncio.gather(*(engine.embed(EmbedRequest(im)) for im in images))
        return np.stack([o.vector for o in out])

    reference = entries([thumb(im) for im in clean])
    print(f"{args.video.name}: {len(frames)} sampled frames (every {args.every}th), {len(reference)} entries "
          f"(at {', '.join(f'{times[e]:.0f}' for e in reference)} s); pixel delta {PIXEL_DELTA}")  # fmt: skip
    for name, images in (("sample footage", clean), ("with flicker, noise and a swaying patch", hard)):
        thumbs = [thumb(im) for im in images]
        vectors = asyncio.run(embed(images))
        print(f"{name}:")
        print(f"  {'gate':40s} {'model calls':>11s} {'skipped':>8s} {'entries kept':>13s}")
        for threshold in (0.01, 0.02, 0.03, 0.04, 0.05):
            calls, saved, kept = score(run_gates(thumbs, None, times, threshold=threshold, semantic=None), reference)
            label = f"motion {threshold:.2f}"
            print(f"  {label:40s} {calls:5d} / {len(images):<5d} {saved:8.1%} {kept:6d} / {len(reference)}")
        for threshold in (0.02, 0.03):
            for semantic in (0.9, 0.95, 0.98, 0.99):
                described = run_gates(thumbs, vectors, times, threshold=threshold, semantic=semantic)
                calls, saved, kept = score(described, reference)
                label = f"motion {threshold:.2f} + semantic {semantic:.2f}"
                print(f"  {label:40s} {calls:5d} / {len(images):<5d} {saved:8.1%} {kept:6d} / {len(reference)}")


if __name__ == "__main__":
    main()
