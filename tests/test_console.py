"""The operator console: the real window (offscreen) fed in-process and by a real Mosquitto."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import pytest
from PySide6 import QtCore

from monitor.config import MqttConfig, validate
from monitor.console.feed import (
    ConsoleFeed,
    EventView,
    MqttDecoder,
    RuleSetting,
    ScorePoint,
    StatusView,
    items_from_record,
)
from monitor.console.launch import ConsoleSink, load_history, run_with_pipeline
from monitor.console.series import ScoreSeries
from monitor.console.subscriber import BrokerAddress, MqttFeeder
from monitor.console.window import SEVERITY_COLOURS, ConsoleWindow
from monitor.live.monitor import Monitor
from pipeline.records import CameraStatus, Event, EventChange, WindowScore
from pipeline.snapshots import encode_jpeg
from sinks.store_sink import StoreSettings, StoreSink
from tests.helpers.broker import Broker
from tests.helpers.fakes import AlarmAfter, fake_engine
from tests.helpers.media import make_clip
from tests.helpers.sinks import mqtt_sink

SHOTS = Path(os.environ.get("LLMVAD_TEST_ARTIFACTS", Path(tempfile.gettempdir()) / "llmvad-test-artifacts"))


def shot(widget: object, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    assert widget.grab().save(str(path))  # type: ignore[attr-defined]
    return path


def jpeg(color: tuple[int, int, int]) -> bytes:
    import numpy as np

    img = np.zeros((180, 320, 3), np.uint8)
    img[:] = color
    img[60:120, 120:200] = 255
    return encode_jpeg(img)


def test_ring_buffer_keeps_the_newest_points() -> None:
    s = ScoreSeries(4)
    for i in range(10):
        s.append(float(i), i / 10)
    t, v = s.arrays()
    assert list(t) == [6, 7, 8, 9] and list(v) == [0.6, 0.7, 0.8, 0.9]
    assert s.last() == (9.0, 0.9) and len(s) == 4


def test_window_shows_cameras_scores_and_events(qtbot) -> None:
    feed = ConsoleFeed()
    win = ConsoleWindow(feed, threshold=0.7, span_s=120, refresh_ms=50)
    qtbot.addWidget(win)
    win.show()
    now = time.time()
    for cam in ("gate", "lobby", "dock"):
        feed.push(StatusView(cam, now, cam != "dock", 10.0, 3 if cam == "lobby" else 0))
        for k in range(60):
            feed.push(ScorePoint(cam, now - 60 + k, 0.1 + 0.002 * k, f"{cam}: nothing happens {k}"))
    feed.push(ScorePoint("lobby", now, 0.91, "Two men fight near the door."))
    feed.push(
        EventView(
            *("ev1", "lobby", now - 20, now - 5, 0.91, 0.2, "A fight broke out.", ("a", "b"), jpeg((0, 90, 0))),
            *(2, "ev1.mp4"),
        )
    )
    feed.push(EventView("ev2", "gate", now - 3, None, 0.8, 0.8, None, ("c",), None))
    qtbot.waitUntil(lambda: win.event_list.count() == 2, timeout=3000)
    assert list(win.panels) == ["gate", "lobby", "dock"]
    table = {
        win.camera_table.item(r, 0).text(): [win.camera_table.item(r, c).text() for c in range(5)]
        for r in range(win.camera_table.rowCount())
    }
    assert table["lobby"] == ["lobby", "online", "10.0", "3", "0.91"]
    assert table["dock"][1] == "offline"
    t, v = win.panels["lobby"].lines["anomaly"].series.arrays()
    assert len(t) == 61 and v[-1] == 0.91
    assert win.panels["lobby"].description.text() == "Two men fight near the door."
    assert win.event_list.item(0).text().endswith("gate  peak 0.80  noting  (open)")  # newest first
    assert "lobby" in win.event_list.item(1).text() and "DANGEROUS" in win.event_list.item(1).text()
    # severity in colour: red for dangerous, amber for worth noting
    assert win.event_list.item(1).foreground().color().name() == SEVERITY_COLOURS[2] != SEVERITY_COLOURS[0]
    assert win.event_list.item(0).foreground().color().name() == SEVERITY_COLOURS[0]
    assert win.panels["lobby"].thresholds() == {"anomaly": 0.7}
    region, _ = win.panels["lobby"].regions["ev1"]
    assert region.getRegion() == pytest.approx((now - 20, now - 5))
    # selecting an event shows its snapshot, explanation and descriptions, and centres its plot on it
    win.event_list.setCurrentRow(1)
    assert not win.snapshot.pixmap().isNull()
    assert "A fight broke out." in win.explanation.text()
    assert win.details.toPlainText() == "• a\n• b"
    assert not win.clip_button.isEnabled() and "monitor's machine" in win.clip_button.text()  # no clip folder here
    panel = win.panels["lobby"]
    assert not panel.following
    lo, hi = panel.plot.getViewBox().viewRange()[0]
    assert lo < now - 12.5 < hi and abs((lo + hi) / 2 - (now - 12.5)) < 1
    # the open event stretches to "now"; Live resumes following
    win.follow_live()
    assert panel.following
    shot(win, "console-inprocess")


def test_decoder_rejects_malformed_messages() -> None:
    feed = ConsoleFeed()
    dec = MqttDecoder("llmvad", feed)
    good = {"camera": "c", "wall_time": 1.8e9, "score": 0.5, "descriptions": ["x"]}
    assert dec.decode("llmvad/c/rules/anomaly/score", json.dumps(good).encode()) == [ScorePoint("c", 1.8e9, 0.5, "x")]
    bad = [
        ("llmvad/c/rules/anomaly/score", b"{not json"),
        ("llmvad/c/rules/anomaly/score", json.dumps(good).encode()[:20]),  # truncated
        ("llmvad/c/rules/anomaly/score", json.dumps({**good, "score": 7}).encode()),
        ("llmvad/c/rules/anomaly/score", json.dumps({**good, "score": "high"}).encode()),
        ("llmvad/c/rules/anomaly/score", b"[1, 2]"),
        ("llmvad/c/rules/anomaly/score", b"\xff\xfe\x00garbage"),
        ("llmvad/c/rules/anomaly/score", b"{" + b" " * (300 * 1024) + b"}"),  # oversized
        ("llmvad/c/status", b"{}"),
        ("llmvad/events", json.dumps({"type": "boom", "after": {}}).encode()),
        ("llmvad/events", json.dumps({"type": "new", "after": {"id": 1}}).encode()),
        ("llmvad/c/snapshot", b"not a jpeg"),
    ]
    for topic, payload in bad:
        assert dec.decode(topic, payload) == []
    assert feed.malformed == len(bad)
    assert dec.decode("llmvad/c/unknown", b"whatever") == [] and dec.decode("other/x", b"") == []
    # the general rule's topic of earlier versions carries the same scores as its rule topic: shown once
    assert dec.decode("llmvad/c/score", json.dumps(good).encode()) == []
    assert feed.malformed == len(bad)
    assert dec.decode("llmvad/c/rules/fence/threshold", b"0.4") == [RuleSetting("c", "fence", threshold=0.4)]
    assert dec.decode("llmvad/c/rules/fence/enabled", b"OFF") == [RuleSetting("c", "fence", enabled=False)]
    assert dec.decode("llmvad/c/rules/fence/threshold", b"3") == [] and feed.malformed == len(bad) + 1


def test_broker_address() -> None:
    a = BrokerAddress.parse("mqtt://user:p%40ss@broker.local:1884")
    assert (a.host, a.port, a.username, a.password, a.tls) == ("broker.local", 1884, "user", "p@ss", False)
    assert str(a) == "mqtt://user@broker.local:1884"  # no password
    assert BrokerAddress.parse("mqtts://h").port == 8883
    assert BrokerAddress.parse("h:1999").port == 1999
    with pytest.raises(ValueError, match="mqtt://"):
        BrokerAddress.parse("http://h")


def window_with_feeder(
    qtbot, port: int, prefix: str, threshold: float | None = 0.6
) -> tuple[ConsoleWindow, MqttFeeder]:
    feed = ConsoleFeed()
    win = ConsoleWindow(feed, threshold=threshold, span_s=120, refresh_ms=50)
    qtbot.addWidget(win)
    win.show()
    feeder = MqttFeeder(BrokerAddress("127.0.0.1", port), prefix, feed, reconnect_max_s=0.5)
    feeder.start()
    qtbot.waitUntil(lambda: win.link.connected, timeout=10_000)
    return win, feeder


def publish_with_sink(port: int, prefix: str, tmp: Path, records: list) -> threading.Thread:
    """Publish records through the monitor's real MQTT sink (on an event loop of its own)."""

    async def go() -> None:
        sink = mqtt_sink(
            MqttConfig(
                enabled=True,
                port=port,
                topic_prefix=prefix,
                discovery=False,
                outbox=tmp / f"outbox-{time.monotonic_ns()}.sqlite",
            ),
            ["a"],
        )
        await sink.open()
        await asyncio.wait_for(sink.connection.connected.wait(), 10)
        for r in records:
            await sink.handle(r)
        await sink.close()

    thread = threading.Thread(target=asyncio.run, args=(go(),))
    thread.start()
    return thread


