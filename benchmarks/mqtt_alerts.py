"""MQTT alert latency and throughput with the durable outbox, against a local Mosquitto.

    .venv/bin/python -m benchmarks.mqtt_alerts [--alerts N]

Starts Mosquitto brokers of its own on free loopback ports and a subscriber. Each alert is a new event
with a real JPEG snapshot (a frame of the sample footage): three QoS 1 messages (snapshot, event, state).

* latency: one alert every 20 ms handed to the sink hub the moment "judging ends"; time until the
  subscriber has the event message (p50, p95); against Mosquitto's defaults and with
  ``set_tcp_nodelay true`` (Nagle's algorithm off on the broker's sockets);
* throughput: N alerts handed over at once; alerts per second until the subscriber has them all, with
  the outbox (SQLite write, publish, delete on PUBACK) and, in the same run, the same messages published
  directly with QoS 1 and no outbox.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiomqtt

from benchmarks.common import PEOPLE, decode_sampled
from monitor.config import MqttConfig
from pipeline.records import Event, EventChange
from pipeline.snapshots import encode_jpeg
from sinks.base import SinkHub
from sinks.mqtt_connection import DELIVERY_WINDOW
from sinks.mqtt_sink import MqttSink
from sinks.mqtt_topics import Topics
from tests.helpers.broker import Broker
from tests.helpers.subscriber import Subscriber


def alert(n: int, snapshot: bytes) -> EventChange:
    ev = Event(
        id=f"ev{n}",
        camera="cam",
        start_time=float(n),
        start_wall=time.time(),
        end_time=None,
        end_wall=None,
        peak_score=0.9,
        score=0.9,
        peak_frame_index=n,
        descriptions=("a", "b", "c"),
        snapshot=snapshot,
    )
    return EventChange("new", None, ev)


async def latency(broker: Broker, snapshot: bytes, tmp: Path, n: int = 200) -> tuple[float, float, float]:
    cfg = MqttConfig(enabled=True, port=broker.port, topic_prefix="lat", discovery=False, outbox=tmp / "lat.sqlite")
    sink = MqttSink.from_settings(cfg, {"cam": ["anomaly"]})
    async with Subscriber(broker.port, ["lat/events"]) as sub, SinkHub([sink]) as hub:
        await asyncio.wait_for(sink.connection.connected.wait(), 10)
        sent: dict[str, float] = {}
        for i in range(n):
            change = alert(i, snapshot)
            sent[change.after.id] = time.perf_counter()
            hub.publish(change)
            await asyncio.sleep(0.02)
        await sub.wait_for(lambda: len(sub.messages) >= n, 60)
        arrived = {m.json()["after"]["id"]: t for m, t in zip(sub.messages, sub.arrivals, strict=True)}
    ms = sorted((arrived[i] - sent[i]) * 1000 for i in sent)
    return statistics.median(ms), ms[int(0.95 * (len(ms) - 1))], ms[-1]


async def throughput_outbox(broker: Broker, snapshot: bytes, tmp: Path, n: int) -> float:
    cfg = MqttConfig(enabled=True, port=broker.port, topic_prefix="tput", discovery=False, outbox=tmp / "tput.sqlite")
    sink = MqttSink.from_settings(cfg, {"cam": ["anomaly"]})
    async with Subscriber(broker.port, ["tput/events"]) as sub, SinkHub([sink], maxsize=10 * n) as hub:
        await asyncio.wait_for(sink.connection.connected.wait(), 10)
        t0 = time.perf_counter()
        for i in range(n):
            hub.publish(alert(i, snapshot))
        await sub.wait_for(lambda: len(sub.messages) >= n, 600)
        return time.perf_counter() - t0


async def throughput_direct(broker: Broker, snapshot: bytes, n: int) -> float:
    topics = Topics("direct")
    msgs = [m for i in range(n) for m in topics.alert_messages(alert(i, snapshot), 10**9)]
    async with Subscriber(broker.port, ["direct/events"]) as sub, aiomqtt.Client("127.0.0.1", broker.port) as c:
        c.pending_calls_threshold = 4 * DELIVERY_WINDOW
        t0 = time.perf_counter()
        for a in range(0, len(msgs), DELIVERY_WINDOW):
            await asyncio.gather(
                *(c.publish(m.topic, m.payload, qos=1, retain=m.retain) for m in msgs[a : a + DELIVERY_WINDOW])
            )
        await sub.wait_for(lambda: len(sub.messages) >= n, 600)
        return time.perf_counter() - t0


async def run(n_alerts: int, snapshot: bytes) -> None:
    tmp = Path(tempfile.mkdtemp())
    default = Broker(tmp / "default").start()
    nodelay = Broker(tmp / "nodelay", extra="set_tcp_nodelay true\n").start()
    try:
        print(f"snapshot {len(snapshot) / 1024:.0f} KiB; an alert = 3 QoS 1 messages")
        for name, broker in (("mosquitto defaults", default), ("set_tcp_nodelay true", nodelay)):
            p50, p95, mx = await latency(broker, snapshot, tmp / name.replace(" ", "_"))
            print(f"latency judge->subscriber, {name:22s}: p50 {p50:5.1f} ms  p95 {p95:5.1f} ms  max {mx:5.1f} ms")
        t_outbox = await throughput_outbox(nodelay, snapshot, tmp, n_alerts)
        t_direct = await throughput_direct(nodelay, snapshot, n_alerts)
    finally:
        default.stop()
        nodelay.stop()
    print(
        f"throughput, {n_alerts} alerts: outbox on {n_alerts / t_outbox:6.0f} alerts/s ({t_outbox:.2f} s); "
        f"direct QoS 1, no outbox {n_alerts / t_direct:6.0f} alerts/s ({t_direct:.2f} s); "
        f"ratio {t_direct / t_outbox:.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alerts", type=int, default=2000)
    frames, _ = decode_sampled(PEOPLE, 200)
    asyncio.run(run(ap.parse_args().alerts, encode_jpeg(frames[len(frames) // 2].image)))


if __name__ == "__main__":
    main()
