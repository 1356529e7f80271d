"""The Prometheus endpoint: a collector that reads the running monitor's counters at scrape time."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from monitor.live.monitor import Monitor
from pipeline.inference import BATCH_BUCKETS, LATENCY_BUCKETS_S, RequestKind
from pipeline.stats import Figure, figures

log = logging.getLogger(__name__)


def _buckets(bounds: Sequence[float], counts: Sequence[int]) -> list[tuple[str, float]]:
    out, total = [], 0
    for bound, n in zip([*bounds, float("inf")], counts, strict=True):
        total += n
        out.append(("+Inf" if bound == float("inf") else str(bound), float(total)))
    return out


def _family(fig: Figure, labels: list[str]) -> CounterMetricFamily | GaugeMetricFamily:
    kind = CounterMetricFamily if fig.kind == "counter" else GaugeMetricFamily
    return kind(f"llmvad_{fig.name}", fig.doc, labels=labels)


class MonitorCollector:
    """Exports every figure of the running monitor (:func:`pipeline.stats.figures` of each part: per camera,
    per sink, the engine, the event loop, the judge, MQTT) and the engine's batch histograms."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def describe(self) -> list[Metric]:
        return []  # collected dynamically

    def collect(self) -> Iterator[Metric]:
        live = self.monitor.live_stats()
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for label, rows in (("camera", live.cameras), ("sink", [(n, [st]) for n, st in live.sinks])):
            for name, parts in rows:
                for fig in (f for part in parts for f in figures(part)):
                    families.setdefault(fig.name, _family(fig, [label])).add_metric([name], fig.value)
        for part in [*live.parts, *([] if live.engine is None else [live.engine])]:
            for fig in figures(part):
                family = families.setdefault(fig.name, _family(fig, []))
                family.add_metric([], fig.value)
        yield from families.values()
        engine = live.engine
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


def serve(collector: MonitorCollector, port: int, address: str) -> None:
    """Serve /metrics from a daemon thread on a registry of our own (no global state)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    start_http_server(port, addr=address, registry=registry)
    log.info("metrics on http://%s:%d/metrics", address, port)