def test_console_over_real_mqtt(qtbot, tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker").start()
    try:
        win, feeder = window_with_feeder(qtbot, broker.port, "cons")
        now = time.time()
        records: list = []
        for i, cam in enumerate(("front", "back", "garage")):
            records.append(CameraStatus(cam, now, True, 9.5, 100, 10, 2, i, 1))
            records += [
                WindowScore(cam, k, k, k + 2, now - 30 + k, 0.2 + 0.01 * k, (f"{cam} scene {k}",), (k,))
                for k in range(30)
            ]
        ev = Event(
            "e-front",
            "front",
            10,
            now - 10,
            None,
            None,
            0.88,
            0.88,
            5,
            ("A man climbs the fence.",),
            None,
            jpeg((120, 0, 0)),
        )
        records += [EventChange("new", None, ev)]
        records += [EventChange("update", ev, Event(**{**_fields(ev), "explanation": "Someone is breaking in."}))]
        publisher = publish_with_sink(broker.port, "cons", tmp_path, records)
        qtbot.waitUntil(
            lambda: (
                win.event_list.count() == 1
                and len(win.panels) == 3
                and len(win.panels["garage"].lines["anomaly"].series) == 30
            ),
            timeout=15_000,
        )
        qtbot.waitUntil(lambda: win.events["e-front"].explanation == "Someone is breaking in.", timeout=5000)
        win.event_list.setCurrentRow(0)
        assert not win.snapshot.pixmap().isNull()
        assert win.camera_table.item(0, 1).text() == "online"
        # garbage on the console's topics: counted, ignored
        import aiomqtt

        async def garbage() -> None:
            async with aiomqtt.Client("127.0.0.1", broker.port) as c:
                await c.publish("cons/front/rules/anomaly/score", b"{truncated")
                await c.publish("cons/events", b"\x00\x01")
                await c.publish("cons/front/rules/anomaly/score", b"x" * 400_000)

        asyncio.run(garbage())
        qtbot.waitUntil(lambda: win.feed.malformed == 3, timeout=5000)
        assert win.isVisible()
        shot(win, "console-mqtt")
        # the broker goes away: the window says so, and reconnects by itself
        broker.stop()
        qtbot.waitUntil(lambda: not win.link.connected, timeout=10_000)
        assert "disconnected" in win.link_label.text()
        broker.start()
        qtbot.waitUntil(lambda: win.link.connected, timeout=15_000)
        publisher.join(15)
        publisher = publish_with_sink(
            broker.port,
            "cons",
            tmp_path,
            [WindowScore("front", 99, 0, 1, time.time(), 0.42, ("after the restart",), (1,))],
        )
        qtbot.waitUntil(lambda: win.panels["front"].description.text() == "after the restart", timeout=10_000)
        publisher.join(15)
        assert not publisher.is_alive()
    finally:
        feeder.stop()
        broker.stop()


def _fields(ev: Event) -> dict:
    from dataclasses import fields

    return {f.name: getattr(ev, f.name) for f in fields(ev)}


def test_sixteen_cameras_and_a_burst_of_events_stay_bounded(qtbot) -> None:
    feed = ConsoleFeed()
    win = ConsoleWindow(feed, threshold=0.7, span_s=300, refresh_ms=100, capacity=600)
    qtbot.addWidget(win)
    win.show()
    now = time.time()
    for k in range(900):  # 15 minutes of 1 Hz scores from 16 cameras, more than the ring holds
        for c in range(16):
            feed.push(ScorePoint(f"cam{c:02d}", now - 900 + k, (k % 50) / 50, None))
    for i in range(100):
        feed.push(EventView(f"b{i}", f"cam{i % 16:02d}", now - 100 + i, now - 99 + i, 0.9, 0.1, None, ("x",), None))
    qtbot.waitUntil(lambda: win.event_list.count() == 100, timeout=10_000)
    assert len(win.panels) == 16
    assert all(len(p.lines["anomaly"].series) == 600 for p in win.panels.values())
    assert win.event_list.item(0).data(QtCore.Qt.ItemDataRole.UserRole) == "b99"
    assert max(len(p.regions) for p in win.panels.values()) <= 64
    shot(win, "console-16-cameras")


def test_history_from_the_event_store(qtbot, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "c.mp4", seconds=6, fps=10, static_until=3.0)
    db = tmp_path / "events.sqlite"
    cfg = validate(
        {
            "cameras": [{"name": "door", "url": str(clip), "sampling": {"every_n_frames": 5}}],
            "windows": {"size": 2, "stride": 1},
            "alerting": {"threshold": 0.6, "hysteresis": 0.1},
        },
        env={},
    )
    fake = AlarmAfter()
    asyncio.run(Monitor(cfg, models=fake_engine(fake, cfg), sinks=[StoreSink(StoreSettings(path=db))]).run())
    feed = ConsoleFeed()
    assert load_history(feed, db, hours=1) == 11 + 1
    win = ConsoleWindow(feed, threshold=0.6, refresh_ms=50)
    qtbot.addWidget(win)
    qtbot.waitUntil(lambda: win.event_list.count() == 1, timeout=3000)
    assert len(win.panels["door"].lines["anomaly"].series) == 11
    ev = next(iter(win.events.values()))
    assert ev.snapshot is not None and ev.explanation == "something alarming happened"


def test_run_console_in_process(qtbot, tmp_path: Path) -> None:
    """``monitor run --console``: Qt on this thread, the pipeline on another, no broker."""
    clips = [make_clip(tmp_path / f"c{i}.mp4", seconds=6, fps=10, static_until=3.0) for i in range(3)]
    cfg = validate(
        {
            "cameras": [
                {"name": f"cam{i}", "url": str(c), "sampling": {"every_n_frames": 5}} for i, c in enumerate(clips)
            ],
            "windows": {"size": 2, "stride": 1},
            "alerting": {"threshold": 0.6, "hysteresis": 0.1},
            "outputs": {"status_interval_s": 0.2},
        },
        env={},
    )
    fake = AlarmAfter(delay_s=0.02)
    feed = ConsoleFeed()
    mon = Monitor(cfg, models=fake_engine(fake, cfg), sinks=[ConsoleSink(feed)])
    from PySide6 import QtWidgets

    seen: dict[str, object] = {}

    def close_when_done() -> None:
        wins = [w for w in QtWidgets.QApplication.topLevelWidgets() if isinstance(w, ConsoleWindow) and w.isVisible()]
        if wins and not wins[0].link.connected and wins[0].link.detail == "pipeline finished":
            win = wins[0]
            win.pump()
            seen["cameras"] = sorted(win.panels)
            seen["events"] = win.event_list.count()
            seen["status"] = win.camera_table.item(0, 1).text()
            seen["thresholds"] = win.panels["cam0"].thresholds()
            win.event_list.setCurrentRow(0)
            shot(win, "console-run")
            win.close()
        else:
            QtCore.QTimer.singleShot(100, close_when_done)

    QtCore.QTimer.singleShot(100, close_when_done)
    summary = run_with_pipeline(mon.run, feed, span_s=60, history=None, hours=1)
    assert not summary.failed and len(summary.cameras) == 3
    assert seen["cameras"] == ["cam0", "cam1", "cam2"] and seen["events"] == 3
    assert seen["status"] in ("online", "offline")
    assert seen["thresholds"] == {"anomaly": 0.6}  # as the camera's settings owner published it


def test_console_commands_as_a_user_runs_them(tmp_path: Path, tiny_vlm: Path) -> None:
    """``monitor console`` against a broker and ``monitor run --console``: start, work, stop on SIGTERM."""
    import os
    import signal
    import subprocess
    import sys

    from tests.test_cli_run import ROOT

    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    broker = Broker(tmp_path / "broker").start()
    try:
        con = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "monitor",
                "console",
                "--broker",
                f"mqtt://user:s3cret@127.0.0.1:{broker.port}",
                "--prefix",
                "cli",
            ],
            cwd=tmp_path,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        err = ""
        assert con.stderr is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "console: connected to" not in err:
            err += con.stderr.readline()
        assert "console: connected to mqtt://***@127.0.0.1" in err, err  # user info is masked in logs
        con.send_signal(signal.SIGTERM)
        err += con.communicate(timeout=10)[1]
        assert con.returncode == 0, err
        assert "s3cret" not in err
    finally:
        broker.stop()
    clip = make_clip(tmp_path / "c.mp4", seconds=2)
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[store]\nenabled = false\n[[cameras]]\nname = "cam"\nurl = "{clip}"\n[cameras.sampling]\nevery_n_frames = 5\n'
    )
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "monitor",
            "run",
            "--console",
            "--config",
            str(cfg),
            "--model",
            str(tiny_vlm),
            "--output",
            str(tmp_path / "out"),
        ],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert run.stderr is not None
    err = ""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and "frames read" not in err:  # the run's summary line: the pipeline ended
        err += run.stderr.readline()
    assert run.poll() is None, err  # the window stays open after the files end
    run.send_signal(signal.SIGTERM)
    err += run.communicate(timeout=15)[1]
    assert run.returncode == 0, err
    assert (tmp_path / "out" / "results.jsonl").read_text().count('"kind": "description"') == 4


