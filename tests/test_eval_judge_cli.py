"""``monitor eval-judge`` with the real Gemma 3 270M judge."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from monitor.cli import main

pytestmark = pytest.mark.slow

ROWS = [
    ("v1", 0, "A man walks along the sidewalk carrying a bag.", 0),
    ("v1", 5, "The man suddenly punches another man in the face and kicks him on the ground.", 1),
    ("v1", 9, "The attacker runs away and the victim lies bleeding on the street.", 1),
    ("v2", 0, "A woman waters the plants in front of the shop.", 0),
    ("v2", 4, "A car parks slowly and the driver walks into the shop.", 0),
    ("v3", 0, "Two masked men break the shop window and grab the cash register.", 1),
    ("v3", 6, "Customers queue quietly at the counter.", 0),
    ("v4", 0, "The building is on fire and thick smoke fills the street.", 1),
]


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    f = tmp_path / "dev.jsonl"
    f.write_text(
        "".join(json.dumps({"video": v, "start": s, "end": s + 2, "text": t, "label": y}) + "\n" for v, s, t, y in ROWS)
    )
    return f


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ([], "windows of 1 (stride 1), scores calibrated and smoothed"),  # config.toml's windows and calibration
        (["--window", "3", "--stride", "2", "--raw"], "windows of 3 (stride 2), scores prompted"),
    ],
)
def test_eval_judge_prints_the_figures(
    labelled: Path, judge_270m: Path, args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["eval-judge", str(labelled), "--judge-model", str(judge_270m), "--batch-size", "4", *args])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    assert says in out[0]
    last = out[-1].split()
    assert [kv.split("=")[0] for kv in last] == ["roc_auc", "ap", "n"]
    auc, ap, n = (float(kv.split("=")[1]) for kv in last)
    assert n == len(ROWS) and 0 <= auc <= 1 and 0 <= ap <= 1
    assert auc > 0.5  # a real language model ranks fights and fires above watering plants
    assert any("vs normal videos" in line for line in out)


def test_eval_judge_refuses_windows_the_calibration_was_not_fitted_for(
    labelled: Path, judge_270m: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval-judge", str(labelled), "--judge-model", str(judge_270m), "--window", "3"]) == 2
    err = capsys.readouterr().err
    assert "--window/--stride: windows of 3 (stride 1)" in err and "fitted for windows of 1 (stride 1)" in err


def test_live_windows_are_the_monitors() -> None:
    from monitor.offline.judge_eval import Labelled, live_windows
    from pipeline.windows import WindowSettings

    items = [Labelled(v, float(t), float(t) + 1, f"{v}{t}", 0) for v, t in [("a", 3), ("a", 1), ("b", 0)]]
    items += [Labelled("a", float(t), float(t) + 1, f"a{t}", 0) for t in (4, 5, 6)]
    live = live_windows(items, WindowSettings(size=3, stride=2))
    assert live.texts(items) == [("a1", "a3", "a4"), ("a4", "a5", "a6"), ("b0",)]
    assert list(live.first) == [0, 0, 2, 0, 1, 1] and live.videos == ["a", "a", "b"]
    assert list(live.per_item(np.array([0.1, 0.5, 0.9]))) == [0.1, 0.1, 0.9, 0.1, 0.5, 0.5]


def test_eval_judge_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"video": "v", "text": "t"}\n')
    assert main(["eval-judge", str(bad), "--judge-model", "unused"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {bad}:1: missing field 'label'"
