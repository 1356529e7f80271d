"""What one window costs the judge: one batched forward pass against generating a number and parsing it.

    .venv/bin/python -m benchmarks.judge_cost [--windows 64] [--size 3] [--model DIR]

The Gemma 3 270M judge scores the same windows of descriptions two ways:

* ours: the engine's score requests, batched (``max_batch`` 8), the fixed prompt head's KV cache reused,
  the score read from the answer probabilities of one forward pass;
* ours, calibrated: the same through the live ``Judge`` with the shipped calibration, whose probe reads
  a second, short pass over the report without the examples (sent with the first); and that probe pass
  alone, its instructions' cache and hidden-state sums reused (as the Judge sends it) against the same
  text computed whole every time;
* LLMVAD: one window per ``generate`` call asking for a decimal score (8 new tokens at most), the number
  read with a regex (0.1 when none parses); LLMVAD also summarised each window with another 512-token
  generation first, which this leaves out (so the ratio is a lower bound).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from pathlib import Path

from benchmarks.common import ROOT, generate_now
from monitor.config import AppConfig
from pipeline.calibration import JudgeCalibration
from pipeline.engines.batching import BatchingEngine
from pipeline.engines.transformers import TransformersModel
from pipeline.inference import ChatPrompt, ScoreRequest
from pipeline.judge import Judge, judge_prompt, probe_request
from pipeline.rules import general_rule
from pipeline.texts import format_descriptions

TEXTS = [
    "A man walks to the table and sits down.",
    "Two men push each other near the counter; one falls.",
    "A woman carries a box out of the building.",
    "A car parks in front of the shop.",
    "A man climbs over the fence at night.",
    "People wait in line at the counter.",
    "Smoke comes out of a window on the second floor.",
    "A cyclist rides past the entrance.",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--windows", type=int, default=64)
    ap.add_argument("--size", type=int, default=3, help="descriptions a window (the live default is 1)")
    ap.add_argument("--model", type=Path, default=ROOT / ".models" / "gemma3-270m")
    args = ap.parse_args()
    judge = AppConfig().judge
    model = TransformersModel(str(args.model), device="cpu")
    windows = [[TEXTS[(i + k) % len(TEXTS)] for k in range(args.size)] for i in range(args.windows)]

    async def ours() -> float:
        async with BatchingEngine(None, judge=model, max_batch=8, max_wait_ms=20) as engine:
            await engine.score(ScoreRequest(judge_prompt(judge, ["warm"]), judge.answers))
            t0 = time.perf_counter()
            await asyncio.gather(*(engine.score(ScoreRequest(judge_prompt(judge, w), judge.answers)) for w in windows))
            return time.perf_counter() - t0

    t_ours = asyncio.run(ours())

    async def calibrated() -> float:
        path = ROOT / "calibration" / "gemma3-270m.json"
        rule = general_rule(judge, AppConfig().alerting, path)
        async with BatchingEngine(None, judge=model, max_batch=8, max_wait_ms=20) as engine:
            live = Judge(engine, cache_size=0, calibrations={path: JudgeCalibration.load(path)})
            await live.score(rule, ["warm"])
            t0 = time.perf_counter()
            await asyncio.gather(*(live.score(rule, w) for w in windows))
            return time.perf_counter() - t0

    t_cal = asyncio.run(calibrated())

    async def probe_only(cached: bool) -> float:
        cal = JudgeCalibration.load(ROOT / "calibration" / "gemma3-270m.json")

        def request(w: list[str]) -> ScoreRequest:
            r = probe_request(cal.probe_prompt, cal.layers, w)
            return r if cached else ScoreRequest(ChatPrompt("", r.prompt.user), r.answers, r.pool_layers)

        async with BatchingEngine(None, judge=model, max_batch=8, max_wait_ms=20) as engine:
            await engine.score(request(["warm"]))
            await engine.score(request(["warm up"]))  # a head is cached the second time it is seen
            t0 = time.perf_counter()
            await asyncio.gather(*(engine.score(request(w)) for w in windows))
            return time.perf_counter() - t0

    t_probe_cached, t_probe_whole = asyncio.run(probe_only(True)), asyncio.run(probe_only(False))

    def llmvad_prompt(w: list[str]) -> ChatPrompt:
        return ChatPrompt(
            "", f"Observations: {format_descriptions(w)}\nRate how anomalous this is from 0.0 to 1.0.\nScore:"
        )

    generate_now(model, [llmvad_prompt(windows[0])], 8)  # warm-up
    t0 = time.perf_counter()
    parsed = 0
    for w in windows:
        answer = generate_now(model, [llmvad_prompt(w)], 8)[0]
        parsed += re.search(r"\d*\.\d+|\d+", answer) is not None
    t_llmvad = time.perf_counter() - t0
    n = len(windows)
    print(f"{n} windows of {args.size} description(s), {args.model.name}")
    print(f"ours (one batched forward pass, cached head)  {1000 * t_ours / n:7.1f} ms a window")
    print(f"ours, calibrated (+ the probe's short pass)   {1000 * t_cal / n:7.1f} ms a window")
    print(f"  the probe pass alone, instructions cached   {1000 * t_probe_cached / n:7.1f} ms a window")
    print(f"  the probe pass alone, computed whole        {1000 * t_probe_whole / n:7.1f} ms a window")
    print(
        f"LLMVAD (generate a number, parse it)          {1000 * t_llmvad / n:7.1f} ms a window  ({parsed}/{n} parsed)"
    )
    print(f"ours is {t_llmvad / t_ours:.1f}x cheaper ({t_llmvad / t_cal:.1f}x calibrated)")


if __name__ == "__main__":
    main()
