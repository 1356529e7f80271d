"""Which sinks a configuration asks for."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from monitor.config import AppConfig
from sinks.base import Sink
from sinks.event_store import RunRecord
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


def run_record(cfg: AppConfig) -> RunRecord:
    """This run as its history notes it: the judge it runs (a local model folder made absolute, so that a
    later ``monitor summarize`` elsewhere finds it) and where its results go."""
    if cfg.judge_backend == "openai":
        judge = cfg.judge_server.model
    else:
        judge = cfg.judge.model or cfg.model.id
        if Path(judge).expanduser().is_dir():
            judge = str(Path(judge).expanduser().resolve())
    results = str(cfg.outputs.dir.resolve()) if cfg.outputs.jsonl else None
    return RunRecord(time.time(), cfg.instance or "", judge, cfg.judge_backend, results)


def build_sinks(cfg: AppConfig) -> LiveSinks:
    """The log sink always; JSON lines, the event store and MQTT as configured."""
    sinks: list[Sink] = [LogSink(log_descriptions=cfg.outputs.log_descriptions)]
    if cfg.outputs.jsonl:
        sinks.append(JsonLinesSink(cfg.outputs.dir))
        log.info("writing results to %s", cfg.outputs.dir / "results.jsonl")
    if cfg.store.enabled:
        sinks.append(StoreSink(cfg.store, run=run_record(cfg)))
    if not cfg.mqtt.enabled:
        return LiveSinks(sinks)
    rules = {c.name: [r.name for r in c.rules] for c in cfg.cameras}
    mqtt = MqttSink.from_settings(cfg.mqtt, rules, instance=cfg.instance or "")
    sinks.append(mqtt)
    return LiveSinks(sinks, mqtt.connection, mqtt.topics)
