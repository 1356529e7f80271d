"""``monitor batch``, ``monitor report`` and LLMVAD compatibility."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.offline.llmvad_compat import UnsafePickleError, load_plain_pickle
from tests.helpers.cli import monitor_command
from tests.helpers.media import corrupt_copy, make_clip
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def batch(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(monitor_command("batch", *args), capture_output=True, text=True, cwd=ROOT, timeout=timeout)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "videos"
    (d / "night").mkdir(parents=True)
    make_clip(d / "a.mp4", seconds=4, static_until=2)
    make_clip(d / "night" / "b.mkv", seconds=3)
    make_clip(d / "c.avi", seconds=3, codec="mpeg4")
    corrupt_copy(d / "a.mp4", d / "broken.mp4")
    (d / "notes.txt").write_text("not a video")
    return d


@pytest.fixture
def config(tmp_path: Path) -> Path:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[windows]\nsize = 3\nstride = 2\n[alerting]\nthreshold = 0.01\nhysteresis = 0.0\n")
    return cfg


def test_batch_over_a_folder(folder: Path, config: Path, tiny_vlm: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = batch(str(folder), "--config", str(config), "--model", str(tiny_vlm), "--output", str(out), "--pickle")
    assert r.returncode == 1, r.stderr[-2000:]  # one video failed
    assert "3 videos processed" in r.stderr and "1 failed" in r.stderr
    assert "failed: broken.mp4: cannot open" in r.stderr
    assert [ln for ln in r.stderr.splitlines() if "broken.mp4" in ln and "ERROR" in ln].__len__() == 1
    summary = json.loads((out / "batch_summary.json").read_text())
    assert {v["video"]: v["status"] for v in summary["videos"]} == {
        "a.mp4": "done",
        "night/b.mkv": "done",
        "c.avi": "done",
        "broken.mp4": "failed",
    }
    a = json.loads((out / "a.json").read_text())
    assert a["complete"] and a["frames"] == 40 and a["fps"] == 10 and a["duration"] == 4.0
    assert [d["frame_index"] for d in a["descriptions"]] == [0, 10, 20, 30]
    assert [d["time"] for d in a["descriptions"]] == [0.0, 1.0, 2.0, 3.0]
    assert [(w["start_time"], w["end_time"]) for w in a["windows"]] == [(0.0, 2.0), (1.0, 3.0)]  # + the tail
    assert a["windows"][0]["summary"] == " ".join(a["windows"][0]["descriptions"])
    assert a["events"] and (out / a["events"][0]["snapshot"]).read_bytes()[:2] == b"\xff\xd8"
    assert (out / "a.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "night" / "b.json").is_file() and (out / "night" / "b.png").is_file()
    assert not list(out.rglob("notes*")) and not (out / "broken.json").exists()
    # LLMVAD's pickles, read back only through the restricted unpickler
    descs = load_plain_pickle(out / "a_frame_descriptions.pkl")
    assert descs == [d["text"] for d in a["descriptions"]]
    assert load_plain_pickle(out / "a_chunked_summaries.pkl") == [w["summary"] for w in a["windows"]]
    assert load_plain_pickle(out / "a_anomaly_scores.pkl") == [w["score"] for w in a["windows"]]
    # the HTML report: one self-contained page
    from monitor.cli import main

    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "data:image/jpeg;base64," in page
    assert "night/b.mkv" in page and "broken.mp4" in page  # listed under Failed


def test_resume_after_an_interruption(folder: Path, config: Path, tiny_vlm: Path, tmp_path: Path) -> None:
    (folder / "broken.mp4").unlink()
    for i in range(3):
        make_clip(folder / f"more{i}.mp4", seconds=6)
    out = tmp_path / "out"
    args = [
        sys.executable,
        "-m",
        "monitor",
        "batch",
        str(folder),
        "--config",
        str(config),
        "--model",
        str(tiny_vlm),
        "--output",
        str(out),
        "--parallel",
        "1",
    ]
    proc = subprocess.Popen(args, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    eventually(lambda: list(out.rglob("*.json")), what="a first video's outputs")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted: run the same command again to continue" in err
    first = sorted(p for p in out.rglob("*.json") if p.name != "batch_summary.json")
    assert 1 <= len(first) < 6
    stamps = {p: p.stat().st_mtime_ns for p in first}
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"{len(first)} already done" in r.stderr
    results = sorted(p for p in out.rglob("*.json") if p.name != "batch_summary.json")
    assert len(results) == 6
    assert all(p.stat().st_mtime_ns == stamps[p] for p in first)  # done videos were not redone
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "all 6 videos are already done" in r.stderr
    # changed settings: everything is redone
    config.write_text(config.read_text().replace("size = 3\nstride = 2", "size = 2\nstride = 1"))
    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "6 videos processed" in r.stderr


class _Evil:
    def __reduce__(self) -> tuple:
        return (os.system, ("touch /tmp/llmvad-pwned",))


def test_malicious_pickles_are_refused(tmp_path: Path) -> None:
    marker = Path("/tmp/llmvad-pwned")
    marker.unlink(missing_ok=True)
    evil = tmp_path / "x_anomaly_scores.pkl"
    evil.write_bytes(pickle.dumps([0.1, _Evil()]))
    with pytest.raises(UnsafePickleError, match=r"(posix|os)\.system"):
        load_plain_pickle(evil)
    assert not marker.exists()
    import numpy as np

    (tmp_path / "np.pkl").write_bytes(pickle.dumps([np.float32(0.5)]))
    with pytest.raises(UnsafePickleError, match="numpy"):
        load_plain_pickle(tmp_path / "np.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"\x80\x04garbage")
    with pytest.raises(UnsafePickleError, match="not a readable pickle"):
        load_plain_pickle(tmp_path / "junk.pkl")
    (tmp_path / "ok.pkl").write_bytes(pickle.dumps({"a": [1, 2.5, "x", None, True]}))
    assert load_plain_pickle(tmp_path / "ok.pkl") == {"a": [1, 2.5, "x", None, True]}


def test_a_folder_of_labelled_clips_gives_video_labels(tmp_path: Path, tiny_vlm: Path) -> None:
    """``calibrate-judge DIR --video-labels`` reads ``monitor batch``'s results of clips kept in ``normal/``
    and other folders: each description labelled with its clip's folder."""
    from monitor.offline.judge_eval import read_batch_labelled

    clips = tmp_path / "clips"
    (clips / "normal").mkdir(parents=True)
    (clips / "Incident").mkdir()
    make_clip(clips / "normal" / "hall.mp4", seconds=2)
    make_clip(clips / "Incident" / "door.mp4", seconds=2)
    out = tmp_path / "out"
    r = batch(str(clips), "--model", str(tiny_vlm), "--output", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    items = read_batch_labelled(out)
    assert {(it.video, it.label) for it in items} == {("normal/hall.mp4", 0), ("Incident/door.mp4", 1)}
    assert all(it.text for it in items)
    refused = subprocess.run(
        monitor_command("calibrate-judge", out), capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert refused.returncode == 2 and "add --video-labels" in refused.stderr
