"""How well can a judge on a server rank (issue 24.4)? Gemma 3 270M behind llama.cpp's server gives two
things: log-probabilities of the answer (the prompted score, as the monitor's OpenAI client reads them)
and, from a second server started with ``--embeddings --pooling mean``, an embedding of the probe prompt
(the instructions and the report, as the in-process calibration reads it, but the model's last layer,
not layers 5-8). A multiple-instance calibration on those embeddings is fitted exactly as
``benchmarks.judge_mil_study`` fits the in-process one (UCA Train video labels; the combination with the
prompt on UCA Val; the development set's videos and texts left out) and the development set is scored
once, each description by its own window, smoothed as live.

    .venv/bin/python -m benchmarks.judge_server_study --uca DIR [--videos 320 120] [--cache /tmp/judge-server]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from benchmarks.common import ROOT
from benchmarks.judge_mil_study import read_uca, sample_videos
from monitor.offline.calibrate import MilSettings, fit_mil_calibration
from monitor.offline.commands import video_auc
from monitor.offline.judge_eval import Labelled, read_labelled, report, score_windows, smooth_by_video
from monitor.options import load_config
from pipeline.engines.openai import OpenAIClient, OpenAISettings
from pipeline.prompts import PROBE_PROMPT
from pipeline.texts import fill
from tests.helpers.model_servers import llama_server

F = npt.NDArray[np.float64]


async def embeddings(base_url: str, texts: Sequence[str], *, parallel: int = 2) -> F:
    """The server's mean-pooled embedding of each text's probe prompt."""
    out: list[list[float] | None] = [None] * len(texts)
    gate = asyncio.Semaphore(parallel)
    async with httpx.AsyncClient(base_url=base_url, timeout=300) as http:

        async def one(i: int, bar: tqdm) -> None:
            async with gate:
                r = await http.post("/embeddings", json={"input": fill(PROBE_PROMPT, [texts[i]], None), "model": "x"})
                r.raise_for_status()
                out[i] = r.json()["data"][0]["embedding"]
                bar.update()

        with tqdm(total=len(texts), desc="embeddings", file=sys.stderr, mininterval=30) as bar:
            await asyncio.gather(*(one(i, bar) for i in range(len(texts))))
    return np.asarray(out, dtype=np.float64)


async def prompted(base_url: str, rule: object, items: Sequence[Labelled]) -> F:
    client = OpenAIClient(OpenAISettings(base_url=base_url, model="gemma3-270m", timeout_s=300), chat_judge=False)
    async with client:
        with tqdm(total=len(items), desc="server judge", file=sys.stderr, mininterval=30) as bar:
            return await score_windows(client, rule, [[it.text] for it in items], progress=bar.update)  # type: ignore[arg-type]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uca", type=Path, required=True)
    ap.add_argument("--dev", type=Path, default=ROOT.parent / "shared" / "data" / "judge_dev.jsonl")
    ap.add_argument("--gguf", type=Path, default=ROOT / ".models" / "gemma-3-270m-q4_k_m.gguf")
    ap.add_argument("--videos", type=int, nargs=2, default=(320, 120), metavar=("TRAIN", "VAL"))
    ap.add_argument("--cache", type=Path, default=Path("/tmp/judge-server"))
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    dev = read_labelled(args.dev)
    train = sample_videos(read_uca(args.uca / "UCFCrime_Train.json", leave_out=dev), args.videos[0])
    val = sample_videos(read_uca(args.uca / "UCFCrime_Val.json", leave_out=dev), args.videos[1])
    cfg = load_config(None, calibration=False)
    rule = cfg.general_rule
    path = args.cache / f"server-{args.videos[0]}-{args.videos[1]}.npz"
    if path.exists():
        z = dict(np.load(path))
    else:
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory() as tmp:
            embed = llama_server(args.gguf, Path(tmp), parallel=2)
            embed.command += ["--embeddings", "--pooling", "mean"]
            judge = llama_server(args.gguf, Path(tmp), parallel=2)
            with embed, judge:
                z = {}
                for name, items in (("train", train), ("val", val), ("dev", dev)):
                    z[f"{name}_x"] = asyncio.run(embeddings(embed.base_url, [it.text for it in items]))
                    if name != "train":
                        z[f"{name}_p"] = asyncio.run(prompted(judge.base_url, rule, items))
        np.savez(path, **z)
        print(f"server features in {time.monotonic() - t0:.0f} s")
    alpha = cfg.judge.smoothing
    tr_y = np.array([it.label for it in train], bool)
    va = (z["val_x"], z["val_p"], [it.video for it in val], np.array([it.label for it in val], bool))
    dev_plain = report(dev, smooth_by_video(dev, z["dev_p"], alpha))
    print(f"server judge, prompt alone, on the development set: {dev_plain.roc_auc:.4f}")
    results = []
    for k in (1.0, 0.5, 0.25, 0.1, 0.0):
        for l2 in (10.0, 100.0, 1000.0):
            cal = fit_mil_calibration(
                z["train_x"], np.full(len(train), 0.5), [it.video for it in train], tr_y,
                MilSettings(top_share=k, l2=l2), combine_on=va, model="", layers=(0,), probe_prompt="",
            )  # fmt: skip
            auc = video_auc(val, smooth_by_video(val, cal.score(z["val_x"], z["val_p"]), alpha))
            results.append((auc, k, l2, cal))
            print(f"top {k:4.2f} l2 {l2:6.0f}: validation video AUC {auc:.4f}")
    auc, k, l2, cal = max(results, key=lambda r: r[0])
    print(f"validation, prompt alone: {video_auc(val, smooth_by_video(val, z['val_p'], alpha)):.4f}")
    got = report(dev, smooth_by_video(dev, cal.score(z["dev_x"], z["dev_p"]), alpha))
    print(f"chosen on validation: top {k}, l2 {l2}; the development set, scored once:")
    for line in got.lines():
        print(f"  {line}")


if __name__ == "__main__":
    main()
