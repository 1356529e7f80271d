"""The whole configuration: every section, with the cameras' overrides merged in."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import field_validator, model_validator

from monitor.config.cameras import CameraConfig, merge_camera
from monitor.config.judge import JudgeConfig
from monitor.config.model import ModelConfig
from monitor.config.mqtt import MqttConfig
from monitor.config.outputs import OutputConfig
from monitor.config.prometheus import PrometheusConfig
from monitor.config.store import StoreConfig
from pipeline.alerts import AlertSettings
from pipeline.sampling import SamplingSettings
from pipeline.settings import Settings
from pipeline.windows import WindowSettings


class AppConfig(Settings):
    """The whole configuration (``config.toml``).

    ``[sampling]``, ``[windows]`` and ``[alerting]`` are the stages' own settings models
    (:class:`~pipeline.sampling.SamplingSettings`, :class:`~pipeline.windows.WindowSettings`,
    :class:`~pipeline.alerts.AlertSettings`); the other sections live beside this module.
    """

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    model: ModelConfig = ModelConfig()
    judge: JudgeConfig = JudgeConfig()
    sampling: SamplingSettings = SamplingSettings()
    windows: WindowSettings = WindowSettings()
    alerting: AlertSettings = AlertSettings()
    outputs: OutputConfig = OutputConfig()
    mqtt: MqttConfig = MqttConfig()
    store: StoreConfig = StoreConfig()
    prometheus: PrometheusConfig = PrometheusConfig()
    cameras: tuple[CameraConfig, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _merge_cameras(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("cameras"), list | tuple):
            data = {**data, "cameras": [merge_camera(c, data) for c in data["cameras"]]}
        return data

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

    def new_camera(self, **fields: Any) -> CameraConfig:
        """A camera from its own keys, merged over this configuration's sections (as in ``[[cameras]]``)."""
        return CameraConfig.model_validate(merge_camera(fields, {k: getattr(self, k) for k in type(self).model_fields}))

    def camera(self, name: str) -> CameraConfig:
        """The camera called ``name``; KeyError if there is none."""
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise KeyError(name)
