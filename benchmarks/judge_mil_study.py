"""A judge calibration learnt from video-level labels (issue 24): multiple-instance learning on the UCA
descriptions of UCF-Crime (Xuange923/Surveillance-Video-Understanding, ``UCF Annotation/json/``), every
setting chosen on UCA's validation split, the development set scored once at the end.

Only ``UCFCrime_Train.json`` and ``UCFCrime_Val.json`` are read. Their splits are not UCF-Crime's: 122 of
the development set's 144 videos are in them and 879 of its 1,041 texts appear there word for word, so
every video of the development set, and every sentence identical to one of its texts, is left out of
both before anything is fitted. A video is anomalous when its name is not ``Normal...``; its sentences
carry that label only (an anomalous video also shows normal moments).

Every text is judged as the live monitor judges a window of one (the configured prompt, through the
batching engine with its prefix cache) and its probe prompt's hidden states (layers 3-12, mean-pooled)
are kept: cached under ``--cache``.

    .venv/bin/python -m benchmarks.judge_mil_study --uca DIR [--cache /tmp/judge-mil] [--write FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from benchmarks.common import ROOT
from monitor.models import build_client
from monitor.offline.calibrate import MilSettings, fit_mil_calibration
from monitor.offline.commands import video_auc
from monitor.offline.judge_eval import Labelled, _each, read_labelled, score_windows, smooth_by_video
from monitor.options import load_config, with_overrides
from pipeline.inference import ModelClient
from pipeline.judge import probe_request
from pipeline.prompts import PROBE_PROMPT

F = npt.NDArray[np.float64]
LAYERS = tuple(range(3, 13))
LAYER_CHOICES: dict[str, tuple[int, ...]] = {"5-8": (5, 6, 7, 8), "6": (6,), "7-10": (7, 8, 9, 10), "3-12": LAYERS}
K_CHOICES = (1.0, 0.5, 0.25, 0.1, 0.0)
"""Share of an anomalous video's descriptions its bag score pools (0: its single highest)."""
L2_CHOICES = (10.0, 100.0, 1000.0)
BAG_NEGATIVE_CHOICES = (0.0, 0.25, 0.5)
"""Share of an anomalous video's lowest descriptions taken as negatives."""


def read_uca(path: Path, *, leave_out: Sequence[Labelled]) -> list[Labelled]:
    """The sentences of a UCA split as descriptions labelled with their video's label, without the videos
    and the texts of ``leave_out``."""
    videos = {it.video for it in leave_out}
    texts = {it.text for it in leave_out}
    items = []
    for video, entry in sorted(json.loads(path.read_text()).items()):
        if video in videos:
            continue
        label = 0 if video.startswith("Normal") else 1
        for (start, end), text in zip(entry["timestamps"], entry["sentences"], strict=True):
            text = " ".join(str(text).split())
            if text and text not in texts:
                items.append(Labelled(video, float(start), float(end), text, label, video.split("_")[0]))
    items.sort(key=lambda it: (it.video, it.start))
    return items


