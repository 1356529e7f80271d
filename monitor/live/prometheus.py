"""The Prometheus endpoint: a collector that reads the running monitor's counters at scrape time."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from monitor.live.monitor import Monitor
from pipeline.inference import BATCH_BUCKETS, LATENCY_BUCKETS_S, RequestKind
from sinks.mqtt_sink import MqttSink

log = logging.getLogger(__name__)


def _buckets(bounds: Sequence[float], counts: Sequence[int]) -> list[tuple[str, float]]:
    out, total = [], 0
    for bound, n in zip([*bounds, float("inf")], counts, strict=True):
        total += n
        out.append(("+Inf" if bound == float("inf") else str(bound), float(total)))
    return out


class MonitorCollector:
    """Exports frames, queues, batches, model latency, windows, events and alert delivery."""

    def __init__(self, monitor: Monitor, mqtt: MqttSink | None = None) -> None:
        self.monitor = monitor
        self.mqtt = mqtt

    def describe(self) -> list[Metric]:
        return []  # collected dynamically

    def collect(self) -> Iterator[Metric]:
        live = self.monitor.live_stats()
        cams, engine = live.cameras, live.engine
        per_camera: dict[str, Any] = {
            "frames_read": ("Frames decoded", lambda s, c: s.frames_read),
            "frames_sampled": ("Frames sampled for the model", lambda s, c: s.frames_sampled),
            "frames_gated": ("Sampled frames the motion gate kept from the model", lambda s, c: s.frames_gated),
            "frames_dropped": ("Frames dropped by a full queue", lambda s, c: s.frames_dropped),
            "frames_described": ("Frames described by the model", lambda s, c: c.described),
            "windows_scored": ("Windows scored by the judge", lambda s, c: c.windows),
            "events": ("Events started", lambda s, c: c.events),
            "errors": ("Model or judge failures", lambda s, c: c.errors),
        }
        for name, (doc, get) in per_camera.items():
            fam = CounterMetricFamily(f"llmvad_{name}", doc, labels=["camera"])
            for status, counters in cams:
                fam.add_metric([status.camera], get(status, counters))
            yield fam
        depth = GaugeMetricFamily("llmvad_queue_depth", "Frames waiting for the model", labels=["camera"])
        up = GaugeMetricFamily("llmvad_source_connected", "1 while the source delivers frames", labels=["camera"])
        for status, _ in cams:
            depth.add_metric([status.camera], status.queue_depth)
            up.add_metric([status.camera], float(status.connected))
        yield depth
        yield up
        if engine is not None:
            lat = HistogramMetricFamily("llmvad_model_batch_seconds", "Model time per batch", labels=["kind"])
            size = HistogramMetricFamily("llmvad_model_batch_size", "Requests per batch", labels=["kind"])
            for kind in RequestKind:
                lat.add_metric([kind.value], _buckets(LATENCY_BUCKETS_S, engine.latency[kind]), engine.busy_s[kind])
                size.add_metric(
                    [kind.value], _buckets(BATCH_BUCKETS, engine.batch_sizes[kind]), float(engine.items[kind])
                )
            yield lat
            yield size
            yield CounterMetricFamily("llmvad_model_errors", "Model requests that failed", value=engine.errors)
        yield GaugeMetricFamily(
            "llmvad_event_loop_lag_max_seconds", "Longest event loop stall so far", value=live.loop_lag_max_s
        )
        if self.mqtt is not None:
            yield CounterMetricFamily(
                "llmvad_alerts_delivered", "MQTT alert messages acknowledged by the broker", value=self.mqtt.delivered
            )
            yield GaugeMetricFamily(
                "llmvad_alerts_pending", "MQTT alert messages waiting in the outbox", value=self.mqtt.pending
            )
            yield CounterMetricFamily(
                "llmvad_mqtt_state_dropped",
                "Score and status messages dropped while disconnected",
                value=self.mqtt.dropped,
            )
            yield CounterMetricFamily(
                "llmvad_commands_applied", "Operator commands carried out", value=self.mqtt.commands_applied
            )
            yield CounterMetricFamily(
                "llmvad_commands_rejected", "Malformed operator commands ignored", value=self.mqtt.commands_rejected
            )
        dropped = CounterMetricFamily("llmvad_sink_dropped", "Records a full sink queue dropped", labels=["sink"])
        failed = CounterMetricFamily("llmvad_sink_failures", "Records a sink failed to handle", labels=["sink"])
        for r in live.sinks:
            dropped.add_metric([r.sink.name], r.dropped)
            failed.add_metric([r.sink.name], r.failed)
        yield dropped
        yield failed


def serve(collector: MonitorCollector, port: int, address: str) -> None:
    """Serve /metrics from a daemon thread on a registry of our own (no global state)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    start_http_server(port, addr=address, registry=registry)
    log.info("metrics on http://%s:%d/metrics", address, port)
