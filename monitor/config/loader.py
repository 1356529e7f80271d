"""Reading ``config.toml``: environment variables, validation with errors that name the key, and paths
made relative to the file."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from monitor.config.app_config import AppConfig
from monitor.config.cameras import inherited_error
from pipeline.calibration import JudgeCalibration
from pipeline.redaction import redact_url

SECRET_KEYS = frozenset({"password", "api_key", "token"})
"""Keys whose values a config error never shows."""
TOO_DEEP = "nested too deep (tables or arrays within each other hundreds of times)"
_KEYED = re.compile(r"^([a-z_]+(?:\.[a-z_0-9]+)+): (.+)$", re.S)
"""A cross-section rule's message names its key first ("judge.calibration: ...")."""


class ConfigError(Exception):
    """The configuration is unusable; ``problems`` holds ``(key path, message)`` pairs."""

    def __init__(self, source: str, problems: Sequence[tuple[str, str]]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{source}: {key}: {msg}" if key else f"{source}: {msg}" for key, msg in problems))


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _substitute_env(value: Any, path: str, env: Mapping[str, str], problems: list[tuple[str, str]]) -> Any:
    """Replace ``${NAME}`` in strings by environment variables (for secrets such as camera passwords)."""
    if isinstance(value, str):

        def repl(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                problems.append((path, f"environment variable {name} is not set"))
                return ""
            return env[name]

        return _ENV_REF.sub(repl, value)
    if isinstance(value, dict):
        return {k: _substitute_env(v, f"{path}.{k}" if path else k, env, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute_env(v, f"{path}.{i}", env, problems) for i, v in enumerate(value)]
    return value


def _value_at(data: Any, loc: tuple[int | str, ...]) -> tuple[bool, Any]:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return False, None
    return True, data


def validate(data: Mapping[str, Any], *, source: str = "config", env: Mapping[str, str] | None = None) -> AppConfig:
    """Validate a parsed configuration mapping; raise :class:`ConfigError` naming every bad key."""
    problems: list[tuple[str, str]] = []
    try:
        data = _substitute_env(dict(data), "", os.environ if env is None else env, problems)
        if problems:
            raise ConfigError(source, problems)
        return AppConfig.model_validate(data)
    except RecursionError:
        raise ConfigError(source, [("", TOO_DEEP)]) from None
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            if inherited_error(data.get("cameras"), loc, data.get("rules", ())):
                continue
            msg = err["msg"].removeprefix("Value error, ")
            if not loc and (keyed := _KEYED.match(msg)):
                loc, msg = tuple(keyed.group(1).split(".")), keyed.group(2)
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            found, value = _value_at(data, loc)
            secret = any(isinstance(p, str) and p in SECRET_KEYS for p in loc)
            if found and not secret and err["type"] != "extra_forbidden" and not isinstance(value, dict | list):
                shown = repr(redact_url(value) if isinstance(value, str) else value)
                msg = f"{msg} (got {shown[:80] + '...' if len(shown) > 80 else shown})"
            problems.append((".".join(str(p) for p in loc), msg))
        raise ConfigError(source, problems) from None


def _resolve_paths(cfg: AppConfig, base: Path) -> AppConfig:
    """Make file paths relative to the config file's folder; check that TLS and calibration files work."""

    def rel(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    cameras = tuple(
        cam
        if cam.is_live or Path(cam.url).is_absolute()
        else cam.model_copy(update={"url": os.path.normpath(base / cam.url)})
        for cam in cfg.cameras
    )
    mqtt = cfg.mqtt.model_copy(update={"outbox": rel(cfg.mqtt.outbox)})
    if cfg.mqtt.tls is not None:
        tls = cfg.mqtt.tls
        files = {
            k: rel(v)
            for k, v in (("ca_file", tls.ca_file), ("cert_file", tls.cert_file), ("key_file", tls.key_file))
            if v is not None
        }
        missing = [(f"mqtt.tls.{k}", f"file not found: {v}") for k, v in files.items() if not v.is_file()]
        if missing and cfg.mqtt.enabled:
            raise ConfigError(str(base), missing)
        mqtt = mqtt.model_copy(update={"tls": tls.model_copy(update=files)})
    judge = cfg.judge
    if judge.calibration is not None:
        calibration = rel(judge.calibration)
        judge = judge.model_copy(update={"calibration": calibration})
        try:
            fitted = JudgeCalibration.load(calibration)
        except ValueError as exc:
            raise ConfigError(str(base), [("judge.calibration", str(exc))]) from None
        own = [(f"cameras.{c.name}.windows", c.windows) for c in cfg.cameras if c.windows != cfg.windows]
        wrong = [(key, fitted.check_windows(w.size, w.stride)) for key, w in [("windows", cfg.windows), *own]]
        if problems := [(key, f"{why} ({calibration})") for key, why in wrong if why is not None]:
            raise ConfigError(str(base), problems)
    return cfg.model_copy(
        update={
            "judge": judge,
            "cameras": cameras,
            "outputs": cfg.outputs.model_copy(update={"dir": rel(cfg.outputs.dir)}),
            "mqtt": mqtt,
            "store": cfg.store.model_copy(update={"path": rel(cfg.store.path)}),
        }
    )


def load(path: Path | str, *, env: Mapping[str, str] | None = None, calibration: bool = True) -> AppConfig:
    """Read and validate a TOML configuration file; relative paths in it are relative to its folder.
    ``calibration=False`` leaves ``[judge] calibration`` out (for fitting a new one)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(str(path), [("", "file not found")]) from None
    except OSError as exc:
        raise ConfigError(str(path), [("", f"cannot read: {exc.strerror}")]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(str(path), [("", "not UTF-8 text")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [("", f"invalid TOML: {exc}")]) from None
    except RecursionError:
        raise ConfigError(str(path), [("", TOO_DEEP)]) from None
    if not calibration and isinstance(data.get("judge"), dict):
        data["judge"] = {k: v for k, v in data["judge"].items() if k != "calibration"}
    cfg = validate(data, source=str(path), env=env)
    try:
        return _resolve_paths(cfg, path.resolve().parent)
    except ConfigError as exc:
        raise ConfigError(str(path), exc.problems) from None
