"""What N rules cost against one: every rule's question about a window in one batched pass that shares
the window's prefix, against one rule, and against N rules asked without sharing.

    .venv/bin/python -m benchmarks.rules_cost [--windows 32] [--rules 1,2,4,8] [--model DIR]

The Gemma 3 270M judge, through the batching engine (``max_batch`` 8) as in the live monitor, asks the
same windows of three descriptions every rule of a camera at once (``Judge`` over the engine, each
window's requests submitted together). "Unshared" asks the same prompts with no fixed prefix, so each
is computed whole.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from benchmarks.common import ROOT
from benchmarks.judge_cost import TEXTS
from pipeline.engines.batching import BatchingEngine
from pipeline.engines.transformers import TransformersModel
from pipeline.inference import ChatPrompt
from pipeline.judge import Judge
from pipeline.rules import YES_NO, Rule

QUESTIONS = [
    "Does someone climb over a fence or a wall?",
    "Is a parcel or a bag taken by someone who is not its owner?",
    "Is anyone hit, kicked or pushed to the ground?",
    "Is there smoke or fire?",
    "Is a car door or window forced open?",
    "Does anyone fall and stay on the ground?",
    "Is a weapon such as a knife or a gun visible?",
    "Is anyone in the area after closing time?",
]


def run(
    model: TransformersModel, windows: list[list[str]], rules: list[Rule], shared: bool, max_batch: int = 8
) -> float:
    """Seconds to ask every rule about every window (cache off, so every prompt is computed)."""

    def prompt(rule: Rule, window: list[str]) -> ChatPrompt:
        p = rule.ask(window)
        return p if shared else ChatPrompt(p.system, p.user, 0)

    async def main() -> float:
        async with BatchingEngine(None, judge=model, max_batch=max_batch, max_wait_ms=20) as engine:
            judge = Judge(engine, cache_size=0)
            await judge.score_prompt(prompt(rules[0], ["warm up"]), YES_NO)
            t0 = time.perf_counter()

            async def window(w: list[str]) -> None:
                await asyncio.gather(*(judge.score_prompt(prompt(r, w), YES_NO) for r in rules))

            await asyncio.gather(*(window(w) for w in windows))
            return time.perf_counter() - t0

    return asyncio.run(main())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--windows", type=int, default=32)
    ap.add_argument("--rules", default="1,2,4,8")
    ap.add_argument("--model", type=Path, default=ROOT / ".models" / "gemma3-270m")
    ap.add_argument("--max-batch", type=int, default=8, help="the engine's max_batch (default 8, as configured)")
    args = ap.parse_args()
    model = TransformersModel(str(args.model), device="cpu")
    windows = [[TEXTS[(i + k) % len(TEXTS)] + f" (seen at {i}:{k:02d})" for k in range(3)] for i in range(args.windows)]
    counts = [int(n) for n in args.rules.split(",")]
    one = None
    print(f"{args.windows} windows of 3 descriptions, Gemma 3 270M judge, engine max_batch {args.max_batch}, CPU")
    print("| rules | shared prefix, one batch | per window | vs one rule | unshared | shared vs unshared |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in counts:
        rules = [Rule(name=f"r{i}", question=QUESTIONS[i % len(QUESTIONS)]) for i in range(n)]
        t_shared = run(model, windows, rules, True, args.max_batch)
        t_unshared = run(model, windows, rules, False, args.max_batch)
        one = one or t_shared
        print(
            f"| {n} | {t_shared:.2f} s | {1000 * t_shared / len(windows):.0f} ms | {t_shared / one:.2f}x "
            f"| {t_unshared:.2f} s | {t_unshared / t_shared:.2f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