def test_each_rule_has_its_own_line(qtbot) -> None:
    feed = ConsoleFeed()
    win = ConsoleWindow(feed, threshold=0.7, span_s=120, refresh_ms=50)
    qtbot.addWidget(win)
    win.show()
    now = time.time()
    decoder = MqttDecoder("llmvad", feed)
    for k in range(10):
        feed.push(ScorePoint("yard", now - 10 + k, 0.1, "quiet"))
        for item in decoder.decode(
            "llmvad/yard/rules/fence/score", json.dumps({"wall_time": now - 10 + k, "score": 0.8}).encode()
        ):
            feed.push(item)
        for item in items_from_record(
            WindowScore("yard", k, 0.0, 0.0, now - 10 + k, 0.3, ("quiet",), (k,), rule="parcel")
        ):
            feed.push(item)
    qtbot.waitUntil(
        lambda: "yard" in win.panels and set(win.panels["yard"].lines) == {"anomaly", "fence", "parcel"}, timeout=3000
    )
    panel = win.panels["yard"]
    qtbot.waitUntil(lambda: len(panel.lines["parcel"].series) == 10, timeout=3000)
    assert len(panel.lines["anomaly"].series) == 10 and len(panel.lines["fence"].series) == 10
    assert list(panel.lines["fence"].series.arrays()[1]) == [0.8] * 10
    # a rule's score is not the camera's anomaly score in the table, nor its description
    row = [win.camera_table.item(0, c).text() for c in range(5)]
    assert row[4] == "0.10" and panel.description.text() == "quiet"
    # a malformed rule topic is refused like any other
    assert decoder.decode("llmvad/yard/rules/Bad Name/score", b"{}") == [] and feed.malformed == 1


