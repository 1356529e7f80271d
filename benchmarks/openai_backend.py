"""What the HTTP path costs: descriptions and window scores through the OpenAI-compatible backend at
concurrency 1, 4 and 16, against the same model in process, in the same run.

    .venv/bin/python -m benchmarks.openai_backend [--frames 32] [--windows 96] [--max-new-tokens 32]

* descriptions: the tiny test VLM, in process (the batching engine, batch 8) and behind ``transformers
  serve`` (the same transformers model, one request at a time on its side);
* window scores: the Gemma 3 270M judge, in process (batch 8, shared prompt head cached) and behind
  llama.cpp's server (the same weights as Q4_K_M, prompt cache on, 4 slots), and behind ``transformers
  serve`` (no log-probabilities there: the one-token-answer fallback).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from benchmarks.common import PEOPLE, ROOT, decode_sampled
from monitor.config import AppConfig, validate
from monitor.models import batching_engine
from pipeline.engines.openai import OpenAIClient, OpenAISettings
from pipeline.engines.transformers import TransformersModel
from pipeline.inference import DescribeRequest, ModelClient, ScoreRequest
from pipeline.judge import judge_prompt
from pipeline.prompts import DEFAULT_DESCRIBE_PROMPT
from tests.helpers.model_servers import ModelServer, llama_server, transformers_server

MODELS = ROOT / ".models"
TEXTS = [
    "A man walks to the table and sits down.",
    "Two men push each other near the counter.",
    "A woman carries a box out of the building.",
    "A car parks in front of the shop.",
    "A man climbs over the fence at night.",
    "People wait in line at the counter.",
]


Calls = Callable[[ModelClient], list[Callable[[], Awaitable[object]]]]


async def rate(client: ModelClient, make: Calls) -> float:
    """Requests per second for all the calls ``make`` gives, at once (the client limits its concurrency)."""
    calls = make(client)
    async with client:
        await calls[0]()  # warm-up
        t0 = time.perf_counter()
        await asyncio.gather(*(c() for c in calls))
        return len(calls) / (time.perf_counter() - t0)


def server_client(server: ModelServer, model: str, concurrency: int, *, chat: bool) -> OpenAIClient:
    settings = OpenAISettings(base_url=server.base_url, model=model, max_concurrency=concurrency, timeout_s=300)
    return OpenAIClient(settings, chat_judge=chat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--windows", type=int, default=96)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    frames = decode_sampled(PEOPLE, 10, 896)[0][: args.frames]
    judge = AppConfig().judge
    prompts = [
        judge_prompt(judge, [TEXTS[i % len(TEXTS)], f"It is {i} seconds past the hour."]) for i in range(args.windows)
    ]
    levels = (1, 4, 16)

    def describe_calls(client: ModelClient) -> list[Callable[[], Awaitable[object]]]:
        return [
            lambda f=f: client.describe(DescribeRequest(f.image, DEFAULT_DESCRIBE_PROMPT, args.max_new_tokens))
            for f in frames
        ]

    def score_calls(client: ModelClient) -> list[Callable[[], Awaitable[object]]]:
        return [lambda p=p: client.score(ScoreRequest(p, judge.answers)) for p in prompts]

    vlm_dir, judge_dir = MODELS / "tiny-gemma3-vlm", MODELS / "gemma3-270m"
    cfg = validate({"model": {"max_batch": 8, "max_wait_ms": 20}}, env={})
    rows: list[tuple[str, str, float]] = []
    in_process = asyncio.run(rate(batching_engine(cfg, TransformersModel(str(vlm_dir), device="cpu")), describe_calls))
    rows.append(("descriptions", "in process, batch 8", in_process))
    with transformers_server(vlm_dir, tmp).start(timeout=180) as server:
        for n in levels:
            client = server_client(server, str(vlm_dir), n, chat=True)
            rows.append(
                ("descriptions", f"transformers serve, concurrency {n}", asyncio.run(rate(client, describe_calls)))
            )
    judge_model = TransformersModel(str(judge_dir), device="cpu")
    judge_in_process = asyncio.run(rate(batching_engine(cfg, None, judge_model), score_calls))
    rows.append(("window scores", "in process, batch 8", judge_in_process))
    gguf = MODELS / "gemma-3-270m-q4_k_m.gguf"
    with llama_server(gguf, tmp, parallel=4) as server:
        for n in levels:
            client = server_client(server, "gemma3-270m", n, chat=False)
            rows.append(("window scores", f"llama.cpp server, concurrency {n}", asyncio.run(rate(client, score_calls))))
    with transformers_server(judge_dir, tmp).start(timeout=180) as server:
        for n in levels:
            client = server_client(server, str(judge_dir), n, chat=False)
            rows.append(
                (
                    "window scores",
                    f"transformers serve (no logprobs), concurrency {n}",
                    asyncio.run(rate(client, score_calls)),
                )
            )
    base = {"descriptions": in_process, "window scores": judge_in_process}
    print(f"{args.frames} frames ({args.max_new_tokens} new tokens), {args.windows} windows")
    for what, how, per_s in rows:
        print(f"{what:14s} {how:48s} {per_s:7.2f}/s   {per_s / base[what]:5.2f}x in process")


if __name__ == "__main__":
    main()
