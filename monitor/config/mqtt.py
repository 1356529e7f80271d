"""``[mqtt]``: the MQTT sink's settings and whether it is on."""

from __future__ import annotations

from pydantic import Field

from sinks.mqtt_settings import MqttSettings


class MqttConfig(MqttSettings):
    """Alerts and state over MQTT (Frigate / Home Assistant conventions)."""

    enabled: bool = Field(False, title="Publish to an MQTT broker")
