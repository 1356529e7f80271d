"""Which sinks a configuration asks for."""

from __future__ import annotations

import logging

from monitor.config import AppConfig
from sinks.base import Sink
from sinks.jsonl_sink import JsonLinesSink
from sinks.log_sink import LogSink
from sinks.mqtt_sink import MqttSink
from sinks.store_sink import StoreSink

log = logging.getLogger(__name__)


def build_sinks(cfg: AppConfig) -> tuple[list[Sink], MqttSink | None]:
    """The log sink always; JSON lines, the event store and MQTT as configured (and the MQTT sink itself)."""
    sinks: list[Sink] = [LogSink(log_descriptions=cfg.outputs.log_descriptions)]
    if cfg.outputs.jsonl:
        sinks.append(JsonLinesSink(cfg.outputs.dir))
        log.info("writing results to %s", cfg.outputs.dir / "results.jsonl")
    if cfg.store.enabled:
        sinks.append(StoreSink(cfg.store))
    mqtt = None
    if cfg.mqtt.enabled:
        mqtt = MqttSink(
            cfg.mqtt,
            [c.name for c in cfg.cameras],
            instance=cfg.instance or "",
            rules={c.name: [r.name for r in c.rules] for c in cfg.cameras},
        )
        sinks.append(mqtt)
    return sinks, mqtt
