"""Each run's own results folder: ``{run}`` in ``[outputs] dir`` becomes a new folder per run, ``latest``
beside it points at the newest, and only the newest ``[outputs] keep_runs`` are kept."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import time
from pathlib import Path

from monitor.config import AppConfig

log = logging.getLogger(__name__)

RUN = "{run}"
"""The placeholder of ``[outputs] dir`` that a run's id replaces."""
LATEST = "latest"
RUN_ID = re.compile(r"\d{8}-\d{6}-[A-Za-z0-9_.-]+")
"""What the monitor names a run folder (``YYYYmmdd-HHMMSS-<instance>``): only those are ever pruned."""


def run_id(instance: str, now: float | None = None) -> str:
    """A run's id: its local start time and its instance, ``20261206-093012-gpu1-3f9a1c``."""
    return f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}-{instance}"


def start_run_folder(cfg: AppConfig, *, now: float | None = None) -> AppConfig:
    """The configuration with this run's results folder: ``{run}`` in ``[outputs] dir`` replaced by a new
    folder (created), ``latest`` beside it pointing at it, older run folders beyond ``keep_runs`` removed.
    A ``dir`` without ``{run}`` (``--output DIR``) is used as it is: results are appended there."""
    pattern = str(cfg.outputs.dir)
    if RUN not in pattern:
        return cfg
    assert cfg.instance is not None, "bind the instance first"
    base = run_id(cfg.instance, now)
    name, n = base, 2
    while True:
        folder = Path(pattern.replace(RUN, name))
        try:
            folder.mkdir(parents=True)
            break
        except FileExistsError:  # two runs of one instance in one second
            name, n = f"{base}.{n}", n + 1
    runs = folder.parent if Path(pattern).name == RUN else None
    if runs is not None:
        point_latest(runs, folder.name)
        prune(runs, keep=cfg.outputs.keep_runs, current=folder.name)
    return cfg.replace(outputs=cfg.outputs.model_copy(update={"dir": folder}))


def latest_run(cfg: AppConfig) -> Path | None:
    """The newest run's folder: ``latest`` beside ``{run}`` in ``[outputs] dir``, or that ``dir`` itself
    when it has no ``{run}``; None when no run wrote there yet."""
    folder = cfg.outputs.dir
    if folder.name == RUN:
        folder = folder.parent / LATEST
    elif RUN in str(folder):
        return None
    return folder.resolve() if folder.is_dir() else None


def point_latest(runs: Path, name: str) -> None:
    """``runs/latest`` -> ``name``, replaced in one step (a reader never sees it missing)."""
    link = runs / LATEST
    tmp = runs / f".{LATEST}.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        tmp.symlink_to(name, target_is_directory=True)
        if link.is_dir() and not link.is_symlink():  # a results folder of an earlier version: keep it
            link.rename(runs / f"{run_id('before')}")
        tmp.replace(link)
    except OSError as exc:
        log.warning("cannot point %s at this run (%s); its results are in %s", link, exc.strerror or exc, runs / name)
        with contextlib.suppress(OSError):
            tmp.unlink()


def prune(runs: Path, *, keep: int, current: str) -> list[Path]:
    """Remove the oldest run folders of ``runs`` beyond the newest ``keep`` (never ``current`` nor what
    ``latest`` points at, nor a folder the monitor did not name); the removed ones."""
    latest = runs / LATEST
    kept = {current, str(latest.readlink()) if latest.is_symlink() else ""}
    folders = sorted(
        (p for p in runs.iterdir() if RUN_ID.fullmatch(p.name) and p.is_dir() and not p.is_symlink()),
        key=lambda p: p.name,
    )
    removed = []
    for old in folders[: max(0, len(folders) - keep)]:
        if old.name in kept:
            continue
        try:
            shutil.rmtree(old)
        except OSError as exc:
            log.warning("cannot remove the old run folder %s: %s", old, exc.strerror or exc)
        else:
            removed.append(old)
    if removed:
        log.info(
            "removed %d old run folders of %s (keeping the newest %d: [outputs] keep_runs)", len(removed), runs, keep
        )
    return removed
