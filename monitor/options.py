"""What the commands share: exit statuses, the configuration they read and the overrides of the command
line (``--model``, ``--judge-model``, ``--source``, ``--output``)."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from monitor.config import AppConfig, CameraConfig, load

DEFAULT_CONFIG = Path("config.toml")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def fail(message: str, code: int = EXIT_USAGE) -> int:
    """Print ``error: message`` on stderr and return ``code``."""
    print(f"error: {message}", file=sys.stderr)
    return code


def load_config(path: Path | None) -> AppConfig:
    """The given config file, else ./config.toml if present, else the built-in defaults."""
    if path is not None:
        return load(path)
    return load(DEFAULT_CONFIG) if DEFAULT_CONFIG.is_file() else AppConfig()


def _camera_name(url: str, taken: set[str]) -> str:
    parts = urlsplit(url)
    base = Path(parts.path).stem if parts.path else (parts.hostname or "camera")
    if not base:
        base = parts.hostname or "camera"
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", base).strip("-")[:48] or "camera"
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    taken.add(candidate)
    return candidate


def sources_as_cameras(cfg: AppConfig, sources: Sequence[str]) -> tuple[CameraConfig, ...]:
    """Cameras for ``--source`` arguments (files are read once at full speed, streams are live), with the
    configuration's sections."""
    taken: set[str] = set()
    return tuple(cfg.new_camera(name=_camera_name(src, taken), url=src) for src in sources)


def with_overrides(
    cfg: AppConfig,
    *,
    model: str | None = None,
    judge_model: str | None = None,
    sources: Sequence[str] | None = None,
    output: Path | None = None,
) -> AppConfig:
    """The configuration with the command line's choices applied."""
    update: dict[str, object] = {}
    if model:
        update["model"] = cfg.model.model_copy(update={"id": model})
    if judge_model:
        update["judge"] = cfg.judge.model_copy(update={"model": judge_model})
    if sources:
        update["cameras"] = sources_as_cameras(cfg, sources)
    if output:
        update["outputs"] = cfg.outputs.model_copy(update={"dir": output})
    return cfg.replace(**update) if update else cfg
