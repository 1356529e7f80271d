"""Fault suite, broker: outages of several lengths during bursts of alerts, with a subscriber that keeps a
persistent session, as Home Assistant and Node-RED do. Every alert arrives, in order."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.records import Event, EventChange
from pipeline.supervision import LagProbe
from sinks.base import SinkHub
from tests.helpers.broker import Broker
from tests.helpers.sinks import mqtt_sink
from tests.helpers.subscriber import Subscriber
from tests.test_mqtt import mqtt_cfg

pytestmark = pytest.mark.slow


def change(n: int) -> EventChange:
    ev = Event(f"ev{n:03d}", "cam", n, 1000.0 + n, None, None, 0.9, 0.9, n, (f"d{n}",), snapshot=b"\xff\xd8%d" % n)
    return EventChange("new", None, ev) if n % 2 == 0 else EventChange("end", ev, replace(ev, end_time=n + 0.5))


@pytest.mark.timeout(300)
async def test_every_alert_arrives_in_order_through_outages(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broker = Broker(tmp_path / "broker").start()  # persistence on: sessions and queued messages survive
    pfx = f"t{uuid.uuid4().hex[:8]}"
    sink = mqtt_sink(mqtt_cfg(broker.port, pfx, outbox=str(tmp_path / "o.sqlite")), ["cam"])
    sent: list[str] = []
    n = 0
    lag = LagProbe()
    probe = asyncio.create_task(lag.run())
    try:
        async with Subscriber(broker.port, [f"{pfx}/events"]) as sub, SinkHub([sink]) as hub:
            await asyncio.wait_for(sink.connection.connected.wait(), 10)
            for outage in (0.3, 1.5, 4.0, 0.0):
                for _ in range(30):  # a burst, part of it in flight when the broker goes
                    hub.publish(change(n))
                    sent.append(f"ev{n:03d}")
                    n += 1
                    if n % 10 == 0:
                        await asyncio.sleep(0)
                if outage:
                    await asyncio.to_thread(broker.stop)
                    for _ in range(10):  # alerts while the broker is away
                        hub.publish(change(n))
                        sent.append(f"ev{n:03d}")
                        n += 1
                    await asyncio.sleep(outage)
                    await asyncio.to_thread(broker.start)
                    await asyncio.wait_for(sink.connection.connected.wait(), 30)
            for _ in range(600):
                ids = [p["after"]["id"] for p in sub.payloads()]
                if set(ids) >= set(sent) and sink.connection.stats.pending == 0:
                    break
                await asyncio.sleep(0.05)
    finally:
        probe.cancel()
        broker.stop()
    ids = [p["after"]["id"] for p in sub.payloads()]
    first_seen = list(dict.fromkeys(ids))
    # every alert, in the order the monitor emitted them; at-least-once, so duplicates may come (and are
    # recognised by their identical payload)
    assert first_seen == list(dict.fromkeys(sent)), (len(first_seen), len(set(sent)))
    by_key: dict[tuple[str, str], set[str]] = {}
    for p in sub.payloads():
        by_key.setdefault((p["after"]["id"], p["type"]), set()).add(json.dumps(p, sort_keys=True))
    assert all(len(v) == 1 for v in by_key.values())  # a duplicate is the very same message
    assert sink.connection.stats.pending == 0
    print(
        f"{len(sent)} alerts, {len(ids)} received ({len(ids) - len(first_seen)} duplicates), outages "
        f"{sink.connection.stats.outages}"
    )
    outage_lines = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(outage_lines) == 3  # one line per outage
    assert lag.stats.max_lag_s < 0.1, lag.stats.max_lag_s  # the event loop was never held up, outages included
