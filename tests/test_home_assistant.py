"""The monitor's entities in a real Home Assistant: discovery, states, and a switch that pauses a camera."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers.broker import Broker
from tests.helpers.home_assistant import HomeAssistant

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def wait(what: str, predicate, timeout: float = 120.0, every: float = 1.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(every)
    pytest.fail(f"timed out waiting for {what}")


def test_entities_appear_and_the_switch_stops_the_camera(
    tmp_path: Path, tiny_vlm: Path, judge_270m: Path, people_video: Path
) -> None:
    pfx = f"t{uuid.uuid4().hex[:6]}"
    broker = Broker(tmp_path / "broker").start()
    ha = HomeAssistant(tmp_path / "ha", broker.port, f"{pfx}-ha")
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[model]
id = "{tiny_vlm}"
max_new_tokens = 8
[judge]
model = "{judge_270m}"
[sampling]
fps = 1
[alerting]
threshold = 0.01
hysteresis = 0.005
[outputs]
status_interval_s = 1
dir = "{tmp_path / "out"}"
[store]
path = "{tmp_path / "events.db"}"
[mqtt]
enabled = true
port = {broker.port}
topic_prefix = "{pfx}"
discovery_prefix = "{pfx}-ha"
outbox = "{tmp_path / "outbox.sqlite"}"
controls = "{tmp_path / "controls.json"}"
[[rules]]
name = "fence"
question = "Does someone climb over the fence?"
threshold = 0.01
[[cameras]]
name = "porch"
url = "{people_video}"
realtime = true
loop = true
"""
    )
    scores = subprocess.Popen(
        ["mosquitto_sub", "-p", str(broker.port), "-t", f"{pfx}/porch/score", "-F", "%U"],
        stdout=subprocess.PIPE,
        text=True,
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = (tmp_path / "monitor.log").open("w")
    monitor = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run", "--config", str(config), "--max-seconds", "600"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        ha.start()
        kinds = ("binary_sensor", "sensor", "event", "camera", "switch", "number", "button")

        def ours() -> dict[str, dict]:
            return {k: v for k, v in ha.states().items() if "porch" in k and k.split(".")[0] in kinds}

        entities = wait("the monitor's entities in Home Assistant", lambda: (e := ours()) and len(e) >= 11 and e)
        by_domain = sorted(k.split(".")[0] for k in entities)
        camera_entities = ["binary_sensor", "sensor", "sensor", "sensor", "event", "camera", "switch", "number"]
        rule_entities = ["binary_sensor", "sensor"]  # the fence rule's
        assert by_domain == sorted([*camera_entities, "button", *rule_entities]), entities
        fence = next(k for k in entities if k.startswith("binary_sensor.") and "fence" in k)
        fence_score = next(k for k in entities if k.startswith("sensor.") and "fence" in k)
        wait("the fence rule's event in its binary sensor", lambda: ha.states()[fence]["state"] == "on")
        assert 0.0 <= float(ha.states()[fence_score]["state"]) <= 1.0
        switch = next(k for k in entities if k.startswith("switch."))
        number = next(k for k in entities if k.startswith("number."))
        wait("the switch on", lambda: ha.states()[switch]["state"] == "on")
        assert float(ha.states()[number]["state"]) == pytest.approx(0.01)
        description = next(k for k in entities if k.startswith("sensor.") and "description" in k)
        wait("a description in its sensor", lambda: ha.states()[description]["state"] not in ("unknown", "unavailable"))
        event = next(k for k in entities if k.startswith("event."))
        wait("an event entity that fired", lambda: ha.states()[event]["state"] not in ("unknown", "unavailable"))
        assert ha.states()[event]["attributes"]["event_type"] in ("new", "end")
        severity = next(k for k in entities if k.startswith("sensor.") and "severity" in k)
        assert ha.states()[severity]["state"] in ("0", "1", "2")

        # Home Assistant's own API turns the camera off; its scores stop
        ha.api("POST", "/api/services/switch/turn_off", {"entity_id": switch})
        wait("the switch off", lambda: ha.states()[switch]["state"] == "off")
        time.sleep(3.0)  # a window already being judged may still come out
        scores.terminate()
        before = scores.communicate(timeout=10)[0].splitlines()
        later = subprocess.Popen(
            ["mosquitto_sub", "-p", str(broker.port), "-t", f"{pfx}/porch/score", "-W", "6"],
            stdout=subprocess.PIPE,
            text=True,
        )
        after = later.communicate(timeout=20)[0].splitlines()
        assert before and not after, f"{len(before)} scores before, {len(after)} after the switch went off"
        assert json.loads((tmp_path / "controls.json").read_text())["porch"]["enabled"] is False

        problems = [
            line
            for line in ha.log.splitlines()
            if ("ERROR" in line or "WARNING" in line) and ("mqtt" in line.lower() or "discovery" in line.lower())
        ]
        assert not problems, "\n".join(problems)
    finally:
        scores.kill()
        monitor.terminate()
        try:
            monitor.wait(60)
        finally:
            log.close()
            ha.stop()
            broker.stop()
    assert monitor.returncode == 0, (tmp_path / "monitor.log").read_text()[-3000:]
