"""Security: secrets never leave the process in logs, events, status, the store or the outbox; what the
monitor writes is its owner's alone (or its group's, when configured)."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers.broker import Broker
from tests.helpers.cli import monitor_command
from tests.helpers.rtsp import RtspServer
from tests.helpers.subscriber import Subscriber
from tests.helpers.waiting import eventually

pytestmark = pytest.mark.slow
CAMERA_PASSWORD = "cam-pw-9f3k2"
MQTT_PASSWORD = "mqtt-pw-7q1x8"
HF_TOKEN = "hf_tokenvalue4d8s1"
SECRETS = (CAMERA_PASSWORD, MQTT_PASSWORD, HF_TOKEN)


def _run(tmp_path: Path, rtsp: RtspServer, broker: Broker, pfx: str, extra: str = "") -> tuple[str, Path, Path]:
    state, out = tmp_path / "state", tmp_path / "out"
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"""
{extra}
[alerting]
threshold = 0.01
hysteresis = 0.0
[windows]
size = 1
stride = 1
[outputs]
status_interval_s = 0.5
[mqtt]
enabled = true
port = {broker.port}
topic_prefix = "{pfx}"
username = "monitor"
password = "${{MQTT_PASSWORD}}"
outbox = "{state}/outbox.sqlite"
[store]
path = "{state}/events.sqlite"
[[cameras]]
name = "door"
url = "rtsp://viewer:${{CAM_PASSWORD}}@127.0.0.1:{rtsp.port}/test"
read_timeout_s = 2
[cameras.sampling]
fps = 2
motion_gate = false
""")
    env = {**os.environ, "CAM_PASSWORD": CAMERA_PASSWORD, "MQTT_PASSWORD": MQTT_PASSWORD, "HF_TOKEN": HF_TOKEN}
    model = Path(__file__).resolve().parent.parent / ".models" / "tiny-gemma3-vlm"
    cmd = monitor_command("run", "--config", cfg, "--model", model, "--output", out)
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    results = out / "results.jsonl"
    eventually(lambda: results.exists() and '"kind": "event"' in results.read_text(), what="a first event")
    rtsp.stop()  # an outage, so reconnect messages and status errors are produced too
    time.sleep(3)
    rtsp.start()
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    return err, state, out


def test_secrets_never_leave_the_process(tmp_path: Path, rtsp_server: RtspServer, tiny_vlm: Path) -> None:
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "monitor", MQTT_PASSWORD], check=True)
    broker = Broker(tmp_path / "broker", anonymous=False, extra=f"password_file {passwd}\n").start()
    pfx = f"t{uuid.uuid4().hex[:8]}"

    async def listen() -> tuple[list[bytes], tuple[str, Path, Path]]:
        async with Subscriber(broker.port, [f"{pfx}/#"], username="monitor", password=MQTT_PASSWORD) as sub:
            result = await asyncio.to_thread(_run, tmp_path, rtsp_server, broker, pfx)
            await asyncio.sleep(1.0)
            return [m.payload for m in sub.messages] + [m.topic.encode() for m in sub.messages], result

    try:
        mqtt, (log, state, out) = asyncio.run(listen())
    finally:
        broker.stop()
    assert "reconnected after" in log and "viewer:***@" in log  # the URL was logged, masked
    places = {"log": log.encode(), "MQTT": b"\n".join(mqtt)}
    for path in [*state.rglob("*"), *out.rglob("*")]:
        if path.is_file():
            places[str(path)] = path.read_bytes()
    assert any(b'"kind": "event"' in v for v in places.values())
    for where, data in places.items():
        for secret in SECRETS:
            assert secret.encode() not in data, f"{secret} in {where}"

    # what it wrote is its owner's alone: no group or other bits on files and folders
    for path in [state, out, *state.rglob("*"), *out.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path}: {oct(mode)}"


def test_group_readable_when_configured(tmp_path: Path, tiny_vlm: Path) -> None:
    from tests.helpers.media import make_clip

    clip = make_clip(tmp_path / "c.mp4", seconds=2)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[outputs]\ngroup_readable = true\n[store]\npath = "{tmp_path}/state/events.sqlite"\n')
    out = tmp_path / "out"
    cmd = monitor_command("run", "--config", cfg, "--model", tiny_vlm)
    r = subprocess.run(
        [*cmd, "--source", str(clip), "--output", str(out)], cwd=tmp_path, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr[-2000:]
    written = [out, tmp_path / "state", *out.rglob("*"), *(tmp_path / "state").rglob("*")]
    assert len(written) > 3
    for path in written:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o007 == 0 and mode & 0o040, f"{path}: {oct(mode)}"  # the group reads, others do not
