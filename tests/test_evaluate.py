"""``monitor eval``: benchmark figures on synthetic data with known answers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score

from monitor.cli import main
from monitor.offline.annotations import AnnotationError, read_ucf_crime, read_xd_violence, xd_class
from monitor.offline.evaluate import ScoredVideo, evaluate, frame_scores, load_results
from monitor.offline.llmvad_compat import write_llmvad_pickles
from pipeline.alerts import AlertSettings
from pipeline.judge import JudgeSettings
from pipeline.rules import general_rule

ALERTS = general_rule(JudgeSettings(), AlertSettings(threshold=0.7, hysteresis=0.1, min_duration_s=0.0, cooldown_s=0.0))


def result_json(path: Path, duration: float, windows: list[tuple[float, float, float]]) -> None:
    path.write_text(
        json.dumps(
            {
                "complete": True,
                "duration": duration,
                "windows": [{"start_time": a, "end_time": b, "score": s} for a, b, s in windows],
            }
        )
    )


@pytest.fixture
def hand_case(tmp_path: Path) -> tuple[Path, Path]:
    scores = tmp_path / "scores"
    scores.mkdir()
    result_json(scores / "Fight001_x264.json", 3.0, [(0.0, 1.0, 0.8), (1.0, 2.0, 0.2)])
    result_json(scores / "Normal001_x264.json", 2.0, [(0.0, 0.5, 0.3), (0.5, 1.5, 0.9)])
    ann = tmp_path / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt"
    ann.write_text("Fight001_x264.mp4  Fighting  30  59  -1  -1\nNormal001_x264.mp4\tNormal\t-1\t-1\t-1\t-1\n")
    return scores, ann


def test_hand_computed_case(hand_case: tuple[Path, Path]) -> None:
    """Worked by hand (30 fps; each score holds from its window's end, 0 before the first):
    Fight001 (90 frames): f0-29 -> 0, f30-59 -> 0.8 (all anomalous), f60-89 -> 0.2.
    Normal001 (60 frames): f0-14 -> 0, f15-44 -> 0.3, f45-59 -> 0.9.
    30 positives at 0.8 against 120 negatives, of which 15 (at 0.9) score higher: AUC = 105/120.
    AP: at 0.9 precision 0 (recall 0); at 0.8 precision 30/45, recall 1: AP = 2/3. The trapezoid from
    (recall 0, precision 0) to (1, 2/3) gives auc(recall, precision) = 1/3.
    Alerts at 0.7: Fight001 raises at 1.0 s, inside its anomaly (delay 0); Normal001 raises at 1.5 s: one
    false alarm in 4 s of normal footage (60 + 60 frames) = 900 per hour."""
    scores, ann = hand_case
    r = evaluate(load_results(scores), read_ucf_crime(ann), "ucf-crime", ALERTS)
    assert r["frames"] == 150 and r["videos"] == 2 and r["anomalous_videos"] == 1
    assert r["roc_auc"] == pytest.approx(105 / 120)
    assert r["ap"] == pytest.approx(2 / 3)
    assert r["ap_trapezoid"] == pytest.approx(1 / 3)
    assert r["mean_within_video_auc"] == pytest.approx(1.0)
    assert (r["false_alarms"], r["normal_hours"]) == (1, pytest.approx(4 / 3600))
    assert r["false_alarms_per_hour"] == pytest.approx(900)
    assert (r["anomalies"], r["detected"], r["delay_median_s"]) == (1, 1, 0.0)
    (row,) = r["classes"]
    assert row["name"] == "Fighting" and row["roc_auc"] == pytest.approx(105 / 120)


def test_frame_scores_are_causal() -> None:
    v = ScoredVideo("v", 1.0, np.array([0.0, 0.2]), np.array([0.25, 0.5]), np.array([0.4, 0.6]))
    s = frame_scores(v, 8.0)  # frames at 0, .125, .25, .375, .5, ...
    assert list(s) == [0.0, 0.0, 0.4, 0.4, 0.6, 0.6, 0.6, 0.6]


@pytest.mark.parametrize("seed", range(3))
def test_pooled_figures_match_scikit_learn(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores, lines, y_all, s_all = tmp_path / f"s{seed}", [], [], []
    scores.mkdir()
    for v in range(12):
        n_win = int(rng.integers(3, 12))
        ends = np.cumsum(rng.uniform(0.5, 2.0, n_win))
        starts = np.r_[0.0, ends[:-1]]
        sc = np.round(rng.random(n_win), 2)
        duration = float(ends[-1] + rng.uniform(0, 2))
        name = f"Vid{v:03d}_x264"
        result_json(scores / f"{name}.json", duration, list(zip(starts, ends, sc, strict=True)))
        n = round(duration * 30)
        y = np.zeros(n, bool)
        if v % 3:
            a = int(rng.integers(0, n // 2))
            b = int(rng.integers(a, n))
            y[a : b + 1] = True
            lines.append(f"{name}.mp4 Cls{v % 2} {a} {b} -1 -1")
        else:
            lines.append(f"{name}.mp4 Normal -1 -1 -1 -1")
        # the expansion, written out the slow way: the last window that ended at or before each frame
        fs = np.array(
            [
                next((float(s) for e, s in reversed(list(zip(ends, sc, strict=True))) if e <= f / 30), 0.0)
                for f in range(n)
            ]
        )
        y_all.append(y)
        s_all.append(fs)
    ann = tmp_path / f"a{seed}.txt"
    ann.write_text("\n".join(lines) + "\n")
    r = evaluate(load_results(scores), read_ucf_crime(ann), "ucf-crime", ALERTS)
    y, s = np.concatenate(y_all), np.concatenate(s_all)
    assert r["roc_auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert r["ap"] == pytest.approx(average_precision_score(y, s), abs=1e-12)
    p, rc, _ = precision_recall_curve(y, s)
    assert r["ap_trapezoid"] == pytest.approx(auc(rc, p), abs=1e-12)


def test_xd_violence_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scores = tmp_path / "scores"
    scores.mkdir()
    fight = "Bad.Boys.1995__#01-11-58_01-12-40_label_B1-0-0"
    normal = "A.Beautiful.Mind.2001__#00-25-20_00-26-20_label_A"
    result_json(scores / f"{fight}.json", 4.0, [(0.0, 1.0, 0.1), (1.0, 2.0, 0.9), (2.0, 3.0, 0.9)])
    result_json(scores / f"{normal}.json", 4.0, [(0.0, 1.0, 0.2), (1.0, 3.0, 0.1)])
    ann = tmp_path / "annotations.txt"
    ann.write_text(f"{fight} 24 71\n")  # frames at 24 fps; the normal video is not listed
    truths = read_xd_violence(ann)
    assert truths[fight].category == "Fighting" and xd_class(normal) == "Normal"
    assert main(["eval", "--scores", str(scores), "--annotations", str(ann), "--format", "xd-violence"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].split()[:2] == ["Fighting", "1"]
    assert "ap_trapz = auc(recall, precision)" in out
    r = json.loads((scores / "eval_xd-violence.json").read_text())
    assert r["fps"] == 24.0 and r["frames"] == 192 and r["videos"] == 2 and r["roc_auc"] is not None


def test_llmvad_pickles_can_be_evaluated(tmp_path: Path, hand_case: tuple[Path, Path]) -> None:
    _, ann = hand_case
    d = tmp_path / "llmvad"
    d.mkdir()
    write_llmvad_pickles(d, "Fight001_x264", ["a"] * 9, ["s"] * 4, [0.1, 0.8, 0.9, 0.2])
    (v,) = load_results(d).values()
    # every 10th frame, windows of 3 with stride 2, at 30 fps: window i ends at frame (2i + 2) * 10
    assert list(v.end_times) == pytest.approx([20 / 30, 40 / 30, 60 / 30, 80 / 30])
    assert main(["eval", "--scores", str(d), "--annotations", str(ann), "--format", "ucf-crime"]) == 0
    r = json.loads((d / "eval_ucf-crime.json").read_text())
    assert r["videos"] == 1 and r["missing_scores"] == ["Normal001_x264"]
    assert list(v.scores) == [0.1, 0.8, 0.9, 0.2]


def test_annotation_errors(tmp_path: Path) -> None:
    bad = tmp_path / "a.txt"
    bad.write_text("Vid.mp4 Cls 1 2\n")
    with pytest.raises(AnnotationError, match=r"a.txt:1: expected 6 fields"):
        read_ucf_crime(bad)
    bad.write_text("Vid.mp4 Cls x y -1 -1\n")
    with pytest.raises(AnnotationError, match="frame numbers expected"):
        read_ucf_crime(bad)
    bad.write_text("vid 10 20 30\n")
    with pytest.raises(AnnotationError, match="pairs"):
        read_xd_violence(bad)
    with pytest.raises(AnnotationError, match="file not found"):
        read_ucf_crime(tmp_path / "none.txt")