def test_the_console_shows_each_rules_threshold_in_force(qtbot, tmp_path: Path) -> None:
    """A camera's own threshold and an operator's change of another rule's, as the monitor publishes them."""
    import uuid

    import aiomqtt

    from tests.test_operator_controls import HalfSure, Running, live_config

    broker = Broker(tmp_path / "broker").start()
    pfx = f"t{uuid.uuid4().hex[:8]}"
    clip = make_clip(tmp_path / "walk.mp4", seconds=4, fps=10)
    fence = {"name": "fence", "question": "Does someone climb the fence?", "threshold": 0.8}
    cfg = live_config(
        tmp_path, broker.port, pfx, clip, rules=[fence], camera={"alerting": {"threshold": 0.55, "hysteresis": 0.1}}
    )
    loop: dict[str, asyncio.AbstractEventLoop | asyncio.Event] = {}

    async def monitor() -> None:
        loop["stop"] = stop = asyncio.Event()
        loop["loop"] = asyncio.get_running_loop()
        async with Running(cfg, HalfSure()):
            await stop.wait()

    runner = threading.Thread(target=asyncio.run, args=(monitor(),))
    runner.start()
    try:
        win, feeder = window_with_feeder(qtbot, broker.port, pfx, threshold=None)
        qtbot.waitUntil(lambda: "yard" in win.panels and len(win.panels["yard"].thresholds()) == 2, timeout=15_000)
        assert win.panels["yard"].thresholds() == {"anomaly": 0.55, "fence": 0.8}  # not [alerting]'s 0.6

        async def operator() -> None:
            async with aiomqtt.Client("127.0.0.1", broker.port) as c:
                await c.publish(f"{pfx}/yard/rules/fence/threshold/set", b"0.3", qos=1)

        asyncio.run(operator())
        qtbot.waitUntil(lambda: win.panels["yard"].thresholds()["fence"] == 0.3, timeout=10_000)
        assert win.panels["yard"].thresholds()["anomaly"] == 0.55
        line = win.panels["yard"].lines["fence"].threshold
        assert line.isVisible() and line.value() == 0.3
        shot(win, "console-rule-thresholds")
        feeder.stop()
    finally:
        if "loop" in loop:
            loop["loop"].call_soon_threadsafe(loop["stop"].set)  # type: ignore[union-attr, arg-type]
        runner.join(30)
        broker.stop()


