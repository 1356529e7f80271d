"""A new user's first hour, as typed: the README's quick start, then the commands it suggests, each on
what the one before made (its own state folder, from the repository root as the README says)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.helpers.cli import ROOT, monitor_command
from tests.helpers.media import make_clip

pytestmark = pytest.mark.slow


def quick_start() -> list[str]:
    """The README's first command, without its set-up part: ``monitor run ...``."""
    block = re.search(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)
    assert block is not None, "the README starts with a bash block"
    command = block.group(1).split("&&")[-1].strip()
    words = shlex.split(command)
    assert words[0] == ".venv/bin/monitor" and words[1] == "run", command
    return words[1:]


def test_the_readme_sequence_finds_what_the_quick_start_made(tmp_path: Path, judge_270m: Path) -> None:
    state = tmp_path / "state"
    env = {**os.environ, "LLMVAD_STATE_DIR": str(state)}

    def monitor(*args: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(monitor_command(*args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)

    run = monitor(*quick_start(), "--max-seconds", 25)
    assert run.returncode == 0, run.stderr[-3000:]
    runs = state / "runs"
    (first,) = [p for p in runs.iterdir() if p.name != "latest"]
    assert (runs / "latest").resolve() == first.resolve()
    assert f"results: {first}" in run.stderr and "look at them:" in run.stderr
    assert "monitor events " in run.stderr and f"monitor report {first}" in run.stderr
    assert "random" in run.stderr  # the random test VLM says what it is

    # an event: the same models on a short clip, read to its end, with a threshold the random model's
    # score crosses
    low = tmp_path / "low.toml"
    low.write_text("[alerting]\nthreshold = 0.01\nhysteresis = 0.0\n")
    clip = make_clip(tmp_path / "walk.mp4", seconds=4, fps=10)
    models = quick_start()[1:5]
    assert models[0] == "--model" and models[2] == "--judge-model", models
    again = monitor("run", *models, "--source", clip, "--config", low)
    assert again.returncode == 0, again.stderr[-3000:]
    second = (runs / "latest").resolve()
    assert second != first.resolve() and first.is_dir()  # a folder each; the first one kept
    assert all(json.loads(line) for line in (second / "results.jsonl").read_text().splitlines())

    # the commands the run printed, as printed: they find the history without --instance
    events = monitor("events", "--format", "json")
    assert events.returncode == 0, events.stderr
    assert "reading the history of instance" in events.stderr  # two histories: it says which it reads
    listed = json.loads(events.stdout)
    assert listed, "the second run's event is in the history"
    event_id = listed[0]["id"]
    show = monitor("events", "show", event_id, "--snapshot", tmp_path / "snap.jpg")
    assert show.returncode == 0, show.stderr
    assert event_id in show.stdout
    summary = monitor("summarize", "--since", "1h")
    assert summary.returncode == 0, summary.stderr[-3000:]
    # it loads the judge the run used (the local test model), not the configured hub model
    assert f"loading the judge model {judge_270m.resolve()}" in summary.stderr, summary.stderr[-2000:]
    assert "huggingface.co" not in summary.stderr
    report = monitor("report")
    assert report.returncode == 0, report.stderr
    page = Path(report.stdout.strip()).read_text()
    assert Path(report.stdout.strip()).parent == second
    assert event_id in page and "data:image/png;base64" in page

    # a history asked for by a name that has none says which ones there are
    wrong = monitor("events", "--instance", "nobody")
    assert wrong.returncode == 2
    assert second.name.split("-", 2)[2] in wrong.stderr and first.name.split("-", 2)[2] in wrong.stderr, wrong.stderr


def test_old_run_folders_are_pruned(tmp_path: Path) -> None:
    from monitor.config import validate
    from monitor.live.run_folder import start_run_folder

    runs = tmp_path / "runs"
    cfg = validate({"outputs": {"dir": str(runs / "{run}"), "keep_runs": 3}, "instance": "cam"}, env={}).bind_instance()
    (runs / "mine").mkdir(parents=True)  # not a run folder: never touched
    made = [start_run_folder(cfg, now=1_800_000_000 + 60 * i).outputs.dir for i in range(5)]
    kept = sorted(p.name for p in runs.iterdir())
    assert kept == sorted([*(p.name for p in made[-3:]), "latest", "mine"])
    assert (runs / "latest").resolve() == made[-1]
    again = start_run_folder(cfg, now=1_800_000_000 + 240).outputs.dir  # the same second: a folder of its own
    assert again != made[-1] and again.is_dir() and made[-1].is_dir()
    explicit = validate({"outputs": {"dir": str(tmp_path / "mine")}}, env={}).bind_instance()
    assert start_run_folder(explicit).outputs.dir == tmp_path / "mine"  # no {run}: as it is
