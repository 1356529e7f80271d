"""``monitor eval-judge`` with the real Gemma 3 270M judge."""

from __future__ import annotations

import json
from pathlib import Path

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


@pytest.mark.parametrize("window", [1, 2])
def test_eval_judge_prints_the_figures(
    labelled: Path, judge_270m: Path, window: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["eval-judge", str(labelled), "--judge-model", str(judge_270m), "--window", str(window), "--batch-size", "4"]
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    last = out[-1].split()
    assert [kv.split("=")[0] for kv in last] == ["roc_auc", "ap", "n"]
    auc, ap, n = (float(kv.split("=")[1]) for kv in last)
    assert n == len(ROWS) and 0 <= auc <= 1 and 0 <= ap <= 1
    assert auc > 0.5  # a real language model ranks fights and fires above watering plants
    assert any("vs normal videos" in line for line in out)


def test_eval_judge_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"video": "v", "text": "t"}\n')
    assert main(["eval-judge", str(bad), "--judge-model", "unused"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {bad}:1: missing field 'label'"
