"""What the commands share: exit statuses, the configuration they read and the overrides of the command
line (``--model``, ``--judge-model``, ``--source``, ``--output``)."""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import ValidationError

from monitor.config import AppConfig, CameraConfig, load
from monitor.env import secrets_to_hide
from pipeline.locations import shown
from pipeline.redaction import redact_url

DEFAULT_CONFIG = Path("config.toml")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_GRACE_S = 5.0
"""How long the process may take to end once a command is done and everything of it written and closed."""


def fail(message: str, code: int = EXIT_USAGE) -> int:
    """Print ``error: message`` on stderr and return ``code``."""
    print(f"error: {message}", file=sys.stderr)
    return code


def load_config(path: Path | None, *, calibration: bool = True) -> AppConfig:
    """The given config file, else ./config.toml if present, else the built-in defaults (without
    ``[judge] calibration`` when ``calibration`` is False)."""
    if path is None and not DEFAULT_CONFIG.is_file():
        return AppConfig()
    return load(path or DEFAULT_CONFIG, calibration=calibration)


def configured_secrets(cfg: AppConfig) -> list[str]:
    """Every secret the configuration brings, for the logs to mask: passwords in camera URLs, the HF
    token, the MQTT password and the model servers' API keys."""
    found = secrets_to_hide(c.url for c in cfg.cameras)
    if cfg.mqtt.password:
        found.append(cfg.mqtt.password)
    for server in (cfg.model.openai, cfg.judge.openai):
        if server is not None:
            found.extend(secrets_to_hide([server.base_url]))
            if server.api_key_env and os.environ.get(server.api_key_env):
                found.append(os.environ[server.api_key_env])
    return found


def file_mode(cfg: AppConfig) -> None:
    """Files and folders the monitor creates: its owner's alone, or its group's too when configured."""
    os.umask(0o027 if cfg.outputs.group_readable else 0o077)


def for_instance(cfg: AppConfig, instance: str | None) -> AppConfig:
    """The configuration bound to a running instance (``--instance`` over ``instance`` of the config)."""
    return (cfg.replace(instance=instance) if instance else cfg).bind_instance()


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
    cameras = []
    for src in sources:
        try:
            src.encode("utf-8")
        except UnicodeEncodeError:
            odd = src.encode("utf-8", "backslashreplace").decode()
            raise ValueError(f"--source {odd}: the path is not valid UTF-8; rename the file or link it") from None
        if not src.strip():
            raise ValueError("--source '': empty; give a video file, a folder's file or a stream URL")
        try:
            cameras.append(cfg.new_camera(name=_camera_name(src, taken), url=src))
        except ValidationError as exc:
            reason = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
            raise ValueError(f"--source {shown(redact_url(src))}: {reason}") from None
    return tuple(cameras)


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


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` (1 <= I <= N) as ``(I, N)``; ValueError says what is wrong."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise ValueError(f"--shard {text!r}: give I/N with 1 <= I <= N, e.g. 2/3")
    return int(m.group(1)), int(m.group(2))


def select_cameras(
    cfg: AppConfig, *, shard: tuple[int, int] | None = None, names: Sequence[str] | None = None
) -> AppConfig:
    """The cameras this instance runs: those named (``--cameras``), then its share of a stable split
    (``--shard I/N``: the cameras sorted by name, every Nth from the Ith). ValueError names the problem."""
    cameras = list(cfg.cameras)
    if names:
        known = {c.name for c in cameras}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(
                f"--cameras: no camera named {', '.join(unknown)} (configured: {', '.join(sorted(known))})"
            )
        cameras = [c for c in cameras if c.name in set(names)]
    if shard is not None:
        i, n = shard
        ordered = sorted(cameras, key=lambda c: c.name)
        mine = {c.name for c in ordered[i - 1 :: n]}
        if not mine:
            raise ValueError(f"--shard {i}/{n}: no cameras in this shard ({len(ordered)} cameras, {n} shards)")
        cameras = [c for c in cameras if c.name in mine]
    return cfg.replace(cameras=tuple(cameras)) if len(cameras) != len(cfg.cameras) else cfg


def out_within(seconds: float, code: int) -> threading.Timer:
    """A started timer that ends the process with ``code`` in ``seconds`` unless it is cancelled first: what
    is left of a run (a worker thread of the event loop, which Python 3.11 joins without a bound) cannot
    hold up its exit."""
    timer = threading.Timer(seconds, exit_now, (code, f"the way out took over {seconds:.0f} s"))
    timer.daemon = True
    timer.start()
    return timer


def exit_now(code: int, why: str) -> None:
    """End the process now with ``code``, saying why; the logs and standard streams flushed."""
    logging.getLogger("monitor").info("leaving now; %s", why)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
