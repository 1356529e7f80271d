"""Fault suite, bad input: configurations, media files, paths, models and MQTT messages, hand-made and
fuzzed. Each is a clear one-line error with the documented exit status, or a warning and the right
handling; never a hang, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from monitor.cli import main
from monitor.console.feed import ConsoleFeed, MqttDecoder, ScorePoint
from sinks.event_store import EventStore
from tests.helpers.cli import monitor_command
from tests.helpers.media import corrupt_copy, make_clip

ROOT = Path(__file__).resolve().parent.parent

CONFIGS: list[tuple[str, str, str]] = [
    # (case, TOML, the key the one-line error must name)
    ("wrong type", '[model]\nmax_batch = "lots"', "model.max_batch"),
    ("zero batch", "[model]\nmax_batch = 0", "model.max_batch"),
    ("absurd batch", "[model]\nmax_batch = 1000000000", "model.max_batch"),
    ("negative fps", "[sampling]\nfps = -1", "sampling.fps"),
    ("nan fps", "[sampling]\nfps = nan", "sampling.fps"),
    ("stride over size", "[windows]\nsize = 2\nstride = 3", "windows"),
    ("threshold over 1", "[alerting]\nthreshold = 1.5", "alerting.threshold"),
    ("hysteresis over threshold", "[alerting]\nthreshold = 0.3\nhysteresis = 0.4", "alerting"),
    ("prompt without placeholder", '[judge]\nprompt = "no placeholder"', "judge.prompt"),
    ("unknown placeholder", '[judge]\nprompt = "{descriptions} {oops}"', "judge.prompt"),
    ("one answer", '[judge]\nanswers = ["yes"]', "judge.answers"),
    ("repeated answers", '[judge]\nanswers = ["yes", "yes"]', "judge.answers"),
    ("bad camera name", '[[cameras]]\nname = "bad name"\nurl = "x.mp4"', "cameras.0.name"),
    ("empty url", '[[cameras]]\nname = "a"\nurl = ""', "cameras.0.url"),
    ("repeated camera", '[[cameras]]\nname = "a"\nurl = "1"\n[[cameras]]\nname = "a"\nurl = "2"', "cameras"),
    ("unknown camera key", '[[cameras]]\nname = "a"\nurl = "x"\nfsp = 2', "cameras.0.fsp"),
    ("unknown section", "[modle]\nid = 1", "modle"),
    ("port out of range", "[mqtt]\nport = 70000", "mqtt.port"),
    ("password without user", '[mqtt]\npassword = "hunter2-very-secret"', "mqtt"),
    ("wildcard in prefix", '[mqtt]\ntopic_prefix = "a/#"', "mqtt.topic_prefix"),
    ("server backend without server", '[model]\nbackend = "openai"', "model"),
    ("unknown backend", '[model]\nbackend = "nope"', "model.backend"),
    (
        "server url not http",
        '[model]\nbackend = "openai"\n[model.openai]\nbase_url = "ftp://x/v1"\nmodel = "m"',
        "model.openai.base_url",
    ),
    ("missing environment variable", '[[cameras]]\nname = "a"\nurl = "rtsp://u:${NOPE_NOT_SET}@h/x"', "cameras.0.url"),
    ("calibration file missing", '[judge]\ncalibration = "missing.json"', "judge.calibration"),
    ("tls file missing", '[mqtt]\nenabled = true\n[mqtt.tls]\nca_file = "missing.pem"', "mqtt.tls.ca_file"),
    ("log level", 'log_level = "LOUD"', "log_level"),
    ("zero status interval", "[outputs]\nstatus_interval_s = 0", "outputs.status_interval_s"),
    (
        "camera fps too high",
        '[[cameras]]\nname = "a"\nurl = "x"\n[cameras.sampling]\nfps = 500',
        "cameras.0.sampling.fps",
    ),
    (
        "camera overrides a global-only key",
        '[[cameras]]\nname = "a"\nurl = "x"\n[cameras.judge]\nmodel = "m"',
        "cameras.0.judge.model",
    ),
    ("instance name", 'instance = "a b"', "instance"),
    ("cameras not a list", 'cameras = "lobby"', "cameras"),
    ("table where a value goes", "[model]\n[model.max_batch]\nx = 1", "model.max_batch"),
    ("judge on a server with a calibration", '[judge]\nbackend = "openai"', "judge.openai"),
    ("number as text", '[model]\nmax_batch = "8"', "model.max_batch"),
    ("switch as text", '[mqtt]\nenabled = "yes"', "mqtt.enabled"),
    ("stream URL without a host", '[[cameras]]\nname = "a"\nurl = "rtsp://"', "cameras.0.url"),
    ("unknown URL scheme", '[[cameras]]\nname = "a"\nurl = "ftp://h/x.mp4"', "cameras.0.url"),
    ("URL port out of range", '[[cameras]]\nname = "a"\nurl = "rtsp://h:99999/x"', "cameras.0.url"),
    ("camera file missing", '[[cameras]]\nname = "a"\nurl = "missing.mp4"', "cameras.0.url"),
]


@pytest.mark.parametrize(("case", "toml", "key"), CONFIGS, ids=[c[0] for c in CONFIGS])
def test_bad_configuration(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, toml: str, key: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    assert main(["check-config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and all(line.startswith(f"error: {cfg}: ") for line in err), err
    assert any(line.startswith(f"error: {cfg}: {key}: ") for line in err), err
    assert "Traceback" not in "\n".join(err) and "hunter2" not in "\n".join(err)


@pytest.mark.parametrize(
    ("case", "data", "message"),
    [
        ("invalid TOML", b"[model\nid = 1", "invalid TOML"),
        ("not UTF-8", b"[model]\nid = '\xff\xfe'", "not UTF-8"),
        ("a folder", None, "cannot read"),
        ("nested 3000 deep", b"a = " + b"[" * 3000 + b"]" * 3000, "nested too deep"),
        ("inline tables 3000 deep", b"a = " + b"{b = " * 3000 + b"1" + b"}" * 3000, "nested too deep"),
    ],
)
def test_unreadable_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, data: bytes | None, message: str
) -> None:
    cfg = tmp_path / "c.toml"
    if data is None:
        cfg.mkdir()
    else:
        cfg.write_bytes(data)
    assert main(["check-config", str(cfg)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {cfg}: ") and message in line


def _media(tmp_path: Path, case: str) -> Path:
    """Build the media file of one case."""
    good = make_clip(tmp_path / "good.mp4", seconds=2, fps=10)
    if case == "zero bytes":
        (p := tmp_path / "empty.mp4").write_bytes(b"")
    elif case == "truncated (index at the end)":
        (p := tmp_path / "cut.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif case == "truncated (index first)":
        fast = tmp_path / "fast.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(good), "-c", "copy", "-movflags", "+faststart", str(fast)])
        (p := tmp_path / "cut-fast.mp4").write_bytes(fast.read_bytes()[: fast.stat().st_size // 2])
    elif case == "corrupt":
        p = corrupt_copy(make_clip(tmp_path / "long.mp4", seconds=4), tmp_path / "corrupt.mp4")
    elif case == "text file":
        (p := tmp_path / "notes.mp4").write_text("this is not a video\n" * 100)
    elif case == "audio only":
        p = tmp_path / "sound.wav"
        with wave.open(str(p), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(np.zeros(8000, np.int16).tobytes())
    elif case == "8K":
        p = make_clip(tmp_path / "8k.mp4", seconds=0.3, fps=10, size=(7680, 4320))
    elif case in ("resolution change", "timestamps restart"):
        sizes = [(160, 96), (320, 192)] if case == "resolution change" else [(160, 96), (160, 96)]
        parts = []
        for i, size in enumerate(sizes):
            part = make_clip(tmp_path / f"part{i}.mp4", seconds=2, fps=10, size=size)
            ts = tmp_path / f"part{i}.ts"
            subprocess.run(["ffmpeg", "-v", "error", "-i", str(part), "-c", "copy", str(ts)], check=True)
            parts.append(ts.read_bytes())
        (p := tmp_path / f"{case.replace(' ', '-')}.ts").write_bytes(b"".join(parts))  # spliced, as cameras do
    elif case == "a folder":
        (p := tmp_path / "folder.mp4").mkdir()
    elif case == "missing":
        p = tmp_path / "nowhere.mp4"
    elif case == "spaces in the path":
        (tmp_path / "my videos").mkdir()
        p = make_clip(tmp_path / "my videos" / "front door.mp4", seconds=2)
    else:
        raise AssertionError(case)
    return p


MEDIA = [
    # (case, exit status, a phrase of the one line that says what happened)
    ("zero bytes", 1, "cannot open"),
    ("truncated (index at the end)", 1, "not a video, or damaged"),
    ("truncated (index first)", 0, "truncated or damaged"),
    ("corrupt", 1, "not a video, or damaged"),
    ("text file", 1, "not a video, or damaged"),
    ("audio only", 1, "no video stream"),
    ("8K", 0, ""),
    ("resolution change", 0, ""),
    ("timestamps restart", 0, ""),
    ("a folder", 2, "is a directory"),
    ("missing", 2, "file not found"),
    ("spaces in the path", 0, ""),
]


@pytest.mark.slow
@pytest.mark.parametrize(("case", "code", "phrase"), MEDIA, ids=[m[0] for m in MEDIA])
def test_bad_media(tmp_path: Path, tiny_vlm: Path, case: str, code: int, phrase: str) -> None:
    path = _media(tmp_path, case)
    out = tmp_path / "out"
    r = subprocess.run(
        monitor_command("run", "--model", tiny_vlm, "--source", path, "--output", out),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == code, r.stderr[-2000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    if phrase:
        assert phrase in r.stderr, r.stderr[-2000:]
    if code == 0:
        described = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
        stream = [d["stream_time"] for d in described if d["kind"] == "description"]
        assert stream and stream == sorted(stream)
        if case == "timestamps restart":
            assert stream[-1] > 3.0  # the second part's clock went on from the first's, not back to 0


@pytest.mark.slow
def test_a_path_that_is_not_utf8(tmp_path: Path, tiny_vlm: Path) -> None:
    clip = make_clip(tmp_path / "c.mp4", seconds=1)
    odd = Path(str(tmp_path) + "/caf\udce9.mp4")
    odd.write_bytes(clip.read_bytes())
    r = subprocess.run(
        monitor_command("run", "--model", tiny_vlm, "--source", odd),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=300,
    )
    assert r.returncode == 2 and "not valid UTF-8" in r.stderr and "Traceback" not in r.stderr


MODELS = [
    ("no such folder", lambda tmp, m: str(tmp / "missing"), "no such directory"),
    ("no config.json", lambda tmp, m: str(tmp), "no config.json"),
    ("a text model as the VLM", lambda tmp, m: str(m / "gemma3-270m"), "cannot describe images"),
    ("a config.json that is not JSON", lambda tmp, m: _junk_model(tmp), "cannot load model"),
    ("a hub id, offline", lambda tmp, m: "google/gemma-3-4b-it", "hf download"),
]


def _junk_model(tmp: Path) -> str:
    (tmp / "junk").mkdir()
    (tmp / "junk" / "config.json").write_text("{not json")
    return str(tmp / "junk")


@pytest.mark.slow
@pytest.mark.parametrize(("case", "model", "phrase"), MODELS, ids=[m[0] for m in MODELS])
def test_wrong_models(tmp_path: Path, models_dir: Path, case: str, model, phrase: str) -> None:  # type: ignore[no-untyped-def]
    clip = make_clip(tmp_path / "c.mp4", seconds=1)
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(
        monitor_command("run", "--model", model(tmp_path, models_dir), "--source", clip),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 2, r.stderr[-2000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and phrase in errors[0], r.stderr[-2000:]
    assert "Traceback" not in r.stderr


GOOD_SCORE = {"camera": "c", "wall_time": 1.7e9, "score": 0.5, "descriptions": ["x"]}


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


MQTT = [
    ("score", "nested deeply", _nested(100_000)),
    ("score", "huge", b'{"x": "' + b"a" * 400_000 + b'"}'),
    ("score", "not JSON", b"{not json"),
    ("score", "binary", bytes(range(256))),
    ("score", "empty", b""),
    ("score", "a list", b"[1, 2, 3]"),
    ("score", "score as text", json.dumps({**GOOD_SCORE, "score": "high"}).encode()),
    ("score", "score out of range", json.dumps({**GOOD_SCORE, "score": 7}).encode()),
    ("score", "time far in the future", json.dumps({**GOOD_SCORE, "wall_time": 1e18}).encode()),
    ("score", "negative time", json.dumps({**GOOD_SCORE, "wall_time": -5}).encode()),
    ("score", "NaN time", b'{"camera": "c", "wall_time": NaN, "score": 0.5}'),
    ("score", "descriptions as a mapping", json.dumps({**GOOD_SCORE, "descriptions": {"a": 1}}).encode()),
    ("status", "empty object", b"{}"),
    ("status", "fps as text", json.dumps({"wall_time": 1.8e9, "fps": "fast", "frames_dropped": 0}).encode()),
    ("snapshot", "not a JPEG", b"GIF89a..."),
    ("snapshot", "too large", b"\xff\xd8" + b"\0" * (9 * 1024 * 1024)),
    ("events", "unknown type", json.dumps({"type": "boom", "after": {}}).encode()),
    ("events", "no after", json.dumps({"type": "new"}).encode()),
    (
        "events",
        "start in year 31 billion",
        json.dumps(
            {"type": "new", "after": {"id": "e", "camera": "c", "start": 1e18, "peak_score": 0.5, "score": 0.5}}
        ).encode(),
    ),
    (
        "events",
        "camera name with a path",
        json.dumps(
            {"type": "new", "after": {"id": "e", "camera": "../../x", "start": 1.8e9, "peak_score": 0.5, "score": 0.5}}
        ).encode(),
    ),
]


@pytest.mark.parametrize(("kind", "case", "payload"), MQTT, ids=[f"{m[0]}: {m[1]}" for m in MQTT])
def test_malformed_mqtt_messages_are_counted_and_ignored(kind: str, case: str, payload: bytes) -> None:
    feed = ConsoleFeed()
    decoder = MqttDecoder("llmvad", feed)
    topic = {"events": "llmvad/events", "score": "llmvad/c/rules/anomaly/score"}.get(kind, f"llmvad/c/{kind}")
    assert decoder.decode(topic, payload) == []
    assert feed.malformed == 1
    good = json.dumps(GOOD_SCORE).encode()
    assert decoder.decode("llmvad/c/rules/anomaly/score", good) == [ScorePoint("c", 1.7e9, 0.5, "x")]


def test_endless_new_camera_names_are_bounded(qtbot) -> None:  # type: ignore[no-untyped-def]
    from monitor.console.window import ConsoleWindow

    feed = ConsoleFeed()
    decoder = MqttDecoder("llmvad", feed)
    window = ConsoleWindow(feed, refresh_ms=10_000)
    qtbot.addWidget(window)
    for i in range(300):
        for item in decoder.decode(
            f"llmvad/cam{i}/rules/anomaly/score", json.dumps({**GOOD_SCORE, "camera": f"cam{i}"}).encode()
        ):
            feed.push(item)
    window.pump()
    assert len(window.panels) == window.max_cameras == 64
    assert feed.malformed == 300 - 64  # the rest were counted, not shown


def _odd_source(tmp_path: Path, case: str) -> str:
    """The ``--source`` argument of one case."""
    if case == "a FIFO":
        os.mkfifo(tmp_path / "pipe.mp4")
        return str(tmp_path / "pipe.mp4")
    if case == "a symlink loop":
        (tmp_path / "a.mp4").symlink_to(tmp_path / "b.mp4")
        (tmp_path / "b.mp4").symlink_to(tmp_path / "a.mp4")
        return str(tmp_path / "a.mp4")
    if case == "a name over 255 bytes":
        return str(tmp_path / ("n" * 300 + ".mp4"))
    if case == "a path over 4096 bytes":
        return str(tmp_path / ("d/" * 2100) / "x.mp4")
    return {"a device": "/dev/zero", "standard input": "-", "a file URL": f"file://{tmp_path}/gone.mp4"}.get(case, case)


ARGUMENTS = [
    # (case, the arguments after `run`, a phrase of the one error line)
    ("instance with MQTT wildcards", ["--instance", "a/b/#", "--source", "x.mp4"], "--instance 'a/b/#'"),
    ("max seconds nan", ["--max-seconds", "nan", "--source", "x.mp4"], "--max-seconds nan"),
    ("max seconds inf", ["--max-seconds", "inf", "--source", "x.mp4"], "--max-seconds inf"),
    ("max seconds 1e308", ["--max-seconds", "1e308", "--source", "x.mp4"], "--max-seconds 1e+308"),
    ("empty source", ["--source", ""], "--source '': empty"),
    ("unknown scheme", ["--source", "foo://x"], "unknown URL scheme 'foo://'"),
    ("stream URL without a host", ["--source", "rtsp://"], "names no host"),
    ("port out of range", ["--source", "rtsp://u:hunter2pw@h:99999/x"], "port is out of range"),
]
SOURCES = [
    # (case, what the line about the camera says)
    ("a FIFO", "is a named pipe (FIFO), not a video file"),
    ("a device", "is a device, not a video file"),
    ("a symlink loop", "a loop of symbolic links"),
    ("standard input", "standard input cannot be a source"),
    ("a file URL", "gone.mp4: file not found"),
    ("a name over 255 bytes", "path too long"),
    ("a path over 4096 bytes", "path too long"),
]


@pytest.mark.parametrize(("case", "args", "phrase"), ARGUMENTS, ids=[a[0] for a in ARGUMENTS])
def test_bad_arguments(tmp_path: Path, case: str, args: list[str], phrase: str) -> None:
    r = subprocess.run(monitor_command("run", *args), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: ") and phrase in line, line
    assert "hunter2" not in r.stderr


@pytest.mark.parametrize(("case", "phrase"), SOURCES, ids=[s[0] for s in SOURCES])
def test_sources_that_are_not_video_files(tmp_path: Path, case: str, phrase: str) -> None:
    source = _odd_source(tmp_path, case)
    r = subprocess.run(
        monitor_command("run", "--source", source, "--output", tmp_path / "out"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2, r.stderr[-2000:]
    errors = [line for line in r.stderr.splitlines() if "ERROR" in line or line.startswith("error: ")]
    assert len(errors) == 2 and phrase in errors[0], r.stderr[-2000:]  # why, then "none can be read"
    assert errors[1] == "error: none of the sources can be read"
    assert "Traceback" not in r.stderr and len(r.stderr) < 2000  # a long path is shown short


@pytest.mark.parametrize(
    ("since", "phrase"), [("1000000d", "before 1970"), ("nan", "not a number"), ("1e400d", "cannot read")]
)
def test_summary_periods_out_of_range(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], since: str, phrase: str
) -> None:
    from monitor.live.summary import parse_request

    with pytest.raises(ValueError, match=phrase):  # asked over MQTT: the answer's error says it
        parse_request(json.dumps({"since": since}).encode(), ["door"])
    db = tmp_path / "events.sqlite"
    EventStore(db).close()
    assert main(["summarize", "--db", str(db), "--since", since]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and phrase in line and since in line


async def test_a_stream_that_never_connects_fails_the_run(tmp_path: Path) -> None:
    """A live camera that delivered no frame in the whole run is a source that could not be read (exit 1),
    unlike one that had outages."""
    from monitor.config import validate
    from monitor.live.monitor import Monitor
    from tests.helpers.broker import free_port
    from tests.helpers.fakes import FakeModel, fake_engine

    clip = make_clip(tmp_path / "c.mp4", seconds=2, fps=10)
    cameras = [
        {"name": "gone", "url": f"rtsp://127.0.0.1:{free_port()}/x", "reconnect_initial_s": 0.2},
        {"name": "door", "url": str(clip), "realtime": True, "loop": True},
    ]
    cfg = validate({"cameras": cameras, "store": {"enabled": False}}, env={})
    summary = await Monitor(cfg, models=fake_engine(FakeModel(), cfg), sinks=[], max_seconds=3).run()
    (failed,) = summary.failed
    assert failed.camera == "gone" and failed.source_error is not None
    assert failed.source_error.startswith("never connected: ")