def test_odd_times_and_values_do_not_spoil_a_camera(qtbot) -> None:
    """Out-of-order and far-off times, old data, huge counters, null texts: each shown for what it is."""
    feed = ConsoleFeed()
    win = ConsoleWindow(feed, span_s=60, refresh_ms=50)
    qtbot.addWidget(win)
    win.show()
    now = time.time()
    feed.push(ScorePoint("cam", now - 30, 0.2, "a"))
    feed.push(ScorePoint("cam", 4_000_000_000.0, 0.9, "from 2096"))  # far in the future: not drawn, counted
    feed.push(ScorePoint("cam", 946_700_000.0, 0.5, "from 2000"))  # long ago: kept in its place, out of view
    for k in range(10):
        feed.push(ScorePoint("cam", now - 20 + k, 0.3, "b"))
    feed.push(ScorePoint("cam", now - 25, 0.4, "late"))  # arrives after newer ones
    feed.push(StatusView("cam", now, True, 1e300, int(1e300)))
    qtbot.waitUntil(lambda: "cam" in win.panels and len(win.panels["cam"].lines["anomaly"].series) == 13, timeout=3000)
    panel = win.panels["cam"]
    times, _ = panel.lines["anomaly"].series.arrays()
    assert list(times) == sorted(times) and feed.malformed == 1
    drawn, _ = panel.lines["anomaly"].curve.getData()
    assert list(drawn) == list(times)  # the curve holds every kept point, in time order
    win.pump()
    lo, hi = panel.plot.getViewBox().viewRange()[0]
    assert lo < now - 15 < hi  # the newest points are in view
    assert [win.camera_table.item(0, c).text() for c in (2, 3)] == ["1e+300", "1e+300"]
    # a camera whose data is old (history, a monitor that stopped): the view ends at its newest point
    for k in range(5):
        feed.push(ScorePoint("old", now - 7200 + k, 0.5, None))
    qtbot.waitUntil(lambda: "old" in win.panels, timeout=3000)
    win.pump()
    lo, hi = win.panels["old"].plot.getViewBox().viewRange()[0]
    assert lo < now - 7196 <= hi
    # an operator who drags the time axis away is not pulled back
    panel.plot.getViewBox().sigRangeChangedManually.emit([True, False])
    assert not panel.following
    # texts that are not texts
    dec = MqttDecoder("llmvad", feed)
    body = {"camera": "c", "wall_time": now, "score": 0.5, "descriptions": [None]}
    (point,) = dec.decode("llmvad/c/rules/anomaly/score", json.dumps(body).encode())
    assert point.description == "(no text)"
    shot(win, "console-odd-values")


