"""Sinks for tests: one that keeps everything it receives, and the monitor's MQTT sink made simply."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pipeline.records import GENERAL_RULE, CameraStatus, Description, EventChange, Record, WindowScore
from sinks.mqtt_settings import MqttSettings
from sinks.mqtt_sink import MqttSink


class CollectingSink:
    name = "collect"

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.opened = self.closed = False

    async def open(self) -> None:
        self.opened = True

    async def handle(self, record: Record) -> None:
        self.records.append(record)

    async def close(self) -> None:
        self.closed = True

    def of(self, kind: type) -> list:
        return [r for r in self.records if isinstance(r, kind)]

    @property
    def descriptions(self) -> list[Description]:
        return self.of(Description)

    @property
    def scores(self) -> list[WindowScore]:
        return self.of(WindowScore)

    @property
    def events(self) -> list[EventChange]:
        return self.of(EventChange)

    @property
    def statuses(self) -> list[CameraStatus]:
        return self.of(CameraStatus)


def mqtt_sink(
    settings: MqttSettings,
    cameras: Sequence[str],
    *,
    rules: Mapping[str, Sequence[str]] | None = None,
    instance: str = "",
) -> MqttSink:
    """The monitor's MQTT sink for ``cameras`` (with only the general rule, unless ``rules`` says)."""
    return MqttSink.from_settings(settings, rules or {c: [GENERAL_RULE] for c in cameras}, instance=instance)