def sample_videos(items: Sequence[Labelled], n: int, seed: int = 0) -> list[Labelled]:
    """The descriptions of ``n`` videos drawn at random, half anomalous and half normal (as far as there are)."""
    rng = np.random.default_rng(seed)
    chosen: set[str] = set()
    for label in (1, 0):
        videos = sorted({it.video for it in items if it.label == label})
        chosen |= set(rng.choice(videos, size=min(len(videos), n // 2), replace=False).tolist())
    return [it for it in items if it.video in chosen]


async def judged(models: ModelClient, rule: object, items: Sequence[Labelled]) -> tuple[F, F]:
    """The prompted score of every text (a window of one) and its probe features per layer (n x layers x d)."""
    texts = [[it.text] for it in items]

    async def probe(window: Sequence[str]) -> F:
        got = await models.score(probe_request(PROBE_PROMPT, LAYERS, window))
        return np.stack([np.asarray(got.pooled[k], dtype=np.float32) for k in LAYERS])

    with tqdm(total=2 * len(texts), desc="judging", unit="pass", file=sys.stderr, mininterval=30) as bar:
        scores, feats = await asyncio.gather(
            score_windows(models, rule, texts, progress=bar.update),  # type: ignore[arg-type]
            _each(texts, probe, bar.update, 256),
        )
    return np.asarray(scores), np.stack(feats)


async def cached(
    models: ModelClient, rule: object, splits: dict[str, Sequence[Labelled]], cache: Path
) -> dict[str, tuple[F, F]]:
    """Each split's prompted scores and probe features, judged once and kept in ``cache``."""
    out = {}
    for name, items in splits.items():
        path = cache / f"{name}.npz"
        if path.exists():
            z = np.load(path)
            if len(z["scores"]) == len(items):
                out[name] = (z["scores"].astype(np.float64), z["features"])
                continue
        t0 = time.monotonic()
        scores, feats = await judged(models, rule, items)
        np.savez(path, scores=scores, features=feats.astype(np.float32))
        print(f"{name}: {len(items)} texts judged in {time.monotonic() - t0:.0f} s", flush=True)
        out[name] = (scores, feats)
    return out


def layer_features(feats: F, layers: tuple[int, ...]) -> F:
    idx = [LAYERS.index(k) for k in layers]
    return np.asarray(feats[:, idx, :].astype(np.float64).mean(axis=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--uca", type=Path, required=True, help="folder with UCFCrime_Train.json and UCFCrime_Val.json")
    ap.add_argument("--dev", type=Path, default=ROOT.parent / "shared" / "data" / "judge_dev.jsonl")
    ap.add_argument("--model", default=str(ROOT / ".models" / "gemma3-270m"))
    ap.add_argument("--cache", type=Path, default=Path("/tmp/judge-mil"))
    ap.add_argument("--write", type=Path, metavar="FILE", help="write the calibration chosen on validation here")
    ap.add_argument(
        "--videos",
        type=int,
        nargs=2,
        metavar=("TRAIN", "VAL"),
        help="judge a sample of this many videos of each split, half of them anomalous (seeded; default: all)",
    )
    ap.add_argument(
        "--layers", choices=list(LAYER_CHOICES), nargs="+", default=list(LAYER_CHOICES), help="the layer sets tried"
    )
    ap.add_argument("--l2", type=float, nargs="+", default=list(L2_CHOICES), help="the penalties tried")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    dev = read_labelled(args.dev)
    train = read_uca(args.uca / "UCFCrime_Train.json", leave_out=dev)
    val = read_uca(args.uca / "UCFCrime_Val.json", leave_out=dev)
    if args.videos:
        train, val = sample_videos(train, args.videos[0]), sample_videos(val, args.videos[1])
        args.cache = args.cache / f"sample-{args.videos[0]}-{args.videos[1]}"
        args.cache.mkdir(parents=True, exist_ok=True)
    for name, items in (("train", train), ("val", val)):
        n_videos = len({it.video for it in items})
        n_anom = len({it.video for it in items if it.label})
        print(f"{name}: {len(items)} texts of {n_videos} videos ({n_anom} anomalous)", flush=True)
    cfg = with_overrides(load_config(None, calibration=False), judge_model=args.model)
    rule = cfg.general_rule
    models = build_client(cfg, describe=False)

    async def judge_all() -> dict[str, tuple[F, F]]:
        async with models:
            return await cached(models, rule, {"train": train, "val": val}, args.cache)

    got = asyncio.run(judge_all())
    (tr_scores, tr_feats), (va_scores, va_feats) = got["train"], got["val"]
    alpha = cfg.judge.smoothing
    tr_videos, va_videos = [it.video for it in train], [it.video for it in val]
    tr_y, va_y = np.array([it.label for it in train], bool), np.array([it.label for it in val], bool)

    def fit(layers: tuple[int, ...], settings: MilSettings, **meta: object) -> tuple[object, F]:
        xtr, xva = layer_features(tr_feats, layers), layer_features(va_feats, layers)
        cal = fit_mil_calibration(
            xtr,
            tr_scores,
            tr_videos,
            tr_y,
            settings,
            combine_on=(xva, va_scores, va_videos, va_y),
            layers=layers,
            **meta,  # type: ignore[arg-type]
        )
        return cal, cal.score(xva, va_scores)

    results = []
    t0 = time.monotonic()
    for lname in args.layers:
        layers = LAYER_CHOICES[lname]
        for k in K_CHOICES:
            for l2 in args.l2:
                for low in BAG_NEGATIVE_CHOICES:
                    if low and low + k > 1:
                        continue
                    _, raw = fit(layers, MilSettings(top_share=k, l2=l2, bag_negatives=low), model="", probe_prompt="")
                    auc = video_auc(val, smooth_by_video(val, raw, alpha))
                    results.append((auc, lname, k, l2, low))
                    print(
                        f"layers {lname:5s} top {k:4.2f} l2 {l2:6.0f} lowest as negatives {low:4.2f}: "
                        f"validation video AUC {auc:.4f}",
                        flush=True,
                    )
    print(f"grid fitted in {time.monotonic() - t0:.0f} s")
    auc, lname, k, l2, low = max(results)
    prompt_auc = video_auc(val, smooth_by_video(val, va_scores, alpha))
    print(
        f"chosen on validation: layers {lname}, top {k}, l2 {l2}, lowest {low} as negatives "
        f"(video AUC {auc:.4f}; prompt alone {prompt_auc:.4f})"
    )
    if args.write is None:
        return
    t0 = time.monotonic()
    cal, _ = fit(
        LAYER_CHOICES[lname],
        MilSettings(top_share=k, l2=l2, bag_negatives=low),
        model=models.judge.name,
        probe_prompt=PROBE_PROMPT,
        note=(
            f"multiple-instance fit on UCA Train video labels ({len(train)} texts, {len(set(tr_videos))} videos), "
            f"combined with the prompt on UCA Val ({len(val)} texts, {len(set(va_videos))} videos); the development "
            f"set's videos and texts left out; layers {lname}, top {k}, l2 {l2}, lowest {low} as negatives "
            "chosen on UCA Val"
        ),
        fingerprint=models.judge.fingerprint,
        prompt=rule.prompt_hash,
        windows=(cfg.windows.size, cfg.windows.stride),
    )
    print(f"fitted in {time.monotonic() - t0:.0f} s")
    cal.save(args.write)  # type: ignore[attr-defined]
    print(
        f"written to {args.write}; the figure: .venv/bin/monitor eval-judge {args.dev} with it as [judge] calibration"
    )


if __name__ == "__main__":
    main()
