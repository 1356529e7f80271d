"""``monitor run`` as a user runs it: a subprocess on real footage with real Gemma 3 architectures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from tests.helpers.cli import monitor_command
from tests.helpers.media import corrupt_copy, make_clip
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
SECRET = "hf_TESTTOKENdoNotLog123"


def monitor(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        monitor_command(*args),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def plain_config(tmp_path: Path) -> str:
    """A configuration with every default but no MQTT, and its state in the test's folder."""
    cfg = tmp_path / "plain.toml"
    cfg.write_text('[mqtt]\nenabled = false\n[store]\npath = "state/events.sqlite"\n')
    return str(cfg)


def write_config(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


def read_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_run_on_real_footage(tmp_path: Path, tiny_vlm: Path, judge_270m: Path, people_video: Path) -> None:
    cfg = write_config(
        tmp_path / "c.toml",
        """
[sampling]
every_n_frames = 20
[windows]
size = 3
stride = 2
[alerting]
threshold = 0.05
hysteresis = 0.0
cooldown_s = 0
""",
    )
    out = tmp_path / "out"
    r = monitor(
        "run",
        "--config",
        str(cfg),
        "--model",
        str(tiny_vlm),
        "--judge-model",
        str(judge_270m),
        "--source",
        str(people_video),
        "--output",
        str(out),
        env={"HF_TOKEN": SECRET},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert SECRET not in r.stderr + r.stdout
    lines = read_lines(out)
    descs = [x for x in lines if x["kind"] == "description"]
    scores = [x for x in lines if x["kind"] == "score"]
    events = [x for x in lines if x["kind"] == "event"]
    assert [d["frame_index"] for d in descs] == list(range(0, 1394, 20))
    assert all(d["camera"] == "one-by-one-person-detection" and d["text"] for d in descs)
    assert descs[-1]["stream_time"] == pytest.approx(138.0, abs=0.2)
    assert len(scores) == 35 and all(0.0 <= s["score"] <= 1.0 for s in scores)
    assert [s["end_time"] for s in scores][:2] == pytest.approx([4.0, 8.0], abs=0.2)
    assert all(len(s["descriptions"]) == 3 for s in scores)
    # the threshold is below anything the judge says: one event from the first window to the end
    assert events[0]["type"] == "new" and events[0]["before"] is None
    (ended,) = [e for e in events if e["type"] == "end"]
    assert ended["after"]["end_time"] == pytest.approx(138.0, abs=0.2)
    assert events[-1]["type"] == "update" and events[-1]["after"]["clip"]  # its clip, named once written
    assert any(e["type"] == "update" and e["after"]["explanation"] for e in events)
    snap = out / events[0]["after"]["snapshot"]
    with Image.open(snap) as im:
        assert im.format == "JPEG" and im.size == (768, 432)
    assert "ANOMALY on one-by-one-person-detection" in r.stderr


def test_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    r = monitor("run", "--config", plain_config(tmp_path), "--source", str(tmp_path / "nope.mp4"), "--model", "x")
    assert r.returncode == 2
    errors = [ln for ln in r.stderr.splitlines() if "ERROR" in ln or ln.startswith("error:")]
    assert any("nope.mp4" in ln and "file not found" in ln for ln in errors), r.stderr
    assert "Traceback" not in r.stderr


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.toml", "[windows]\nsize = 3\nstrde = 1\n")
    r = monitor("run", "--config", str(cfg))
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: {cfg}: windows.strde: unknown key"
    r = monitor("run", "--config", str(tmp_path / "absent.toml"))
    assert r.returncode == 2 and "absent.toml: file not found" in r.stderr


def test_missing_model_says_what_to_do(tmp_path: Path, clip: Path) -> None:
    r = monitor("run", "--config", plain_config(tmp_path), "--source", str(clip), "--model", str(tmp_path / "no-model"))
    assert r.returncode == 2
    assert "cannot load model" in r.stderr and "no such directory" in r.stderr and "Traceback" not in r.stderr


def test_uncached_hub_model_offline_says_what_to_do(clip: Path, tmp_path: Path) -> None:
    r = monitor(
        "run",
        "--config",
        plain_config(tmp_path),
        "--source",
        str(clip),
        "--model",
        "google/gemma-3-4b-it",
        env={"HF_HUB_OFFLINE": "1"},
    )
    assert r.returncode == 2
    (line,) = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert "cannot load model 'google/gemma-3-4b-it'" in line
    assert "hf download google/gemma-3-4b-it --local-dir DIR" in line


def test_corrupt_file_beside_a_good_one(tmp_path: Path, tiny_vlm: Path) -> None:
    good = make_clip(tmp_path / "good.mp4", seconds=2)
    bad = corrupt_copy(good, tmp_path / "bad.mp4")
    out = tmp_path / "out"
    r = monitor(
        "run",
        "--config",
        plain_config(tmp_path),
        "--model",
        str(tiny_vlm),
        "--source",
        str(bad),
        "--source",
        str(good),
        "--output",
        str(out),
    )
    assert r.returncode == 1, r.stderr[-2000:]
    assert any("bad.mp4" in ln and "ERROR" in ln for ln in r.stderr.splitlines())
    descs = [x for x in read_lines(out) if x["kind"] == "description"]
    assert {d["camera"] for d in descs} == {"good"} and len(descs) == 2


def test_sigterm_shuts_down_cleanly(tmp_path: Path, tiny_vlm: Path) -> None:
    """SIGTERM: the open event ends, everything is flushed, exit status 0, no ERROR line for the work the
    stop itself cancelled (how long it takes is measured by benchmarks, not asserted here)."""
    clip = make_clip(tmp_path / "c.mp4", seconds=3)
    cfg = write_config(
        tmp_path / "c.toml",
        f"""
[alerting]
threshold = 0.01
hysteresis = 0.0
[[cameras]]
name = "sim"
url = "{clip}"
realtime = true
loop = true
[cameras.sampling]
every_n_frames = 2
""",
    )
    out = tmp_path / "out"
    proc = subprocess.Popen(
        monitor_command("run", "--config", cfg, "--model", tiny_vlm, "--output", out),
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        results = out / "results.jsonl"
        eventually(lambda: results.exists() and '"kind": "score"' in results.read_text(), what="a first score")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-2000:]
    assert " ERROR " not in err and "Traceback" not in err, err[-2000:]
    events = [x for x in read_lines(out) if x["kind"] == "event"]
    # the open event was closed (an explanation may still have come in an update)
    assert [e["type"] for e in events if e["type"] != "update"] == ["new", "end"]
