"""The SQLite event history, ``monitor events`` and the Prometheus endpoint."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
import urllib.request
from pathlib import Path

import pytest

from monitor.cli import main
from monitor.config import validate
from monitor.live.history import parse_time
from monitor.live.monitor import Monitor
from monitor.live.prometheus import MonitorCollector, serve
from pipeline.records import Description, Event, WindowScore
from sinks.event_store import EventStore
from sinks.store_sink import StoreSettings, StoreSink
from tests.helpers.broker import free_port
from tests.helpers.fakes import AlarmAfter, fake_engine
from tests.helpers.media import make_clip


@pytest.fixture
def history(tmp_path: Path) -> Path:
    """A history written by a real monitor run (fake model) with one event."""
    clip = make_clip(tmp_path / "c.mp4", seconds=6, fps=10, static_until=3.0)
    db = tmp_path / "state" / "events.sqlite"
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
    return db


def test_history_survives_and_lists(history: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = EventStore(history, readonly=True)
    (ev,) = store.events()
    assert ev.camera == "door" and ev.end is not None and ev.explanation == "something alarming happened"
    assert ev.has_snapshot and ev.peak_score > 0.98  # the smoothed score
    assert len(store.scores(since=0)) == 11
    assert len(store.descriptions("door", 0, time.time() + 1)) == 12
    store.close()

    assert main(["events", "--db", str(history)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:5] == ["ID", "CAMERA", "START", "DURATION", "PEAK"]
    assert ev.id in out[1] and "door" in out[1] and out[-1] == "1 event"

    assert main(["events", "--db", str(history), "--format", "json", "--camera", "door", "--since", "1h"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["id"] == ev.id and row["descriptions"] and "snapshot" not in row

    assert main(["events", "--db", str(history), "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0][:2] == ["id", "camera"] and rows[1][0] == ev.id

    assert main(["events", "--db", str(history), "--camera", "other"]) == 0
    assert capsys.readouterr().out.strip() == "0 events"
    assert main(["events", "--db", str(history), "--until", "2000-01-01"]) == 0
    assert capsys.readouterr().out.strip() == "0 events"


def test_show_writes_the_snapshot(history: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (ev,) = EventStore(history, readonly=True).events()
    target = tmp_path / "snap.jpg"
    assert main(["events", "show", ev.id[:14], "--db", str(history), "--snapshot", str(target)]) == 0
    out = capsys.readouterr().out
    assert f"event {ev.id} on door" in out and "something alarming happened" in out
    assert "everything described during the event" in out and f"snapshot written to {target}" in out
    assert target.read_bytes()[:2] == b"\xff\xd8"
    assert main(["events", "show", "nope", "--db", str(history)]) == 1
    assert "no event 'nope'" in capsys.readouterr().err


def test_events_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["events", "--db", str(tmp_path / "none.sqlite")]) == 2
    assert "no event history at" in capsys.readouterr().err
    assert main(["events", "--db", str(tmp_path / "none.sqlite"), "--since", "yesterday"]) == 2
    assert "cannot read time 'yesterday'" in capsys.readouterr().err


def test_parse_time() -> None:
    assert parse_time("2h", now=10_000) == 10_000 - 7200
    assert parse_time("1.5d", now=200_000) == 200_000 - 129_600
    assert parse_time("1764000000") == 1764000000.0
    assert parse_time("2026-11-25T10:00:00+00:00") == 1795600800.0


def make_event(i: int, wall: float, snapshot_kb: int = 0) -> Event:
    return Event(
        f"e{i}", "cam", i, wall, i + 1.0, wall + 1, 0.9, 0.9, i, ("d",), "x", b"\xff" * (snapshot_kb * 1024) or None
    )


def test_retention_by_age_and_size(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "h.sqlite")
    now = time.time()
    for i in range(50):
        wall = now - (50 - i) * 86400  # one a day, the oldest 50 days ago
        store.upsert_event(make_event(i, wall, snapshot_kb=40))
        store.add_score(WindowScore("cam", i, 0, 1, wall, 0.5, ("a",), (1,)))
        store.add_description(Description("cam", i, 0, wall, "text", False))
    assert store.enforce_retention(max_age_s=30 * 86400, max_bytes=1e12, now=now) == 3 * 20
    assert len(store.events()) == 30 and min(e.start for e in store.events()) >= now - 30 * 86400
    before = store.size_bytes()
    assert before > 1_000_000
    store.enforce_retention(max_age_s=1e9, max_bytes=400_000, now=now)
    assert store.size_bytes() <= 400_000
    kept = store.events()
    assert 0 < len(kept) < 30 and kept[-1].id == "e49"  # the newest survive
    store.close()
    assert (tmp_path / "h.sqlite").stat().st_size < before  # space given back to the file system


def test_open_events_are_closed_after_a_crash(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "h.sqlite")
    open_ev = Event("open1", "cam", 0, 100.0, None, None, 0.9, 0.9, 0, ("d",))
    store.upsert_event(open_ev)
    store.close()
    sink = StoreSink(StoreSettings(path=tmp_path / "h.sqlite"))

    async def reopen() -> None:
        await sink.open()
        await sink.close()

    asyncio.run(reopen())
    (ev,) = EventStore(tmp_path / "h.sqlite", readonly=True).events()
    assert ev.end is not None


async def test_prometheus_endpoint(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "c.mp4", seconds=6, fps=10, static_until=3.0)
    cfg = validate(
        {
            "cameras": [{"name": "door", "url": str(clip), "sampling": {"every_n_frames": 5}}],
            "windows": {"size": 2, "stride": 1},
            "alerting": {"threshold": 0.6, "hysteresis": 0.1},
        },
        env={},
    )
    fake = AlarmAfter()
    mon = Monitor(cfg, models=fake_engine(fake, cfg), sinks=[])
    port = free_port()
    serve(MonitorCollector(mon), port, "127.0.0.1")
    await mon.run()
    text = await asyncio.to_thread(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode())
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert float(lines['llmvad_frames_read_total{camera="door"}']) == 60
    assert float(lines['llmvad_frames_sampled_total{camera="door"}']) == 12
    assert float(lines['llmvad_frames_dropped_total{camera="door"}']) == 0
    assert float(lines['llmvad_windows_scored_total{camera="door"}']) == 11
    assert float(lines['llmvad_events_total{camera="door"}']) == 1
    assert float(lines['llmvad_queue_depth{camera="door"}']) == 0
    assert float(lines['llmvad_model_batch_size_count{kind="describe"}']) >= 1
    assert float(lines['llmvad_model_batch_size_sum{kind="describe"}']) == 12
    assert 'llmvad_model_batch_seconds_bucket{kind="score",le="+Inf"}' in lines
    # every figure the parts keep is exported, read by iterating their stats: those no collector named before
    for name in (
        "source_reconnects_total",
        "source_clock_jumps_total",
        "alerts_suppressed_total",
        "clips_written_total",
    ):
        assert f'llmvad_{name}{{camera="door"}}' in lines, name
    for name in ("model_restarts_total", "judge_cache_hits_total", "event_loop_stalls_total"):
        assert f"llmvad_{name}" in lines, name
    # and the camera's last status record carries the same figures
    assert set(mon._cameras[0].status().figures) >= {"frames_read", "source_reconnects", "alerts_suppressed"}
