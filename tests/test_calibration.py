"""``monitor calibrate-judge`` and a calibrated judge in the pipeline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from monitor.config import ConfigError, load
from monitor.offline.calibrate import (
    MilSettings,
    cv_probe,
    fit_calibration,
    fit_logistic,
    fit_mil,
    group_folds,
    video_bags,
)
from pipeline.alerts import AlertSettings
from pipeline.calibration import FORMAT, JudgeCalibration, layer_mean
from pipeline.inference import ChatPrompt, ScoreRequest
from pipeline.judge import Judge, JudgeSettings, expected_score, judge_prompt, probe_request
from pipeline.prompts import PROBE_PROMPT
from pipeline.rules import general_rule
from tests.helpers.cli import monitor_command
from tests.helpers.media import make_clip

ROOT = Path(__file__).resolve().parent.parent


def test_logistic_regression_recovers_a_separating_direction() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    y = (x @ np.array([2.0, -1.0, 0, 0, 0]) + 0.3 * rng.normal(size=400)) > 0
    w, b = fit_logistic(x, y, l2=0.1)
    assert w[0] > 1 and w[1] < -0.5 and abs(w[2]) < 0.5 and abs(b) < 0.5
    folds = group_folds([f"v{i // 10}" for i in range(400)], 5)
    assert len(set(folds)) == 5 and all(len(set(folds[i : i + 10])) == 1 for i in range(0, 400, 10))
    oof = cv_probe(x, y, folds, 0.1)
    assert ((oof > 0) == y).mean() > 0.9
    cal = fit_calibration(x, np.clip(y * 0.6 + 0.2, 0, 1), y, folds, model="m", layers=(3,), probe_prompt=PROBE_PROMPT)
    assert cal.score(x, np.full(400, 0.5)).shape == (400,)
    # balanced classes: a rare class is not drowned by the common one
    rare = np.arange(400) < 40
    xr = x + rare[:, None] * np.array([1.0, 0, 0, 0, 0])
    wb, bb = fit_logistic(xr, rare, l2=0.1, balanced=True)
    wu, bu = fit_logistic(xr, rare, l2=0.1)
    assert ((xr @ wb + bb > 0) == rare)[rare].mean() > ((xr @ wu + bu > 0) == rare)[rare].mean()
    # per-item weights: the class-share weights given explicitly fit the same model; weighing some items
    # up pulls the fit towards getting them right
    share = rare.mean()
    ws, bs = fit_logistic(xr, rare, l2=0.1, sample_weight=np.where(rare, 0.5 / share, 0.5 / (1 - share)))
    assert np.allclose(ws, wb) and np.isclose(bs, bb)
    heavy = np.where(rare, 20.0, 1.0)
    wh, bh = fit_logistic(xr, rare, l2=0.1, sample_weight=heavy)
    assert ((xr @ wh + bh > 0) == rare)[rare].mean() >= ((xr @ wu + bu > 0) == rare)[rare].mean()
    assert not np.allclose(cv_probe(xr, rare, folds, 0.1, sample_weight=heavy), cv_probe(xr, rare, folds, 0.1))


def test_calibration_file_round_trip_and_errors(tmp_path: Path) -> None:
    cal = JudgeCalibration(
        "m",
        (8, 9),
        PROBE_PROMPT,
        np.zeros(4),
        np.ones(4),
        np.arange(4.0),
        0.5,
        (1.0, 0.5, -0.1),
        "note",
        windows=(3, 2),
    )
    path = tmp_path / "cal.json"
    cal.save(path)
    back = JudgeCalibration.load(path)
    assert back.layers == (8, 9) and list(back.weights) == [0, 1, 2, 3] and back.combine == (1.0, 0.5, -0.1)
    assert back.windows == (3, 2) and back.probe_prompt == PROBE_PROMPT
    assert list(back.features({8: np.ones(4), 9: np.full(4, 3.0)})) == [2.0] * 4
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[judge]\ncalibration = "{path.name}"\n[windows]\nsize = 3\nstride = 2\n')
    assert load(cfg).judge.calibration == path
    # other windows than it was fitted for: refused, naming the key (globally or for one camera)
    cfg.write_text(f'[judge]\ncalibration = "{path.name}"\n')
    with pytest.raises(ConfigError) as info:
        load(cfg)
    key, why = info.value.problems[0]
    assert key == "windows" and "windows of 1 (stride 1)" in why and "fitted for windows of 3 (stride 2)" in why
    cfg.write_text(
        f'[judge]\ncalibration = "{path.name}"\n[windows]\nsize = 3\nstride = 2\n'
        '[[cameras]]\nname = "a"\nurl = "a.mp4"\n[[cameras]]\nname = "b"\nurl = "b.mp4"\n'
        "[cameras.windows]\nsize = 2\n"
    )
    with pytest.raises(ConfigError) as info:
        load(cfg)
    assert [k for k, _ in info.value.problems] == ["cameras.b.windows"]
    # files of the earlier formats (no windows; a probe on the judge prompt's own states): refused, saying
    # to fit them again
    for fmt in ("llmvad-judge-calibration/1", "llmvad-judge-calibration/2"):
        old = json.loads(path.read_text())
        old["format"] = fmt
        path.write_text(json.dumps(old))
        with pytest.raises(ConfigError) as info:
            load(cfg)
        assert "fit it again" in info.value.problems[0][1]
    bad = {**json.loads(path.read_text()), "format": FORMAT, "probe_prompt": "no placeholder"}
    path.write_text(json.dumps(bad))
    with pytest.raises(ConfigError) as info:
        load(cfg)
    assert "probe_prompt" in info.value.problems[0][1]
    path.write_text('{"format": "something else"}')
    with pytest.raises(ConfigError) as info:
        load(cfg)
    assert (
        info.value.problems[0][0] == "judge.calibration" and "not a judge calibration file" in info.value.problems[0][1]
    )


@pytest.mark.slow
def test_calibrate_then_run_with_the_calibration(
    tmp_path: Path, judge_270m: Path, tiny_vlm: Path, judge_dev: Path
) -> None:
    rows = [json.loads(line) for line in judge_dev.read_text().splitlines()]
    videos = (
        sorted({r["video"] for r in rows if r["label"]})[:6]
        + sorted({r["video"] for r in rows if r["video"].startswith("Normal")})[:4]
    )
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows if r["video"] in videos))
    out = tmp_path / "cal.json"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "monitor",
            "calibrate-judge",
            str(data),
            "--judge-model",
            str(judge_270m),
            "--layers",
            "5,6",
            "--window",
            "2",
            "--stride",
            "1",
            "--output",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert lines.pop(0) == "windows of 2 (stride 1); each description scored by its first window"
    assert [ln.split(":")[0] for ln in lines[:3]] == [
        "prompted judge",
        "with calibration",
        "calibrated, smoothed (0.5)",
    ]
    assert all(" roc_auc=" in ln for ln in lines[:3])
    assert f'calibration = "{out}"' in r.stdout
    cal = JudgeCalibration.load(out)
    assert cal.layers == (5, 6) and cal.mean.shape == (640,) and cal.windows == (2, 1)
    # the pipeline scores with it, in the windows it was fitted for
    clip = make_clip(tmp_path / "c.mp4", seconds=2)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[judge]\ncalibration = "{out}"\n[windows]\nsize = 2\nstride = 1\n[store]\nenabled = false\n')
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "monitor",
            "run",
            "--config",
            str(cfg),
            "--model",
            str(tiny_vlm),
            "--judge-model",
            str(judge_270m),
            "--source",
            str(clip),
            "--output",
            str(tmp_path / "o"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    scores = [
        json.loads(x)["score"]
        for x in (tmp_path / "o" / "results.jsonl").read_text().splitlines()
        if '"kind": "score"' in x
    ]
    assert scores and all(0.0 <= s <= 1.0 for s in scores)


@pytest.mark.slow
async def test_a_calibrated_judge_reads_the_probe_prompt_in_a_pass_of_its_own(judge_270m: Path) -> None:
    """The calibrated score is the probe on the hidden states of the report without the examples (the probe prompt's own
    pass, sent with the judge prompt's), combined with the prompted score: not the judge prompt's states."""
    from monitor.config import validate
    from monitor.models import batching_engine
    from pipeline.engines.transformers import TransformersModel

    settings = JudgeSettings()
    text = ["A man in a mask breaks the shop window with a hammer."]
    cfg = validate({"judge": {"model": str(judge_270m)}}, env={})
    models = batching_engine(cfg, None, TransformersModel(str(judge_270m), device="cpu"))
    async with models:
        asked = await models.score(ScoreRequest(judge_prompt(settings, text), settings.answers, (5, 6)))
        # the probe text read whole in one plain pass, nothing marked fixed: what the Judge's probe request
        # (its instructions cached as a head) must give
        whole = ChatPrompt("", probe_request(PROBE_PROMPT, (5, 6), text).prompt.user)
        probe = await models.score(ScoreRequest(whole, settings.answers, (5, 6)))
        # a probe that tells the two passes' states apart: centred between them, along their difference
        a, b = (layer_mean(r.pooled, (5, 6)) for r in (probe, asked))
        w = np.random.default_rng(1).normal(size=640) * 0.05
        cal = JudgeCalibration("m", (5, 6), PROBE_PROMPT, (a + b) / 2, np.abs(a - b) + 1e-3, w, 0.2, (1.0, 0.8, -0.3))
        rule = general_rule(settings, AlertSettings(), Path("cal.json"))
        verdict = await Judge(models, calibrations={Path("cal.json"): cal}).score(rule, text)
    prompted = expected_score(asked.probs)
    assert whole.user.endswith("\n\nReport: " + text[0] + "\nAnomaly:")
    assert np.isclose(verdict.score, cal.score(cal.features(probe.pooled)[None, :], prompted)[0], atol=1e-5)
    assert not np.isclose(verdict.score, cal.score(cal.features(asked.pooled)[None, :], prompted)[0], atol=1e-3)


def test_a_calibration_from_video_labels_ranks_held_back_videos_better(
    tmp_path: Path, judge_270m: Path, judge_dev: Path
) -> None:
    """``calibrate-judge --video-labels``: a site's clips labelled only "had an incident" or "did not"
    (here: 58 videos of the development set, each line given its video's label), then the held-back
    videos' descriptions ranked by ``eval-judge`` with and without the calibration."""
    rows = [json.loads(line) for line in judge_dev.read_text().splitlines()]
    anomalous = sorted({r["video"] for r in rows if r["label"]})
    normal = sorted({r["video"] for r in rows} - set(anomalous))
    fit_videos = set(anomalous[0::2] + normal[0::3])  # 28 and 30
    held_videos = set(anomalous[1::2] + normal[1::3])  # 27 and 30, none of the others
    assert len(fit_videos) == 58 and len(held_videos) == 57 and not fit_videos & held_videos
    labelled_videos = tmp_path / "site.jsonl"
    labelled_videos.write_text(
        "".join(
            json.dumps({**r, "label": int(r["video"] in anomalous)}) + "\n" for r in rows if r["video"] in fit_videos
        )
    )
    held = tmp_path / "held.jsonl"
    held.write_text("".join(json.dumps(r) + "\n" for r in rows if r["video"] in held_videos))
    out = tmp_path / "cal.json"
    plain, calibrated = tmp_path / "plain.toml", tmp_path / "calibrated.toml"
    plain.write_text("[judge]\nsmoothing = 0.5\n")
    calibrated.write_text(f'[judge]\nsmoothing = 0.5\ncalibration = "{out}"\n')

    def monitor(*args: object) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(monitor_command(*args), cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr[-2000:]
        return r

    fitted = monitor(
        "calibrate-judge", labelled_videos, "--video-labels", "--folds", 4, "--config", plain,
        "--judge-model", judge_270m, "--output", out,
    )  # fmt: skip
    assert "video ROC-AUC" in fitted.stdout and "with calibration:" in fitted.stdout
    cal = JudgeCalibration.load(out)
    assert "multiple-instance fit on the video labels of site.jsonl" in cal.note

    def auc(config: Path) -> tuple[float, float]:
        """eval-judge on the held-back videos: the ranking of the videos, and of the descriptions."""
        lines = monitor("eval-judge", held, "--config", config, "--judge-model", judge_270m).stdout.splitlines()
        (videos,) = [float(x.rsplit(" ", 1)[1]) for x in lines if x.startswith("roc_auc of videos")]
        return videos, float(lines[-1].split()[0].removeprefix("roc_auc="))

    prompt_alone, with_calibration = auc(plain), auc(calibrated)
    print(f"held-back videos (videos, descriptions): prompt alone {prompt_alone}, calibrated {with_calibration}")
    # what video labels teach is which clips had an incident: the held-back videos rank better (measured
    # 0.8716 -> 0.8778; 0.783 -> 0.839 in the command's own folds). The descriptions, against their own
    # labels, do not (0.8428 -> 0.8317): docs/judge.md says why.
    assert with_calibration[0] > prompt_alone[0]


def test_multiple_instance_learning_finds_the_few_anomalous_moments() -> None:
    """Anomalous videos whose moments are mostly normal (1 in 5 anomalous), labelled only per video: the
    multiple-instance probe ranks the anomalous moments above the normal moments of the same videos
    better than a probe that takes every moment of an anomalous video as anomalous."""
    rng = np.random.default_rng(3)
    d, per_video = 20, 10
    anomaly_dir, scene_dir = np.eye(d)[0], np.eye(d)[1]

    def videos(n: int, anomalous: bool) -> tuple[list[np.ndarray], list[int]]:
        xs, truth = [], []
        for _ in range(n):
            x = rng.normal(size=(per_video, d))
            hot = np.zeros(per_video, dtype=int)
            if anomalous:
                x += 0.5 * scene_dir  # anomalous videos' scenes differ a little: a shortcut for the naive probe
                hot[rng.choice(per_video, 2, replace=False)] = 1
                x[hot == 1] += 2.5 * anomaly_dir
            xs.append(x)
            truth += hot.tolist()
        return xs, truth

    def dataset(n: int) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
        pos, tpos = videos(n, True)
        neg, tneg = videos(n, False)
        x = np.vstack(pos + neg)
        names = [f"a{i}" for i in range(n) for _ in range(per_video)] + [
            f"n{i}" for i in range(n) for _ in range(per_video)
        ]
        return x, names, np.array([v.startswith("a") for v in names]), np.array(tpos + tneg, dtype=bool)

    x, names, video_label, _ = dataset(60)
    xt, _, video_label_t, truth_t = dataset(40)
    negatives, bags = video_bags(names, video_label)

    def hard_auc(w: np.ndarray, b: float) -> float:  # anomalous moments against the normal ones of their videos
        z = xt @ w + b
        pos, neg = z[truth_t], z[video_label_t & ~truth_t]
        return float((pos[:, None] > neg[None, :]).mean())

    naive = hard_auc(*fit_mil(x, negatives, bags, MilSettings(top_share=1.0, l2=1.0)))
    mil = hard_auc(*fit_mil(x, negatives, bags, MilSettings(top_share=0.2, l2=1.0)))
    assert mil > naive + 0.05 and mil > 0.85, (naive, mil)  # measured: 0.811 and 0.908
    with pytest.raises(ValueError, match="both labels"):
        video_bags(["a", "a"], np.array([True, True]))
