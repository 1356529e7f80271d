"""Operators in control: commands over MQTT (real Mosquitto), their state topics, persistence and an ACL."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import uuid
from collections.abc import Sequence
from pathlib import Path

import aiomqtt
import numpy as np
import pytest

from monitor.config import AppConfig, validate
from monitor.live.controls import ControlStore
from monitor.live.monitor import Monitor
from pipeline.controls import Command, parse_command
from pipeline.engines.batching import Prepared
from pipeline.inference import ScoreResult
from pipeline.records import ControlState, RuleControl
from sinks.base import Sink
from sinks.store_sink import StoreSink
from tests.helpers.broker import Broker
from tests.helpers.fakes import FakeModel, fake_engine
from tests.helpers.media import make_clip
from tests.helpers.sinks import mqtt_sink
from tests.helpers.subscriber import Subscriber


@pytest.mark.parametrize(
    ("kind", "payload", "value"),
    [
        ("enabled", b"ON", True),
        ("enabled", b"off", False),
        ("enabled", b" OFF\n", False),
        ("threshold", b"0.35", 0.35),
        ("threshold", b"1", 1.0),
        ("describe", b"PRESS", None),
        ("describe", b"", None),
    ],
)
def test_commands_parse(kind: str, payload: bytes, value: object) -> None:
    assert parse_command("cam", kind, payload) == Command("cam", kind, value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "payload", "says"),
    [
        ("enabled", b"maybe", "ON or OFF"),
        ("enabled", b"\xff\xfe", "not ASCII"),
        ("threshold", b"0", "(0, 1]"),
        ("threshold", b"1.5", "(0, 1]"),
        ("threshold", b"nan", "(0, 1]"),
        ("threshold", b"-inf", "(0, 1]"),
        ("threshold", b"lots", "a number"),
        ("threshold", b"0." + b"5" * 100, "too long"),
        ("describe", b"now please", "PRESS"),
    ],
)
def test_malformed_commands_are_refused_with_a_reason(kind: str, payload: bytes, says: str) -> None:
    with pytest.raises(ValueError, match=says.replace("(", r"\(").replace("]", r"\]")):
        parse_command("cam", kind, payload)


FENCE = {"name": "fence", "question": "Does someone climb the fence?", "threshold": 0.5}


def test_settings_survive_a_restart_and_a_broken_file_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = validate(
        {
            "rules": [FENCE],
            "cameras": [{"name": "a", "url": "a.mp4"}, {"name": "b", "url": "b.mp4", "alerting": {"threshold": 0.6}}],
        },
        env={},
    )
    path = tmp_path / "inst" / "controls.json"
    published: list[ControlState] = []
    store = ControlStore(path, cfg.cameras, publish=published.append)
    a = store.cameras["a"].state()
    assert a.enabled and [(r.name, r.enabled, r.threshold) for r in a.rules] == [
        ("anomaly", True, 0.7),
        ("fence", True, 0.5),
    ]
    assert store.apply(Command("a", "enabled", False)) is None
    assert store.apply(Command("b", "threshold", 0.25, "anomaly")) is None
    assert store.apply(Command("b", "enabled", False, "fence")) is None
    assert [p.camera for p in published] == ["a", "b", "b"]  # each change published by its camera's owner
    assert store.apply(Command("elsewhere", "enabled", False)) == "no camera 'elsewhere' here"  # another instance's
    assert "has no rule 'nosuch'" in (store.apply(Command("a", "threshold", 0.3, "nosuch")) or "")
    again = ControlStore(path, cfg.cameras, publish=published.append)
    a, b = again.cameras["a"].state(), again.cameras["b"].state()
    assert not a.enabled and a.rule("anomaly") == RuleControl("anomaly", True, 0.7)
    assert b.enabled and b.rule("anomaly") == RuleControl("anomaly", True, 0.25)
    assert b.rule("fence") == RuleControl("fence", False, 0.5)
    # an operator's threshold is validated as the configuration would be (parsing allows no such value)
    assert again.cameras["b"].rules["anomaly"].release == 0.15
    with pytest.raises(ValueError, match="threshold"):
        again.cameras["b"].apply(Command("b", "threshold", 2.0, "anomaly"))
    # the configured threshold given back: nothing of it is kept
    again.apply(Command("b", "threshold", 0.6, "anomaly"))
    again.apply(Command("b", "enabled", True, "fence"))
    assert json.loads(path.read_text()) == {"a": {"enabled": False}}
    # a file of an earlier version (one threshold per camera: the general rule's) still applies
    path.write_text(json.dumps({"b": {"enabled": True, "threshold": 0.3}}))
    assert ControlStore(path, cfg.cameras, publish=print).cameras["b"].state().rule("anomaly").threshold == 0.3  # type: ignore[union-attr]
    path.write_text("{not json")
    with caplog.at_level(logging.WARNING):
        broken = ControlStore(path, cfg.cameras, publish=published.append)
    assert broken.cameras["a"].enabled and "cannot be read" in caplog.text


class HalfSure(FakeModel):
    """Scores every window 0.5 (all answers equally likely)."""

    def score(self, batch: Sequence[Prepared], answers: Sequence[str], pool_layers: Sequence[int]) -> list[ScoreResult]:
        self._work("score", batch)
        return [ScoreResult(np.full(len(answers), 1 / len(answers)), {}) for p in batch]


def live_config(
    tmp_path: Path,
    port: int,
    pfx: str,
    clip: Path,
    sampling: dict[str, object] | None = None,
    rules: list[dict[str, object]] | None = None,
    camera: dict[str, object] | None = None,
    **mqtt: object,
) -> AppConfig:
    """One looping, paced camera ``yard`` (with ``camera``'s own keys) on a monitor with MQTT on ``port``."""
    return validate(
        {
            "rules": rules or [],
            "cameras": [
                {
                    "name": "yard",
                    "url": str(clip),
                    "realtime": True,
                    "loop": True,
                    "sampling": {"fps": 5, **(sampling or {})},
                    **(camera or {}),
                },
            ],
            "windows": {"size": 2, "stride": 1},
            "alerting": {"threshold": 0.6, "hysteresis": 0.1, "cooldown_s": 0},
            "outputs": {"status_interval_s": 0.5, "dir": str(tmp_path / "out")},
            "store": {"path": str(tmp_path / "events.db")},
            "mqtt": {
                "enabled": True,
                "port": port,
                "topic_prefix": pfx,
                "discovery_prefix": f"{pfx}-ha",
                "outbox": str(tmp_path / "outbox.sqlite"),
                "controls": str(tmp_path / "controls.json"),
                "reconnect_initial_s": 0.1,
                **mqtt,
            },
        },
        env={},
    )


async def publish(port: int, topic: str, payload: bytes, **login: str) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"op-{uuid.uuid4().hex[:6]}", **login) as c:
        await c.publish(topic, payload, qos=1)


