"""The monitor's entities in a real Home Assistant: discovery, states, every rule's threshold and switch, and a
switch that pauses a camera."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers.broker import Broker
from tests.helpers.cli import monitor_command
from tests.helpers.home_assistant import HomeAssistant
from tests.helpers.waiting import eventually

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def wait(what: str, predicate, timeout: float = 120.0, every: float = 1.0):  # type: ignore[no-untyped-def]
    return eventually(predicate, what=what, timeout=timeout, every=every)


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
[cameras.alerting]
threshold = 0.02
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
        monitor_command("run", "--config", config, "--max-seconds", 600),
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

        entities = wait("the monitor's entities in Home Assistant", lambda: (e := ours()) and len(e) >= 14 and e)
        by_domain = sorted(k.split(".")[0] for k in entities)
        camera_entities = ["sensor", "sensor", "event", "camera", "switch", "button"]
        rule_entities = ["binary_sensor", "sensor", "switch", "number"]  # each rule's: the general one, fence
        assert by_domain == sorted([*camera_entities, *rule_entities, *rule_entities]), entities

        def entity(domain: str, *words: str, but: str = "\0") -> str:
            return next(
                k for k in entities if k.startswith(f"{domain}.") and all(w in k for w in words) and but not in k
            )

        fence = entity("binary_sensor", "fence")
        fence_score = entity("sensor", "fence")
        wait("the fence rule's event in its binary sensor", lambda: ha.states()[fence]["state"] == "on")
        assert 0.0 <= float(ha.states()[fence_score]["state"]) <= 1.0
        switch = entity("switch", "enabled")
        number = entity("number", "monitor_anomaly")
        fence_number, fence_switch = entity("number", "fence"), entity("switch", "fence")
        wait("the switch on", lambda: ha.states()[switch]["state"] == "on")
        # the camera's own threshold, not [alerting]'s; the fence rule's as configured
        assert float(ha.states()[number]["state"]) == pytest.approx(0.02)
        assert float(ha.states()[fence_number]["state"]) == pytest.approx(0.01)

        # Home Assistant changes the second rule's threshold, then pauses that rule: the monitor obeys, says so
        ha.api("POST", "/api/services/number/set_value", {"entity_id": fence_number, "value": 0.5})
        wait("the fence threshold changed", lambda: float(ha.states()[fence_number]["state"]) == pytest.approx(0.5))
        assert json.loads((tmp_path / "controls.json").read_text())["porch"]["rules"]["fence"] == {"threshold": 0.5}
        ha.api("POST", "/api/services/switch/turn_off", {"entity_id": fence_switch})
        wait("the fence rule paused", lambda: ha.states()[fence_switch]["state"] == "off")
        wait("the fence rule's event ended", lambda: ha.states()[fence]["state"] == "off")
        assert float(ha.states()[number]["state"]) == pytest.approx(0.02)  # the general rule untouched
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
