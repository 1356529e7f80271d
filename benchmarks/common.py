"""Helpers shared by the benchmarks."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from monitor.offline.judge_eval import Labelled, read_labelled
from pipeline.engines.batching import BatchModel
from pipeline.inference import ChatPrompt, DescribeRequest, ExplainRequest, ScoreRequest, ScoreResult
from pipeline.queues import Backpressure, QueueClosed, ThreadToAsyncQueue
from pipeline.records import Frame
from pipeline.sampling import FrameSampler, SamplingSettings
from pipeline.sources import SourceSettings, VideoSource

ROOT = Path(__file__).resolve().parent.parent
PEOPLE = ROOT / "samples" / "one-by-one-person-detection.mp4"


def decode_sampled(path: Path, every_n_frames: int, image_max_side: int = 896) -> tuple[list[Frame], VideoSource]:
    """All sampled frames of a file, through the pipeline's own source."""

    async def run() -> tuple[list[Frame], VideoSource]:
        q: ThreadToAsyncQueue[Frame] = ThreadToAsyncQueue(
            maxsize=64, policy=Backpressure.WAIT, loop=asyncio.get_running_loop()
        )
        src = VideoSource(
            SourceSettings(name="bench", url=str(path), live=False),
            sampler=FrameSampler(SamplingSettings(every_n_frames=every_n_frames)),
            queue=q,
            image_max_side=image_max_side,
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


# Direct calls of a model, on the calling thread (preparation included): the LLMVAD way of working, and
# the bare model that the pipeline is compared with.


def describe_now(model: BatchModel, images: Sequence[np.ndarray], prompt: str, max_new_tokens: int) -> list[str]:
    batch = [model.prepare(DescribeRequest(im, prompt, max_new_tokens)) for im in images]
    return [r.text for r in model.describe(batch, max_new_tokens)]


def score_now(
    model: BatchModel, prompts: Sequence[ChatPrompt], answers: Sequence[str], layers: Sequence[int] = ()
) -> list[ScoreResult]:
    return score_requests(model, [ScoreRequest(p, tuple(answers), tuple(layers)) for p in prompts])


def score_requests(model: BatchModel, requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
    """Score requests that share their answers and layers, in one batch."""
    first = requests[0]
    return model.score([model.prepare(r) for r in requests], first.answers, first.pool_layers)


def probs_now(model: BatchModel, prompts: Sequence[ChatPrompt], answers: Sequence[str]) -> np.ndarray:
    return np.stack([r.probs for r in score_now(model, prompts, answers)])


def generate_now(model: BatchModel, prompts: Sequence[ChatPrompt], max_new_tokens: int) -> list[str]:
    batch = [model.prepare(ExplainRequest(p, max_new_tokens)) for p in prompts]
    return [r.text for r in model.explain(batch, max_new_tokens)]


def judge_study_setup(doc: str | None, cache: str) -> tuple[argparse.Namespace, list[Labelled], np.ndarray]:
    """The options every judge study takes (``--data``, ``--model``, ``--cache``, made here), the labelled
    development set and its labels."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "judge_dev.jsonl")
    ap.add_argument("--model", default=str(ROOT / ".models" / "gemma3-270m"))
    ap.add_argument("--cache", type=Path, default=Path(cache))
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    items = read_labelled(args.data)
    return args, items, np.array([it.label for it in items], dtype=bool)