class Running:
    """A monitor run in the background of a test."""

    def __init__(self, cfg: AppConfig, fake: FakeModel, *, store: bool = False) -> None:
        rules = {c.name: [r.name for r in c.rules] for c in cfg.cameras}
        self.sink = mqtt_sink(cfg.mqtt, [c.name for c in cfg.cameras], rules=rules)
        sinks: list[Sink] = [self.sink, *([StoreSink(cfg.store)] if store else [])]
        self.monitor = Monitor(cfg, models=fake_engine(fake, cfg), sinks=sinks, mqtt=self.sink.connection)
        self.stop = asyncio.Event()
        self.task: asyncio.Task[object] | None = None

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(self.monitor.run(self.stop))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        assert self.task is not None
        await self.task


def scores(sub: Subscriber, pfx: str) -> int:
    return len(sub.on(f"{pfx}/yard/score"))


async def test_commands_pause_resume_retune_and_describe_now(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broker = Broker(tmp_path / "broker").start()
    pfx = f"t{uuid.uuid4().hex[:8]}"
    clip = make_clip(tmp_path / "still.mp4", seconds=4, fps=10, moving=False)
    cfg = live_config(tmp_path, broker.port, pfx, clip, {"motion_gate": True, "motion_max_reuse_s": 1000})
    fake = HalfSure()
    try:
        async with Subscriber(broker.port, [f"{pfx}/#"]) as sub, Running(cfg, fake) as run:
            state = f"{pfx}/yard/enabled"
            await sub.wait_for(lambda: [m.payload for m in sub.on(state)] == [b"ON"])
            await sub.wait_for(lambda: [m.payload for m in sub.on(f"{pfx}/yard/threshold")] == [b"0.6"])
            await sub.wait_for(lambda: scores(sub, pfx) >= 3)
            # a still scene: the motion gate lets only the first frame through
            described = [m for m in sub.on(f"{pfx}/yard/description")]
            assert len(described) == 1
            # describe now: a fresh description of the next frame, judged at once
            await publish(broker.port, f"{pfx}/yard/describe/set", b"PRESS")
            await sub.wait_for(lambda: len(sub.on(f"{pfx}/yard/description")) == 2)
            assert run.monitor._cameras[0].stage.counters.described == 2
            # a higher-than-scored threshold: no event; lowered below 0.5 by an operator: an event
            assert not sub.on(f"{pfx}/yard/event")
            await publish(broker.port, f"{pfx}/yard/threshold/set", b"0.4")
            await sub.wait_for(lambda: sub.on(f"{pfx}/yard/threshold")[-1].payload == b"0.4")
            await sub.wait_for(lambda: any(m.json()["event_type"] == "new" for m in sub.on(f"{pfx}/yard/event")))
            # switched off: the open event ends, scores stop
            await publish(broker.port, f"{pfx}/yard/enabled/set", b"OFF")
            await sub.wait_for(lambda: sub.on(state)[-1].payload == b"OFF")
            await sub.wait_for(lambda: any(m.json()["event_type"] == "end" for m in sub.on(f"{pfx}/yard/event")))
            await asyncio.sleep(0.5)  # QoS 0 scores published before the switch may still be on their way
            paused_at = scores(sub, pfx)
            await asyncio.sleep(2.0)
            assert scores(sub, pfx) == paused_at
            assert run.monitor._cameras[0].stage.counters.paused > 0
            # malformed: ignored, counted, logged once per topic
            with caplog.at_level(logging.WARNING, logger="sinks.mqtt_commands"):
                for topic, payload in [
                    ("enabled/set", b"maybe"),
                    ("enabled/set", b"perhaps"),
                    ("threshold/set", b"2"),
                    ("threshold/set", b"nan"),
                    ("describe/set", b"\x00\x01"),
                ]:
                    await publish(broker.port, f"{pfx}/yard/{topic}", payload)
                await publish(broker.port, f"{pfx}/nosuchcamera/enabled/set", b"ON")
                await sub.wait_for(lambda: run.monitor.commands.stats.rejected == 5)
            assert caplog.text.count("ignored a command") == 3
            assert sub.on(state)[-1].payload == b"OFF" and sub.on(f"{pfx}/yard/threshold")[-1].payload == b"0.4"
            # on again: scores resume
            await publish(broker.port, f"{pfx}/yard/enabled/set", b"ON")
            await sub.wait_for(lambda: scores(sub, pfx) > paused_at + 2)
            await publish(broker.port, f"{pfx}/yard/enabled/set", b"OFF")
            await sub.wait_for(lambda: sub.on(state)[-1].payload == b"OFF")
        # a restart keeps what the operators set, and says so on the state topics
        async with Subscriber(broker.port, [f"{pfx}/#"]) as sub, Running(cfg, HalfSure()) as run:
            await sub.wait_for(lambda: any(m.payload == b"online" for m in sub.on(f"{pfx}/available")))
            await sub.wait_for(lambda: len(sub.on(f"{pfx}/yard/threshold")) >= 2)
            assert sub.on(state)[-1].payload == b"OFF" and sub.on(f"{pfx}/yard/threshold")[-1].payload == b"0.4"
            await asyncio.sleep(1.5)
            assert scores(sub, pfx) == 0 and run.monitor._cameras[0].stage.counters.paused > 0
    finally:
        broker.stop()


async def test_any_rule_is_paused_and_rethresholded_over_mqtt(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker").start()
    pfx = f"t{uuid.uuid4().hex[:8]}"
    clip = make_clip(tmp_path / "walk.mp4", seconds=4, fps=10)
    cfg = live_config(tmp_path, broker.port, pfx, clip, rules=[{**FENCE, "threshold": 0.6, "cooldown_s": 0}])
    rule = f"{pfx}/yard/rules/fence"

    def fence_events(sub: Subscriber, kind: str) -> list[dict[str, object]]:
        return [
            d for m in sub.on(f"{pfx}/yard/event") if (d := m.json())["rule"] == "fence" and d["event_type"] == kind
        ]

    try:
        async with Subscriber(broker.port, [f"{pfx}/#"]) as sub, Running(cfg, HalfSure()) as run:
            await sub.wait_for(lambda: [m.payload for m in sub.on(f"{rule}/threshold")] == [b"0.6"])
            assert [m.payload for m in sub.on(f"{rule}/enabled")] == [b"ON"]
            await sub.wait_for(lambda: len(sub.on(f"{rule}/score")) >= 3)
            assert not fence_events(sub, "new")  # every window scores 0.5
            await publish(broker.port, f"{rule}/threshold/set", b"0.4")
            await sub.wait_for(lambda: sub.on(f"{rule}/threshold")[-1].payload == b"0.4")
            await sub.wait_for(lambda: bool(fence_events(sub, "new")))
            # the general rule is untouched
            assert sub.on(f"{pfx}/yard/threshold")[-1].payload == b"0.6"
            assert not [m for m in sub.on(f"{pfx}/yard/event") if m.json()["rule"] == "anomaly"]
            # paused: its open event ends, it is no longer asked; the general rule goes on
            await publish(broker.port, f"{rule}/enabled/set", b"OFF")
            await sub.wait_for(lambda: sub.on(f"{rule}/enabled")[-1].payload == b"OFF")
            await sub.wait_for(lambda: bool(fence_events(sub, "end")))
            assert sub.on(f"{rule}/state")[-1].payload == b"OFF"
            await asyncio.sleep(0.5)  # QoS 0 scores published before the pause may still be on their way
            asked, general = len(sub.on(f"{rule}/score")), len(sub.on(f"{pfx}/yard/score"))
            await sub.wait_for(lambda: len(sub.on(f"{pfx}/yard/score")) >= general + 3)
            assert len(sub.on(f"{rule}/score")) == asked
            # a rule the camera does not have, and a malformed threshold: refused and counted
            await publish(broker.port, f"{pfx}/yard/rules/nosuch/threshold/set", b"0.3")
            await publish(broker.port, f"{rule}/threshold/set", b"0")
            await sub.wait_for(lambda: run.monitor.commands is not None and run.monitor.commands.stats.rejected == 2)
        # a restart keeps the rule paused at its operator's threshold
        async with Subscriber(broker.port, [f"{pfx}/#"]) as sub, Running(cfg, HalfSure()):
            await sub.wait_for(lambda: len(sub.on(f"{rule}/threshold")) >= 2)
            assert sub.on(f"{rule}/threshold")[-1].payload == b"0.4" and sub.on(f"{rule}/enabled")[-1].payload == b"OFF"
            await sub.wait_for(lambda: len(sub.on(f"{pfx}/yard/score")) >= 3)
            assert not sub.on(f"{rule}/score")  # paused: not asked at all
    finally:
        broker.stop()


def test_a_client_without_write_rights_changes_nothing(tmp_path: Path) -> None:
    """The README's ACL: the monitor may read commands, operators may write them, viewers may only read."""
    pfx = f"t{uuid.uuid4().hex[:8]}"
    passwd = tmp_path / "passwd"
    passwd.touch()
    for user in ("monitor", "operator", "viewer"):
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, f"{user}-secret"], check=True)
    acl = tmp_path / "acl"
    acl.write_text(
        f"user monitor\ntopic readwrite {pfx}/#\ntopic readwrite {pfx}-ha/#\n\n"
        f"user operator\ntopic read {pfx}/#\ntopic write {pfx}/+/enabled/set\ntopic write {pfx}/+/threshold/set\n"
        f"topic write {pfx}/+/describe/set\ntopic write {pfx}/summarize/set\n\n"
        f"user viewer\ntopic read {pfx}/#\n"
    )
    broker = Broker(tmp_path / "broker", anonymous=False, extra=f"password_file {passwd}\nacl_file {acl}\n").start()
    clip = make_clip(tmp_path / "c.mp4", seconds=4, fps=10)
    cfg = live_config(tmp_path, broker.port, pfx, clip, username="monitor", password="monitor-secret")

    async def scenario() -> None:
        login = {"username": "viewer", "password": "viewer-secret"}
        async with Subscriber(broker.port, [f"{pfx}/#"], **login) as sub, Running(cfg, HalfSure()) as run:
            state = f"{pfx}/yard/enabled"
            await sub.wait_for(lambda: [m.payload for m in sub.on(state)] == [b"ON"])
            await sub.wait_for(lambda: scores(sub, pfx) >= 2)
            await publish(broker.port, f"{pfx}/yard/enabled/set", b"OFF", **login)  # refused by the broker
            await publish(broker.port, f"{pfx}/yard/threshold/set", b"0.1", **login)
            before = scores(sub, pfx)
            await sub.wait_for(lambda: scores(sub, pfx) >= before + 3)
            assert [m.payload for m in sub.on(state)] == [b"ON"]
            assert (
                run.monitor.commands.stats.applied == 0
                and run.monitor.controls.cameras["yard"].rules["anomaly"].threshold == 0.6
            )
            assert not (tmp_path / "controls.json").exists()
            await publish(
                broker.port, f"{pfx}/yard/enabled/set", b"OFF", username="operator", password="operator-secret"
            )
            await sub.wait_for(lambda: sub.on(state)[-1].payload == b"OFF")
            assert run.monitor.commands.stats.applied == 1

    try:
        asyncio.run(scenario())
    finally:
        broker.stop()
