"""Footage processed per hour by ``monitor batch`` versus the LLMVAD way, same models, same run.

    .venv/bin/python -m benchmarks.batch_throughput [--segments N] [--seconds S]

Cuts the sample footage into N clips of S seconds (a folder of videos), then processes the folder:

* batch: ``run_batch`` (4 videos at a time, one inference worker batching their frames, windows scored
  by next-token probabilities in one forward pass);
* LLMVAD: one video after another, every frame decoded, every 10th described by its own ``generate``
  call, each window of 3 descriptions (stride 2) summarised by another ``generate``, and the summary
  judged by generating a number that a regex reads (0.1 when none parses), as LLMVAD did.

Same models (the tiny Gemma 3 VLM, Gemma 3 270M as judge), same new-token budget for descriptions.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import tempfile
import time
from pathlib import Path

import av

from benchmarks.common import PEOPLE, ROOT, describe_now, generate_now
from monitor.config import validate
from monitor.models import batching_engine
from monitor.offline.batch import plan_jobs, run_batch
from pipeline.engines.transformers import TransformersModel
from pipeline.inference import ChatPrompt


def cut(src: Path, out_dir: Path, n: int, seconds: float) -> list[Path]:
    """``n`` consecutive clips of ``seconds`` from ``src`` (stream copy, cut at key frames)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    with av.open(str(src)) as inp:
        vs = inp.streams.video[0]
        clip_index, out, ostream, t0 = -1, None, None, 0.0
        for packet in inp.demux(vs):
            if packet.dts is None:
                continue
            t = float(packet.pts * packet.time_base)
            if packet.is_keyframe and (out is None or t - t0 >= seconds):
                if out is not None:
                    out.close()
                clip_index += 1
                if clip_index >= n:
                    out = None
                    break
                path = out_dir / f"clip{clip_index:02d}.mp4"
                paths.append(path)
                out = av.open(str(path), "w")
                ostream = out.add_stream_from_template(vs)
                t0 = t
            assert out is not None and ostream is not None
            packet.stream = ostream
            out.mux(packet)
        if out is not None:
            out.close()
    return paths


def llmvad_way(paths: list[Path], vlm: TransformersModel, judge: TransformersModel, prompt: str, tokens: int) -> float:
    t0 = time.perf_counter()
    for path in paths:
        descriptions = []
        with av.open(str(path)) as c:
            for i, frame in enumerate(c.decode(video=0)):
                image = frame.to_ndarray(format="rgb24")  # every frame decoded and converted, as with OpenCV
                if i % 10 == 0:
                    descriptions.append(describe_now(vlm, [image], prompt, tokens)[0])
        for a in range(0, max(1, len(descriptions) - 2), 2):
            chunk = " ".join(descriptions[a : a + 3])
            summary = generate_now(
                judge, [ChatPrompt("", f"Summarise these observations:\n{chunk}\nSummary:")], tokens
            )[0]
            answer = generate_now(
                judge,
                [
                    ChatPrompt(
                        "",
                        f"Observations: {summary}\nRate how anomalous this is with a number from 0.0 to 1.0.\nScore:",
                    )
                ],
                8,
            )[0]
            m = re.search(r"\d*\.\d+|\d+", answer)
            _ = float(m.group()) if m else 0.1
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--segments", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--tokens", type=int, default=32)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    clips = cut(PEOPLE, tmp / "videos", args.segments, args.seconds)
    footage = 0.0
    for p in clips:
        with av.open(str(p)) as c:
            footage += float(c.duration or 0) / 1e6
    vlm_dir, judge_dir = ROOT / ".models" / "tiny-gemma3-vlm", ROOT / ".models" / "gemma3-270m"
    vlm, judge = TransformersModel(str(vlm_dir)), TransformersModel(str(judge_dir))
    cfg = validate(
        {
            "model": {"id": str(vlm_dir), "max_new_tokens": args.tokens, "max_batch": 8},
            "judge": {"model": str(judge_dir), "cache_size": 0},
            "sampling": {"every_n_frames": 10, "motion_gate": False},
        },
        env={},
    )
    print(f"{len(clips)} clips, {footage:.0f} s of footage; {args.tokens} new tokens per description")
    t0 = time.perf_counter()
    summary = asyncio.run(
        run_batch(cfg, plan_jobs(tmp / "videos", tmp / "out"), models=batching_engine(cfg, vlm, judge), parallel=4)
    )
    t_batch = time.perf_counter() - t0
    assert not summary.failed and len(summary.outcomes) == len(clips)
    t_llmvad = llmvad_way(clips, vlm, judge, cfg.model.prompt, args.tokens)
    for name, t in (("monitor batch", t_batch), ("LLMVAD way", t_llmvad)):
        print(f"{name:14s} {t:7.1f} s   {footage / t:6.2f} hours of footage per hour")
    print(f"batch / LLMVAD throughput = {t_llmvad / t_batch:.1f}")


if __name__ == "__main__":
    main()
