"""Fault suite, disk: the state and output folders on a real small filesystem (a tmpfs) that fills up while
events come and go, then frees up again. No alert is lost, the history catches up, the JSON lines stay
whole, and each sink says so once per outage."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import subprocess
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from monitor.config import validate
from monitor.live.monitor import Monitor
from monitor.live.sinks import build_sinks
from pipeline.engines.batching import Prepared
from pipeline.inference import DescribeResult
from sinks.event_store import EventStore
from tests.helpers.broker import Broker
from tests.helpers.fakes import FakeModel, fake_engine
from tests.helpers.media import make_clip
from tests.helpers.sinks import CollectingSink
from tests.helpers.subscriber import Subscriber
from tests.helpers.waiting import eventually_async

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (root only; skipped, saying why, elsewhere)."""
    path.mkdir(parents=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(folder: Path) -> Path:
    """A file that takes every free byte of the filesystem of ``folder``."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as f:
        for chunk in (1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while f.write(b"\0" * chunk):
                    pass
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    return filler


class Waves(FakeModel):
    """Every sixth to eleventh of each twelve descriptions it makes is ALARM: events come and go."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0
        self._count = threading.Lock()

    def describe(
        self, batch: Sequence[Prepared], max_new_tokens: int, cancel: threading.Event | None = None
    ) -> list[DescribeResult]:
        out = []
        for r in super().describe(batch, max_new_tokens, cancel):
            with self._count:
                self.n += 1
                hot = self.n % 12 >= 6
            out.append(DescribeResult(("ALARM " if hot else "") + r.text))
        return out


async def test_a_full_disk_loses_no_alert(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    broker = Broker(tmp_path / "broker").start()
    pfx = f"t{uuid.uuid4().hex[:8]}"
    clip = make_clip(tmp_path / "walk.mp4", seconds=4, fps=10)
    with small_filesystem(tmp_path / "small", "4m") as small:
        cfg = validate(
            {
                "cameras": [{"name": "yard", "url": str(clip), "realtime": True, "loop": True, "sampling": {"fps": 5}}],
                "windows": {"size": 1, "stride": 1},
                "judge": {"smoothing": 1.0},
                "alerting": {"threshold": 0.6, "hysteresis": 0.1, "cooldown_s": 0},
                "clips": {"enabled": False},
                "outputs": {"dir": str(small / "out"), "jsonl": True},
                "store": {"path": str(small / "events.sqlite")},
                "mqtt": {
                    "enabled": True,
                    "port": broker.port,
                    "topic_prefix": pfx,
                    "discovery": False,
                    "outbox": str(small / "outbox.sqlite"),
                    "controls": str(small / "controls.json"),
                    "reconnect_initial_s": 0.1,
                },
            },
            env={},
        )
        collected = CollectingSink()
        live = build_sinks(cfg)
        monitor = Monitor(cfg, models=fake_engine(Waves(), cfg), sinks=[*live.sinks, collected], mqtt=live.mqtt)
        assert live.mqtt is not None
        stats = live.mqtt.stats

        def ended() -> int:
            return sum(1 for c in collected.events if c.type == "end")

        outbox_failed = False
        try:
            async with Subscriber(broker.port, [f"{pfx}/events"]) as sub:
                stop = asyncio.Event()
                run = asyncio.create_task(monitor.run(stop))
                await eventually_async(lambda: ended() >= 2, what="two events before the disk fills")
                filler = await asyncio.to_thread(fill, small)
                before = ended()
                while ended() < before + 4:  # events begin and end while the disk is full
                    outbox_failed |= stats.outbox_failing
                    await asyncio.sleep(0.05)
                filler.unlink()
                after = ended()
                await eventually_async(lambda: ended() >= after + 2, what="two events after the disk freed up")
                await eventually_async(
                    lambda: not stats.outbox_failing and not any(st.failing for _, st in monitor.live_stats().sinks),
                    what="every sink working again",
                )
                stop.set()
                await asyncio.wait_for(run, 60)
                ids = {c.after.id for c in collected.events}
                await sub.wait_for(
                    lambda: (
                        {(p["type"], p["after"]["id"]) for p in sub.payloads()}
                        >= {(t, i) for i in ids for t in ("new", "end")}
                    ),
                    timeout=30,
                )
        finally:
            broker.stop()
        # every event went out, new and end, in order for each event
        for event_id in ids:
            kinds = [p["type"] for p in sub.payloads() if p["after"]["id"] == event_id]
            assert kinds[0] == "new" and kinds[-1] == "end", (event_id, kinds)
        assert stats.lost == 0 and not stats.outbox_failing and stats.unsaved == 0
        assert outbox_failed, "the outbox never failed: the disk did not fill up as planned"
        # the history caught up: every event is there, ended
        store = EventStore(small / "events.sqlite", readonly=True)
        try:
            stored = {e.id: e for e in store.events()}
        finally:
            store.close()
        assert set(stored) == ids and all(e.end is not None for e in stored.values())
        # the JSON lines stayed whole
        for line in (small / "out" / "results.jsonl").read_text().splitlines():
            json.loads(line)
    # one line per sink for the outage, and one for its end
    messages = [r.getMessage() for r in caplog.records]
    assert sum("outbox" in m and "cannot be written" in m for m in messages) == 1, messages
    assert sum("outbox" in m and "is written again" in m for m in messages) == 1
    for sink in ("store", "jsonl"):
        assert sum(m.startswith(f"sink {sink} failed") for m in messages) == 1, [m for m in messages if sink in m]
        assert sum(m.startswith(f"sink {sink} works again") for m in messages) == 1
