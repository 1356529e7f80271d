"""Typed configuration: ``config.toml`` validated once, at start-up, into frozen objects (a module per
section; the stage sections are the stages' own settings models)."""

from monitor.config.app_config import AppConfig
from monitor.config.cameras import CameraConfig
from monitor.config.judge import JudgeConfig
from monitor.config.loader import ConfigError, load, validate
from monitor.config.model import ModelConfig
from monitor.config.mqtt import MqttConfig
from monitor.config.outputs import OutputConfig
from monitor.config.prometheus import PrometheusConfig
from monitor.config.store import StoreConfig

__all__ = [
    "AppConfig",
    "CameraConfig",
    "ConfigError",
    "JudgeConfig",
    "ModelConfig",
    "MqttConfig",
    "OutputConfig",
    "PrometheusConfig",
    "StoreConfig",
    "load",
    "validate",
]
