"""The MQTT sink against a real Mosquitto: payloads, discovery, outages, auth and TLS."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from monitor.config import ConfigError, MqttConfig, load, validate
from monitor.live.monitor import Monitor
from pipeline.records import Event, EventChange, WindowScore
from tests.helpers.broker import Broker
from tests.helpers.fakes import AlarmAfter, fake_engine
from tests.helpers.media import make_clip
from tests.helpers.sinks import mqtt_sink
from tests.helpers.subscriber import Subscriber
from tests.helpers.waiting import eventually, eventually_async


def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}"


@pytest.fixture
def broker(tmp_path: Path):
    b = Broker(tmp_path / "broker").start()
    yield b
    b.stop()


def mqtt_cfg(port: int, pfx: str, **kw: object) -> MqttConfig:
    return MqttConfig.model_validate(
        {
            "enabled": True,
            "host": "127.0.0.1",
            "port": port,
            "topic_prefix": pfx,
            "discovery_prefix": f"{pfx}-ha",
            "client_id": f"mon-{pfx}",
            "reconnect_initial_s": 0.1,
            "reconnect_max_s": 0.5,
            **kw,
        }
    )


def event_change(kind: str, n: int, camera: str = "cam") -> EventChange:
    ev = Event(
        id=f"ev{n}",
        camera=camera,
        start_time=n,
        start_wall=1000.0 + n,
        end_time=None,
        end_wall=None,
        peak_score=0.9,
        score=0.9,
        peak_frame_index=n,
        descriptions=(f"d{n}",),
        snapshot=b"\xff\xd8jpg%d" % n,
    )
    if kind == "new":
        return EventChange("new", None, ev)
    return EventChange(kind, ev, replace(ev, end_time=n + 1.0, end_wall=1001.0 + n))


async def test_documented_topics_and_payloads(broker: Broker, tmp_path: Path) -> None:
    pfx = prefix()
    clip = make_clip(tmp_path / "c.mp4", seconds=6, fps=10, static_until=3.0)
    cfg = validate(
        {
            "cameras": [{"name": "door", "url": str(clip), "sampling": {"every_n_frames": 5}}],
            "windows": {"size": 2, "stride": 1},
            "alerting": {"threshold": 0.6, "hysteresis": 0.1},
            "outputs": {"status_interval_s": 0.2},
            "mqtt": {
                "enabled": True,
                "port": broker.port,
                "topic_prefix": pfx,
                "discovery_prefix": f"{pfx}-ha",
                "outbox": str(tmp_path / "outbox.sqlite"),
            },
            "store": {"enabled": False},
        },
        env={},
    )
    sink = mqtt_sink(cfg.mqtt, ["door"])
    outside = subprocess.Popen(
        ["mosquitto_sub", "-p", str(broker.port), "-t", f"{pfx}/events", "-v", "-q", "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        async with Subscriber(broker.port, [f"{pfx}/#", f"{pfx}-ha/#"]) as sub:
            await asyncio.sleep(0.3)  # mosquitto_sub is subscribed too
            fake = AlarmAfter()
            await Monitor(cfg, models=fake_engine(fake, cfg), sinks=[sink]).run()
            await sub.wait_for(lambda: any(m.payload == b"offline" for m in sub.on(f"{pfx}/available")))
    finally:
        await asyncio.sleep(0.3)
        outside.terminate()
        outside_lines = outside.communicate(timeout=5)[0].splitlines()

    # discovery: one device per camera with a binary sensor and a sensor
    (bs,) = sub.on(f"{pfx}-ha/binary_sensor/{pfx}_door/anomaly/config")
    (sn,) = sub.on(f"{pfx}-ha/sensor/{pfx}_door/score/config")
    bsc, snc = bs.json(), sn.json()
    # (the general rule's entities keep their unique ids; they read the rule's own topics)
    assert bsc["state_topic"] == f"{pfx}/door/rules/anomaly/state" and bsc["device_class"] == "problem"
    assert (bsc["payload_on"], bsc["payload_off"]) == ("ON", "OFF")
    assert snc["state_topic"] == f"{pfx}/door/rules/anomaly/score" and snc["value_template"] == "{{ value_json.score }}"
    for c in (bsc, snc):
        assert c["availability_topic"] == f"{pfx}/available"
        assert c["device"]["identifiers"] == [f"{pfx}_door"]
    assert bsc["unique_id"] != snc["unique_id"]
    # availability
    assert [m.payload for m in sub.on(f"{pfx}/available")] == [b"online", b"offline"]
    # scores: QoS 0 JSON with the window and its descriptions
    scores = [m.json() for m in sub.on(f"{pfx}/door/score")]
    assert len(scores) == 11 and [m.json() for m in sub.on(f"{pfx}/door/rules/anomaly/score")] == scores
    assert set(scores[0]) >= {"camera", "start_time", "end_time", "score", "descriptions"}
    assert scores[-1]["raw_score"] > 0.99 and scores[-1]["score"] > 0.9 and scores[0]["camera"] == "door"
    # events: new, update(s), end, each with before/after
    events = [m.json() for m in sub.on(f"{pfx}/events")]
    assert [e["type"] for e in events if e["type"] != "update"] == ["new", "end"]
    assert events[-1]["after"]["clip"] == f"{events[0]['after']['id']}.mp4"  # written after the end
    assert events[0]["before"] is None
    # Home Assistant's event entity, severity, descriptions, the settings in force
    fired = [m.json() for m in sub.on(f"{pfx}/door/event")]
    assert [f["event_type"] for f in fired] == ["new", "end"] and fired[0]["id"] == events[0]["after"]["id"]
    assert {f["severity"] for f in fired} <= {0, 1, 2} and events[0]["after"]["severity"] == fired[0]["severity"]
    assert sub.on(f"{pfx}/door/severity")[-1].json()["level"] == events[-1]["after"]["severity"]
    assert sub.on(f"{pfx}/door/description") and all(m.retain is False for m in sub.on(f"{pfx}/door/description"))
    assert [m.payload for m in sub.on(f"{pfx}/door/enabled")] == [b"ON"]
    assert [m.payload for m in sub.on(f"{pfx}/door/threshold")] == [b"0.6"]
    assert [m.payload for m in sub.on(f"{pfx}/door/rules/anomaly/threshold")] == [b"0.6"]
    assert [m.payload for m in sub.on(f"{pfx}/door/rules/anomaly/enabled")] == [b"ON"]
    components = sorted(m.topic.split("/")[1] for m in sub.messages if m.topic.startswith(f"{pfx}-ha/"))
    camera = ["sensor", "sensor", "event", "camera", "switch", "button"]  # description, severity, ...
    rule = ["binary_sensor", "sensor", "switch", "number"]  # the general rule's state, score, enabled, threshold
    assert components == sorted([*camera, *rule])
    (number,) = sub.on(f"{pfx}-ha/number/{pfx}_door/threshold/config")
    assert number.json()["command_topic"] == f"{pfx}/door/rules/anomaly/threshold/set"
    (switch,) = sub.on(f"{pfx}-ha/switch/{pfx}_door/enabled/config")
    assert switch.json()["command_topic"] == f"{pfx}/door/enabled/set"
    assert switch.json()["state_topic"] == f"{pfx}/door/enabled"
    after = events[0]["after"]
    assert set(after) >= {"id", "camera", "start", "end", "peak_score", "score", "explanation", "descriptions"}
    assert any(e["type"] == "update" and e["after"]["explanation"] for e in events)
    assert all(e["before"]["id"] == after["id"] for e in events[1:])
    # anomaly state, retained: OFF at start, ON with the event, OFF at its end
    assert [m.payload for m in sub.on(f"{pfx}/door/anomaly")] == [b"OFF", b"ON", b"OFF"]
    assert [m.payload for m in sub.on(f"{pfx}/door/rules/anomaly/state")] == [b"OFF", b"ON", b"OFF"]
    # snapshot: JPEG, retained, before the event message that announces it
    snaps = sub.on(f"{pfx}/door/snapshot")
    assert snaps and snaps[0].payload[:2] == b"\xff\xd8"
    order = [m.topic for m in sub.messages]
    assert order.index(f"{pfx}/door/snapshot") < order.index(f"{pfx}/events")
    # status
    status = sub.on(f"{pfx}/door/status")[-1].json()
    assert set(status) >= {"fps", "frames_dropped", "queue_depth", "connected"}
    # retained for late subscribers: discovery, availability, anomaly state, snapshot
    late = {m.topic: m for m in await Subscriber.retained(broker.port, f"{pfx}/#")}
    late.update({m.topic: m for m in await Subscriber.retained(broker.port, f"{pfx}-ha/#")})
    assert all(m.retain for m in late.values())
    assert late[f"{pfx}/available"].payload == b"offline" and late[f"{pfx}/door/anomaly"].payload == b"OFF"
    assert late[f"{pfx}/door/snapshot"].payload == snaps[-1].payload
    assert bs.topic in late and sn.topic in late
    assert f"{pfx}/events" not in late and f"{pfx}/door/score" not in late
    # an outside client saw the same events
    assert [json.loads(line.split(" ", 1)[1])["type"] for line in outside_lines] == [e["type"] for e in events]
    assert sink.connection.stats.delivered >= len(events) and sink.connection.stats.pending == 0


async def test_discovery_is_sent_again_when_home_assistant_comes_online(broker: Broker, tmp_path: Path) -> None:
    pfx = prefix()
    sink = mqtt_sink(mqtt_cfg(broker.port, pfx, outbox=str(tmp_path / "o.sqlite")), ["a", "b"])
    async with Subscriber(broker.port, [f"{pfx}-ha/#"]) as sub:
        await sink.open()
        try:
            # ten entities a camera (six of its own, four of its general rule), two cameras
            await sub.wait_for(lambda: len([m for m in sub.messages if m.topic.endswith("/config")]) == 20)
            import aiomqtt

            async with aiomqtt.Client("127.0.0.1", broker.port) as ha:
                await ha.publish(f"{pfx}-ha/status", b"online")
            await sub.wait_for(lambda: len([m for m in sub.messages if m.topic.endswith("/config")]) == 40)
        finally:
            await sink.close()


async def test_alerts_survive_a_broker_outage_in_order(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pfx = prefix()
    broker = Broker(tmp_path / "broker").start()
    sink = mqtt_sink(mqtt_cfg(broker.port, pfx, outbox=str(tmp_path / "o.sqlite")), ["cam"])
    try:
        async with Subscriber(broker.port, [f"{pfx}/events"]) as sub:
            await sink.open()
            await asyncio.wait_for(sink.connection.connected.wait(), 10)
            for n in range(3):
                await sink.handle(event_change("new", n))
            await sub.wait_for(lambda: len(sub.messages) == 3)
            broker.stop()
            await asyncio.sleep(0.5)
            assert not sink.connection.connected.is_set()
            for n in range(3, 20):  # events while the broker is away
                await sink.handle(event_change("new", n))
                await sink.handle(WindowScore("cam", n, 0, 1, 0, 0.5, ("x",), (1,)))  # state: dropped
            # (a general rule's score goes to its rule topic and to the camera's score topic)
            assert sink.connection.stats.pending >= 17 and sink.connection.stats.dropped == 2 * 17
            await asyncio.sleep(1.0)  # several reconnect attempts fail
            broker.start()
            await sub.wait_for(lambda: len(sub.messages) >= 20, timeout=20)
            await asyncio.sleep(0.3)
    finally:
        await sink.close()
        broker.stop()
    ids = [m.json()["after"]["id"] for m in sub.messages]
    # Every event, in order. QoS 1 is at-least-once: the broker may hand the subscriber a message again
    # whose acknowledgement it had not saved when it stopped; the monitor itself published each once.
    assert list(dict.fromkeys(ids)) == [f"ev{n}" for n in range(20)]
    assert set(ids[: len(ids) - 17]) <= {"ev0", "ev1", "ev2"}
    # the rule's state OFF at start; then a new event each: snapshot, event, severity, event entity, state ON
    # (the state on the rule's topic and on the camera's anomaly topic)
    assert sink.connection.stats.delivered == 2 + 20 * 6 and sink.connection.stats.pending == 0
    outage_logs = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(outage_logs) == 1


@pytest.mark.slow
def test_sigkill_then_restart_delivers_the_undelivered_alert(tmp_path: Path, tiny_vlm: Path) -> None:
    import sqlite3
    import sys

    from tests.test_cli_run import ROOT

    pfx = prefix()
    broker = Broker(tmp_path / "broker")  # not started yet: the first run sees no broker
    clip = make_clip(tmp_path / "c.mp4", seconds=4)
    outbox = tmp_path / "outbox.sqlite"
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"""
[alerting]
threshold = 0.01
hysteresis = 0.0
[mqtt]
enabled = true
port = {broker.port}
topic_prefix = "{pfx}"
outbox = "{outbox}"
reconnect_initial_s = 0.2
reconnect_max_s = 0.5
[store]
path = "{tmp_path / "events.sqlite"}"
[[cameras]]
name = "sim"
url = "{clip}"
realtime = true
loop = true
[cameras.sampling]
every_n_frames = 5
""")
    cmd = [
        sys.executable,
        "-m",
        "monitor",
        "run",
        "--config",
        str(cfg),
        "--model",
        str(tiny_vlm),
        "--output",
        str(tmp_path / "out"),
    ]

    def pending_events() -> list[str]:
        if not outbox.exists():
            return []
        with sqlite3.connect(outbox) as db:
            rows = db.execute("SELECT payload FROM outbox WHERE topic = ?", (f"{pfx}/events",)).fetchall()
        return [json.loads(r[0])["after"]["id"] for r in rows]

    first = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        undelivered = eventually(pending_events, what="an event in the outbox")
    finally:
        first.kill()  # SIGKILL: no clean shutdown, nothing flushed
        first.wait()
    broker.start()

    async def restart_and_listen() -> list[str]:
        async with Subscriber(broker.port, [f"{pfx}/events"]) as sub:
            second = subprocess.Popen([*cmd, "--max-seconds", "8"], cwd=ROOT, stderr=subprocess.DEVNULL)
            try:
                await sub.wait_for(lambda: len(sub.messages) >= 1, timeout=60)
            finally:
                second.terminate()
                await asyncio.to_thread(second.wait, 20)
            return [m.json()["after"]["id"] for m in sub.messages]

    try:
        received = asyncio.run(restart_and_listen())
    finally:
        broker.stop()
    assert received[: len(undelivered)] == undelivered


async def test_password_authentication(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "monitor", "right-pass"], check=True)
    broker = Broker(tmp_path / "broker", anonymous=False, extra=f"password_file {passwd}\n").start()
    pfx = prefix()
    try:
        good = mqtt_sink(
            mqtt_cfg(broker.port, pfx, username="monitor", password="right-pass", outbox=str(tmp_path / "good.sqlite")),
            ["cam"],
        )
        async with Subscriber(broker.port, [f"{pfx}/events"], username="monitor", password="right-pass") as sub:
            await good.open()
            await good.handle(event_change("new", 1))
            await sub.wait_for(lambda: len(sub.messages) == 1)
            await good.close()
        bad = mqtt_sink(
            mqtt_cfg(
                broker.port,
                pfx,
                username="monitor",
                password="wrong-pass",
                outbox=str(tmp_path / "bad.sqlite"),
                client_id="bad",
            ),
            ["cam"],
        )
        await bad.open()
        await bad.handle(event_change("new", 2))
        await asyncio.sleep(1.5)
        # kept for when the login works
        assert not bad.connection.connected.is_set() and bad.connection.stats.pending >= 1
        await bad.close()
    finally:
        broker.stop()
    errors = [r.getMessage() for r in caplog.records if "refused the login" in r.getMessage()]
    assert len(errors) == 1 and "'monitor'" in errors[0] and "wrong-pass" not in errors[0]


def make_ca(tmp: Path) -> dict[str, Path]:
    """A self-signed CA and a server certificate for 127.0.0.1, made with openssl."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    p = {k: tmp / f"{k}.pem" for k in ("ca", "ca_key", "server", "server_key", "other_ca", "other_ca_key")}
    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        str(p["ca_key"]),
        "-out",
        str(p["ca"]),
    )
    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=other-ca",
        "-keyout",
        str(p["other_ca_key"]),
        "-out",
        str(p["other_ca"]),
    )
    csr = tmp / "server.csr"
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        str(p["server_key"]),
        "-out",
        str(csr),
    )
    ext = tmp / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(p["ca"]),
        "-CAkey",
        str(p["ca_key"]),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(ext),
        "-out",
        str(p["server"]),
    )
    return p


