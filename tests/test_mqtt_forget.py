"""Clearing what an instance left retained on a real Mosquitto: ``monitor forget-instance`` for a renamed
or retired instance, and ``[mqtt] forget_on_stop`` for one that will not come back."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from pipeline.records import GENERAL_RULE, ControlState, RuleControl
from sinks.mqtt_forget import InstanceOnline, forget_instance, retained
from sinks.mqtt_sink import MqttSink
from tests.helpers.broker import Broker
from tests.helpers.cli import monitor_command
from tests.helpers.sinks import mqtt_sink
from tests.test_mqtt import mqtt_cfg


@pytest.fixture
def broker(tmp_path: Path):  # type: ignore[no-untyped-def]
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


async def _run(sink: MqttSink, cameras: list[str]) -> None:
    """Open the sink, publish each camera's settings (retained), wait until the broker has all of it."""
    await sink.open()
    await asyncio.wait_for(sink.connection.connected.wait(), 30)
    for cam in cameras:
        await sink.handle(ControlState(cam, True, (RuleControl(GENERAL_RULE, True, 0.7),), time.time()))
    while sink.connection.stats.pending:
        await asyncio.sleep(0.05)


async def test_a_renamed_instance_is_forgotten_and_nothing_else(broker: Broker, tmp_path: Path) -> None:
    pfx = f"t{uuid.uuid4().hex[:6]}"
    cfg = mqtt_cfg(broker.port, pfx, outbox=str(tmp_path / "o.sqlite"), client_id=None)
    old = mqtt_sink(cfg, ["door", "gate"], instance="old")
    await _run(old, ["door", "gate"])
    await old.close()  # offline, all it published stays retained
    new = mqtt_sink(cfg.model_copy(update={"outbox": tmp_path / "n.sqlite"}), ["door"], instance="new")
    await _run(new, ["door"])  # the same camera under its new name: its devices are the new one's now
    try:
        filters = [f"{pfx}-ha/+/+/+/config", f"{pfx}/#"]
        before = await retained(cfg, filters)
        with pytest.raises(InstanceOnline):
            await forget_instance(cfg, "new")
        dry = await forget_instance(cfg, "old", dry_run=True)
        assert await retained(cfg, filters) == before  # a dry run clears nothing
        assert set(dry.cameras) == {"gate"} and dry.availability == f"{pfx}/instances/old/available"
        assert dry.others == {"new": "online"}
        found = await forget_instance(cfg, "old")
        assert found.topics == dry.topics
        after = await retained(cfg, filters)
        gone = set(before) - set(after)
        assert gone == set(found.topics)
        assert f"{pfx}/instances/old/available" in gone and f"{pfx}/instances/new/available" in after
        assert not any(f"{pfx}_gate/" in t or t.startswith(f"{pfx}/gate/") for t in after)  # gate: all gone
        assert any(f"{pfx}_door/" in t for t in after) and f"{pfx}/door/rules/anomaly/threshold" in after
        assert (await forget_instance(cfg, "old")).topics == []  # nothing left to clear
    finally:
        await new.close()


async def test_forget_on_stop_leaves_nothing_retained(broker: Broker, tmp_path: Path) -> None:
    pfx = f"t{uuid.uuid4().hex[:6]}"
    cfg = mqtt_cfg(broker.port, pfx, outbox=str(tmp_path / "o.sqlite"), client_id=None, forget_on_stop=True)
    sink = mqtt_sink(cfg, ["door"], instance="once")
    await _run(sink, ["door"])
    filters = [f"{pfx}-ha/+/+/+/config", f"{pfx}/#"]
    assert len(await retained(cfg, filters)) > 10  # discovery, settings, availability
    await sink.close()
    assert await retained(cfg, filters) == {}


def test_forget_instance_command(broker: Broker, tmp_path: Path) -> None:
    pfx = f"t{uuid.uuid4().hex[:6]}"
    cfg = mqtt_cfg(broker.port, pfx, outbox=str(tmp_path / "o.sqlite"), client_id=None)

    async def leave_one() -> None:
        sink = mqtt_sink(cfg, ["yard"], instance="gone")
        await _run(sink, ["yard"])
        await sink.close()

    asyncio.run(leave_one())
    conf = tmp_path / "c.toml"
    conf.write_text(f'[mqtt]\nport = {broker.port}\ntopic_prefix = "{pfx}"\ndiscovery_prefix = "{pfx}-ha"\n')

    def forget(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            monitor_command("forget-instance", *args, "--config", conf),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )

    r = forget("gone", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "would clear" in r.stdout and "camera yard:" in r.stdout and f"{pfx}/instances/gone/available" in r.stdout
    r = forget("gone")
    assert r.returncode == 0 and "cleared" in r.stdout, r.stderr
    r = forget("gone")
    assert r.returncode == 0 and "nothing retained of instance 'gone'" in r.stdout, r.stderr
    r = forget("a/#")
    assert r.returncode == 2 and "'a/#'" in r.stderr, r.stderr