XVFB_WINDOW = """
import json, sys, time
from PySide6 import QtWidgets
from monitor.console.feed import ConsoleFeed, ScorePoint
from monitor.console.window import ConsoleWindow

app = QtWidgets.QApplication([])
feed = ConsoleFeed()
window = ConsoleWindow(feed)
window.resize(1000, 700)
window.show()
now = time.time()
for i in range(30):
    feed.push(ScorePoint("door", now - 30 + i, 0.2 + 0.02 * i, "a person walks by"))
deadline = time.monotonic() + 30
while time.monotonic() < deadline and not (window.windowHandle() and window.windowHandle().isExposed()):
    app.processEvents()
    time.sleep(0.02)
for _ in range(20):
    window.pump()
    app.processEvents()
    time.sleep(0.02)
screen = app.primaryScreen().grabWindow(0).toImage()
screen.save(sys.argv[1])
colours = {screen.pixel(x, y) for x in range(0, screen.width(), 8) for y in range(0, screen.height(), 8)}
print(json.dumps({"platform": app.platformName(), "exposed": window.windowHandle().isExposed(),
                  "panels": sorted(window.panels), "colours": len(colours)}))
"""


def test_the_console_opens_a_real_window_under_xvfb(tmp_path: Path) -> None:
    """Through Qt's xcb plugin on a real (virtual) X display, as on a desktop: the window opens, draws a
    camera's curve, and ``monitor console`` runs and stops on SIGTERM (not exit 134 for a missing library)."""
    import signal
    import subprocess
    import sys

    from tests.helpers.xvfb import xvfb_display

    SHOTS.mkdir(parents=True, exist_ok=True)
    with xvfb_display() as display:
        env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
        r = subprocess.run(
            [sys.executable, "-c", XVFB_WINDOW, str(SHOTS / "console-xvfb.png")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr[-3000:]
        seen = json.loads(r.stdout.strip().splitlines()[-1])
        assert seen["platform"] == "xcb" and seen["exposed"] and seen["panels"] == ["door"]
        assert seen["colours"] > 3  # the screen shows a drawn window, not a blank display
        broker = Broker(tmp_path / "broker").start()
        try:
            con = subprocess.Popen(
                [sys.executable, "-m", "monitor", "console", "--broker", f"mqtt://127.0.0.1:{broker.port}"],
                cwd=tmp_path,
                env=env,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert con.stderr is not None
            err = ""
            while "console: connected to" not in err and con.poll() is None:
                err += con.stderr.readline()
            assert con.poll() is None, err
            con.send_signal(signal.SIGTERM)
            err += con.communicate(timeout=30)[1]
            assert con.returncode == 0, err
        finally:
            broker.stop()
