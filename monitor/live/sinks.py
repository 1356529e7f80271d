"""Which sinks a configuration asks for."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from monitor.config import AppConfig
from sinks.base import Sink
from sinks.jsonl_sink import JsonLinesSink
from sinks.log_sink import LogSink
from sinks.mqtt_connection import MqttConnection
from sinks.mqtt_sink import MqttSink
from sinks.mqtt_topics import Topics
from sinks.store_sink import StoreSink

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LiveSinks:
    """The sinks of a run and, with MQTT on, the broker connection (commands come in over it) and topics."""

    sinks: list[Sink]
    mqtt: MqttConnection | None = None
    topics: Topics | None = None


def mqtt_topics(cfg: AppConfig) -> Topics:
    """The topics of this configuration's (bound) instance."""
    return Topics(cfg.mqtt.topic_prefix, cfg.mqtt.discovery_prefix, cfg.instance or "")


def build_sinks(cfg: AppConfig) -> LiveSinks:
    """The log sink always; JSON lines, the event store and MQTT as configured."""
    sinks: list[Sink] = [LogSink(log_descriptions=cfg.outputs.log_descriptions)]
    if cfg.outputs.jsonl:
        sinks.append(JsonLinesSink(cfg.outputs.dir))
        log.info("writing results to %s", cfg.outputs.dir / "results.jsonl")
    if cfg.store.enabled:
        sinks.append(StoreSink(cfg.store))
    if not cfg.mqtt.enabled:
        return LiveSinks(sinks)
    rules = {c.name: [r.name for r in c.rules] for c in cfg.cameras}
    mqtt = MqttSink.from_settings(cfg.mqtt, rules, instance=cfg.instance or "")
    sinks.append(mqtt)
    return LiveSinks(sinks, mqtt.connection, mqtt.topics)
