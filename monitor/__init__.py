"""The monitor application: command line, configuration, wiring."""

from monitor.config import AppConfig, ConfigError, load

__all__ = ["AppConfig", "ConfigError", "load"]
