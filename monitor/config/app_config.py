"""The whole configuration: every section, with the cameras' overrides merged in."""

from __future__ import annotations

import hashlib
import re
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from monitor.config.cameras import CameraConfig, merge_camera
from monitor.config.judge import JudgeConfig
from monitor.config.model import ModelConfig
from monitor.config.mqtt import MqttConfig
from monitor.config.outputs import OutputConfig
from monitor.config.prometheus import PrometheusConfig
from monitor.config.store import StoreConfig
from pipeline.alerts import AlertSettings
from pipeline.clips import ClipSettings
from pipeline.engines.openai import OpenAISettings
from pipeline.rules import Rule, check_rules, general_rule
from pipeline.sampling import SamplingSettings
from pipeline.settings import Settings
from pipeline.summaries import SummarySettings
from pipeline.windows import WindowSettings

INSTANCE_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
"""An instance name: it goes into MQTT topics, client ids and file names."""


class AppConfig(Settings):
    """The whole configuration (``config.toml``).

    ``[sampling]``, ``[windows]`` and ``[alerting]`` are the stages' own settings models
    (:class:`~pipeline.sampling.SamplingSettings`, :class:`~pipeline.windows.WindowSettings`,
    :class:`~pipeline.alerts.AlertSettings`); the other sections live beside this module.
    """

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    instance: str | None = Field(
        None,
        pattern=INSTANCE_PATTERN,
        title="This monitor instance's name (MQTT client id, availability, state files); unset: the host name "
        "and a hash of the cameras it runs",
    )
    model: ModelConfig = ModelConfig()
    judge: JudgeConfig = JudgeConfig()
    sampling: SamplingSettings = SamplingSettings()
    windows: WindowSettings = WindowSettings()
    alerting: AlertSettings = AlertSettings()
    clips: ClipSettings = ClipSettings()
    outputs: OutputConfig = Field(default_factory=OutputConfig)  # its default paths: the state folder when validated
    mqtt: MqttConfig = Field(default_factory=MqttConfig)  # its default paths: the state folder when validated
    store: StoreConfig = Field(default_factory=StoreConfig)  # its default paths: the state folder when validated
    prometheus: PrometheusConfig = PrometheusConfig()
    summaries: SummarySettings = SummarySettings()
    rules: tuple[Rule, ...] = Field((), title="[[rules]]: what every camera watches for besides anomalies")
    cameras: tuple[CameraConfig, ...] = ()

    @field_validator("rules")
    @classmethod
    def _distinct_rules(cls, value: tuple[Rule, ...]) -> tuple[Rule, ...]:
        return check_rules(value, tables=True)

    @model_validator(mode="before")
    @classmethod
    def _merge_cameras(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("cameras"), list | tuple):
            data = {**data, "cameras": [merge_camera(c, data) for c in data["cameras"]]}
        return data

    @model_validator(mode="after")
    def _judge_backend(self) -> AppConfig:
        m, j = self.model, self.judge
        backend = j.backend or m.backend
        if backend == "openai" and j.openai is None and not (m.backend == "openai" and j.model is None):
            raise ValueError(
                "judge.openai: backend 'openai' for the judge needs [judge.openai] with base_url and model"
            )
        if backend == "transformers" and m.backend == "openai" and j.model is None:
            raise ValueError("judge.model: the VLM runs on a server; name the in-process judge model, or set backend")
        if j.calibration is not None and backend != "transformers":
            raise ValueError(
                "judge.calibration: a calibration reads the judge's hidden states, which only an in-process judge "
                "(backend 'transformers') gives; remove it for a judge on a server"
            )
        return self

    @property
    def general_rule(self) -> Rule:
        """The general anomaly rule of ``[judge]`` and ``[alerting]`` (a camera's own may differ)."""
        return general_rule(self.judge, self.alerting, self.judge.calibration)

    @property
    def judge_backend(self) -> str:
        """Where the judge runs: ``[judge] backend``, else as ``[model] backend``."""
        return self.judge.backend or self.model.backend

    @property
    def judge_server(self) -> OpenAISettings:
        """The server of a judge whose backend is ``openai``: ``[judge.openai]``, else ``[model.openai]``."""
        server = self.judge.openai or self.model.openai
        assert server is not None, "validated: a judge on a server has one"
        return server

    @field_validator("cameras")
    @classmethod
    def _unique_names(cls, value: tuple[CameraConfig, ...]) -> tuple[CameraConfig, ...]:
        names = [c.name for c in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"camera names must be unique; repeated: {', '.join(dupes)}")
        return value

    def replace(self, **sections: Any) -> AppConfig:
        """A copy with some sections replaced, validated again (new cameras get the global sections)."""
        return AppConfig.model_validate({**{k: getattr(self, k) for k in type(self).model_fields}, **sections})

    def derived_instance(self) -> str:
        """The instance name when none is configured: the host name and a hash of this instance's cameras,
        so instances running different cameras of one site never share a name."""
        host = re.sub(r"[^A-Za-z0-9_-]+", "-", socket.gethostname()).strip("-")[:40] or "monitor"
        names = ",".join(sorted(c.name for c in self.cameras))
        return f"{host}-{hashlib.sha256(names.encode()).hexdigest()[:6]}"

    def bind_instance(self) -> AppConfig:
        """This configuration for one running instance: its name fixed (configured or derived from the
        cameras it runs) and ``{instance}`` in the outbox and store paths replaced by it."""
        name = self.instance or self.derived_instance()

        def bound(path: Path) -> Path:
            return Path(str(path).replace("{instance}", name))

        return self.model_copy(
            update={
                "instance": name,
                "mqtt": self.mqtt.model_copy(
                    update={"outbox": bound(self.mqtt.outbox), "controls": bound(self.mqtt.controls)}
                ),
                "store": self.store.model_copy(update={"path": bound(self.store.path)}),
            }
        )

    def new_camera(self, **fields: Any) -> CameraConfig:
        """A camera from its own keys, merged over this configuration's sections (as in ``[[cameras]]``)."""
        return CameraConfig.model_validate(merge_camera(fields, {k: getattr(self, k) for k in type(self).model_fields}))

    def camera(self, name: str) -> CameraConfig:
        """The camera called ``name``; KeyError if there is none."""
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise KeyError(name)
