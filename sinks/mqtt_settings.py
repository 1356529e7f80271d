"""Settings of the MQTT sink: broker, identity, TLS, topics, outbox and reconnect (``[mqtt]``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, model_validator

from pipeline.settings import Settings, state_dir

TopicPart = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")]


class TlsSettings(Settings):
    """TLS towards the broker."""

    ca_file: Path | None = Field(None, title="CA certificate(s) to trust (PEM); unset: the system's")
    cert_file: Path | None = Field(None, title="Client certificate (PEM), for brokers that require one")
    key_file: Path | None = Field(None, title="Client private key (PEM)")
    insecure: bool = Field(False, title="Skip certificate and host name checks (testing only)")

    @model_validator(mode="after")
    def _pairs(self) -> TlsSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class MqttSettings(Settings):
    """Alerts and state over MQTT (Frigate / Home Assistant conventions)."""

    host: str = Field("127.0.0.1", min_length=1, max_length=253)
    port: int = Field(1883, ge=1, le=65535)
    client_id: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.-]+$",
        title="Unset: llmvad-<instance>, unique per monitor instance",
    )
    topic_prefix: TopicPart = Field("llmvad", title="All topics start with this")
    username: str | None = Field(None, min_length=1, max_length=1024)
    password: str | None = Field(None, max_length=1024, title="Use ${ENV_VAR} rather than writing it here")
    tls: TlsSettings | None = Field(None, title="Set (even empty: [mqtt.tls]) to connect with TLS")
    keepalive_s: int = Field(30, ge=5, le=3600)
    discovery: bool = Field(True, title="Home Assistant MQTT discovery")
    discovery_prefix: TopicPart = "homeassistant"
    outbox: Path = Field(
        default_factory=lambda: state_dir() / "{instance}" / "mqtt-outbox.sqlite",
        title="Alerts wait here until the broker has them ({instance}: this monitor instance's name)",
    )
    commands: bool = Field(True, title="Obey <prefix>/<camera>/{enabled,threshold,describe}/set (restrict with an ACL)")
    controls: Path = Field(
        default_factory=lambda: state_dir() / "{instance}" / "controls.json",
        title="The operators' settings (enabled, threshold) kept across restarts",
    )
    reconnect_initial_s: float = Field(1.0, gt=0, le=600)
    reconnect_max_s: float = Field(30.0, gt=0, le=3600)
    forget_on_stop: bool = Field(
        False,
        title="On a clean stop, clear what this instance keeps retained on the broker (Home Assistant devices, "
        "settings, availability): for an instance that will not run again under its name",
    )
    snapshot_max_bytes: int = Field(4_000_000, ge=1024, le=256_000_000, title="Larger snapshots are not sent")

    @model_validator(mode="after")
    def _checks(self) -> MqttSettings:
        if self.password is not None and self.username is None:
            raise ValueError("password given without username")
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must not be below reconnect_initial_s")
        return self