async def test_tls_with_a_private_ca(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    certs = make_ca(tmp_path)
    broker = Broker(
        tmp_path / "broker", extra=f"cafile {certs['ca']}\ncertfile {certs['server']}\nkeyfile {certs['server_key']}\n"
    )
    broker.start()
    tls_port = broker.port
    pfx = prefix()
    try:
        good = mqtt_sink(
            mqtt_cfg(tls_port, pfx, tls={"ca_file": str(certs["ca"])}, outbox=str(tmp_path / "good.sqlite")), ["cam"]
        )
        async with Subscriber(
            tls_port, [f"{pfx}/events"], tls_params=__import__("aiomqtt").TLSParameters(ca_certs=str(certs["ca"]))
        ) as sub:
            await good.open()
            await good.handle(event_change("new", 1))
            await sub.wait_for(lambda: len(sub.messages) == 1)
            await good.close()
        wrong = mqtt_sink(
            mqtt_cfg(
                tls_port,
                pfx,
                tls={"ca_file": str(certs["other_ca"])},
                client_id="w",
                outbox=str(tmp_path / "wrong.sqlite"),
            ),
            ["cam"],
        )
        await wrong.open()
        await asyncio.sleep(1.0)
        assert not wrong.connection.connected.is_set()
        await wrong.close()
    finally:
        broker.stop()
    warnings = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
    assert warnings and "CERTIFICATE_VERIFY_FAILED" in warnings[0]


def test_malformed_or_huge_mqtt_config_values(tmp_path: Path) -> None:
    bad = {
        "topic_prefix": "a/#",
        "client_id": "x" * 500,
        "port": 70000,
        "username": "u" * 5000,
        "host": "",
    }
    for key, value in bad.items():
        with pytest.raises(ConfigError) as info:
            validate({"mqtt": {key: value}}, env={})
        assert info.value.problems[0][0] == f"mqtt.{key}", info.value.problems
    with pytest.raises(ConfigError) as info:
        validate({"mqtt": {"password": "p"}}, env={})
    assert "without username" in info.value.problems[0][1]
    cfg = tmp_path / "c.toml"
    cfg.write_text('[mqtt]\nenabled = true\n[mqtt.tls]\nca_file = "missing-ca.pem"\n')
    with pytest.raises(ConfigError) as info:
        load(cfg)
    assert info.value.problems[0][0] == "mqtt.tls.ca_file" and "file not found" in info.value.problems[0][1]


async def test_two_monitors_with_one_name_are_told_once(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A second monitor with the same instance name takes the first one's MQTT session over, again and
    again: each says so once, plainly, instead of logging an outage at every takeover."""
    pfx = prefix()
    caplog.set_level(logging.INFO)
    sinks = [
        mqtt_sink(mqtt_cfg(broker.port, pfx, outbox=str(tmp_path / f"o{i}.sqlite"), client_id="llmvad-twin"), ["cam"])
        for i in range(2)
    ]

    def told() -> list[str]:
        return [
            r.getMessage() for r in caplog.records if "another client uses this monitor's client id" in r.getMessage()
        ]

    try:
        for sink in sinks:
            await sink.open()

        def outages() -> int:
            return sum("unavailable" in r.getMessage() for r in caplog.records)

        await eventually_async(lambda: len(told()) == 2, what="each monitor to notice the takeovers", timeout=60)
        before = outages()
        await eventually_async(lambda: sum(s.connection.stats.takeovers for s in sinks) >= 10, timeout=60)
        assert len(told()) == 2 and "--instance" in told()[0]  # once each, however often it goes on
        assert outages() == before  # and the takeovers are no longer logged as outages
    finally:
        for sink in sinks:
            await sink.close()


async def test_a_close_ends_the_connection_even_when_its_cut_raises(broker: Broker, tmp_path: Path) -> None:
    """Closing while a part of the connection answers its cancellation with an MQTT error (as a cut
    connection does): Python 3.11's TaskGroup hands that error up instead of the cancellation, and the
    connection must not take it for an outage and reconnect for ever (a stopped monitor that never exits)."""
    import aiomqtt

    from sinks.mqtt_connection import MqttConnection
    from tests.test_operator_controls import publish

    pfx = prefix()
    inside = asyncio.Event()

    class CutOnCancel:
        subscriptions = (f"{pfx}/poke",)

        async def on_message(self, topic: str, payload: bytes) -> None:
            inside.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                raise aiomqtt.MqttError("Disconnected during message iteration") from None

    cfg = mqtt_cfg(broker.port, pfx, outbox=str(tmp_path / "o.sqlite"))
    conn = MqttConnection(cfg, client_id=f"mon-{pfx}", available=f"{pfx}/available")
    conn.listen(CutOnCancel())
    await conn.open()
    await asyncio.wait_for(conn.connected.wait(), 30)
    await publish(broker.port, f"{pfx}/poke", b"x")
    await asyncio.wait_for(inside.wait(), 30)
    await conn.close()
    assert conn._task is not None and conn._task.done()
    await asyncio.sleep(0.5)
    assert not conn.connected.is_set() and conn.stats.outages == 0
