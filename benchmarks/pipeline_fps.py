"""Frames per second through the whole pipeline versus the bare model on the same frames.

    .venv/bin/python -m benchmarks.pipeline_fps [--video PATH] [--every N] [--batch B]

Three ways over the same sampled frames of one video, same models, same machine, same run:

* llmvad:   the LLMVAD way: one frame per ``describe`` call, one window per judge call, in sequence;
* bare:     the bare model, batched: describe all frames in batches of B, then judge all windows in batches;
* pipeline: ``Monitor.run`` on the file: decoding, sampling, batching, windows, judge, alerts and sinks.

It prints sampled frames per second for each, and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from benchmarks.common import PEOPLE, ROOT, decode_sampled, describe_now, probs_now
from monitor.config import validate
from monitor.live.monitor import Monitor
from monitor.models import batching_engine
from pipeline.engines.transformers import TransformersModel
from pipeline.inference import RequestKind
from pipeline.judge import expected_score, judge_prompt
from pipeline.windows import SlidingWindows
from sinks.jsonl_sink import JsonLinesSink


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, default=PEOPLE)
    ap.add_argument("--every", type=int, default=10, help="sample every Nth frame (default 10)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--models", type=Path, default=ROOT / ".models")
    ap.add_argument("--vlm", default=None, help="VLM directory (default: the tiny test VLM)")
    ap.add_argument("--judge", default=None, help="judge directory (default: the Gemma 3 270M test model)")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--limit", type=int, default=0, help="use only the first N sampled frames")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the best time of each counts")
    ap.add_argument("--skip-llmvad", action="store_true", help="leave out the (slow) LLMVAD way")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--windows", default=None, metavar="SIZE/STRIDE", help="judged windows (default: [windows])")
    args = ap.parse_args()
    windows = {}
    if args.windows:
        size, stride = (int(x) for x in args.windows.split("/"))
        windows = {"windows": {"size": size, "stride": stride}}

    vlm_dir = args.vlm or str(args.models / "tiny-gemma3-vlm")
    judge_dir = args.judge or str(args.models / "gemma3-270m")
    cfg = validate(
        {
            "model": {
                "id": vlm_dir,
                "max_batch": args.batch,
                "max_new_tokens": args.max_new_tokens,
                "device": args.device,
                "dtype": args.dtype,
            },
            "judge": {"model": judge_dir},
            "sampling": {"every_n_frames": args.every, "motion_gate": False},
            "cameras": [{"name": "bench", "url": str(args.video)}],
            **windows,
        },
        env=dict(os.environ),
    )
    vlm = TransformersModel(vlm_dir, device=args.device, dtype=args.dtype)
    judge = TransformersModel(judge_dir, device=args.device, dtype=args.dtype)
    frames, _ = decode_sampled(args.video, args.every, cfg.model.image_max_side)
    if args.limit:
        frames = frames[: args.limit]
    n = len(frames)
    prompt, mnt, js = cfg.model.prompt, cfg.model.max_new_tokens, cfg.judge
    print(
        f"{n} sampled frames of {args.video.name} (every {args.every}th); VLM {vlm_dir}; judge {judge_dir}; "
        f"windows of {cfg.windows.size} (stride {cfg.windows.stride})"
    )
    print(
        f"device {vlm.device}, dtype {vlm.dtype}, batch {args.batch}, max_new_tokens {mnt}, torch threads "
        f"{__import__('torch').get_num_threads()}"
    )

    def windows_of(texts: list[str]) -> list[tuple[str, ...]]:
        w = SlidingWindows[str](cfg.windows)
        out = [win for t in texts if (win := w.add(t)) is not None]
        tail = w.flush()
        return [*out, tail] if tail else out

    # warm-up (first calls allocate)
    describe_now(vlm, [frames[0].image], prompt, 4)
    probs_now(judge, [judge_prompt(js, ["warm"])], js.answers)

    def llmvad() -> float:
        t0 = time.perf_counter()
        texts = [describe_now(vlm, [f.image], prompt, mnt)[0] for f in frames]
        for win in windows_of(texts):
            expected_score(probs_now(judge, [judge_prompt(js, win)], js.answers))
        return time.perf_counter() - t0

    def bare() -> float:
        t0 = time.perf_counter()
        texts: list[str] = []
        for a in range(0, n, args.batch):
            chunk = frames[a : a + args.batch]
            texts += describe_now(vlm, [f.image for f in chunk], prompt, mnt)
        t1 = time.perf_counter()
        wins = windows_of(texts)
        for a in range(0, len(wins), args.batch):
            probs_now(judge, [judge_prompt(js, w) for w in wins[a : a + args.batch]], js.answers)
        took = time.perf_counter() - t0
        print(
            f"  bare: {took:.1f} s; describing {t1 - t0:.1f} s, judging {len(wins)} windows "
            f"{time.perf_counter() - t1:.1f} s"
        )
        return took

    def pipeline(cache_size: int) -> float:
        run_cfg = cfg.replace(judge=cfg.judge.model_copy(update={"cache_size": cache_size}))
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            models = batching_engine(run_cfg, vlm, judge)
            mon = Monitor(run_cfg, models=models, sinks=[JsonLinesSink(Path(tmp))])
            summary = asyncio.run(mon.run())
            assert summary.cameras[0].frames_sampled == n_pipe
            took = time.perf_counter() - t0
        st = models.stats
        print(
            f"  pipeline (cache {cache_size}): {took:.1f} s; model thread busy "
            + ", ".join(
                f"{k.value} {st.busy_s[k]:.1f} s in {st.batches[k]} batches of {st.mean_batch(k):.1f}"
                for k in RequestKind
                if st.batches[k]
            )
        )
        return took

    if args.limit:
        print("(the pipeline runs the whole video; its figure is per sampled frame of the whole video)")
    n_pipe = len(decode_sampled(args.video, args.every)[0])
    # Interleaved rounds, best of each: the machine is shared and noisy.
    best = {"llmvad": float("inf"), "bare": float("inf"), "pipeline": float("inf"), "cache": float("inf")}
    for _ in range(args.rounds):
        best["pipeline"] = min(best["pipeline"], pipeline(0))
        best["bare"] = min(best["bare"], bare())
        best["cache"] = min(best["cache"], pipeline(cfg.judge.cache_size))
        if not args.skip_llmvad:
            best["llmvad"] = min(best["llmvad"], llmvad())
    t_llmvad, t_bare, t_pipe, t_cache = best["llmvad"], best["bare"], best["pipeline"], best["cache"]
    n_cache = n_pipe

    rows = [
        *([] if args.skip_llmvad else [("llmvad   (one frame per call)", n, t_llmvad)]),
        ("bare     (batched model only)", n, t_bare),
        ("pipeline (decode..sinks)", n_pipe, t_pipe),
        ("pipeline + judge cache", n_cache, t_cache),
    ]
    for label, count, secs in rows:
        print(f"{label:32s} {count:5d} frames {secs:8.1f} s  {count / secs:7.2f} frames/s")
    bare, pipe = n / t_bare, n_pipe / t_pipe
    vs_llmvad = "" if args.skip_llmvad else f"   pipeline / llmvad = {pipe / (n / t_llmvad):.2f}"
    print(f"pipeline / bare = {pipe / bare:.2f}{vs_llmvad}   pipeline+cache / bare = {(n_cache / t_cache) / bare:.2f}")


if __name__ == "__main__":
    main()
