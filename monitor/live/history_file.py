"""Which event history the history commands read (``events``, ``events show``, ``summarize``): the named
instance's, else the one a monitor wrote last."""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

from monitor.config import AppConfig

INSTANCE = "{instance}"


@dataclass(frozen=True, slots=True)
class History:
    """An event history file, the instance it belongs to, and a note to print when it was chosen among
    several (None when there was no choice to make)."""

    path: Path
    instance: str
    note: str | None = None


def _written(path: Path) -> float:
    """When a history was last written (SQLite in WAL mode writes its -wal file first)."""
    return max((p.stat().st_mtime for p in (path, path.with_name(path.name + "-wal")) if p.exists()), default=0.0)


def histories(cfg: AppConfig) -> dict[str, Path]:
    """The instances with a history where ``[store] path`` puts them, by name, the most recent first."""
    pattern = str(cfg.store.path)
    if INSTANCE not in pattern:
        return {cfg.instance or cfg.derived_instance(): cfg.store.path} if cfg.store.path.is_file() else {}
    head, tail = pattern.split(INSTANCE, 1)
    found: dict[str, Path] = {}
    for hit in glob.glob(glob.escape(head) + "*" + glob.escape(tail)):  # noqa: PTH207 (a pattern across folders)
        name = hit[len(head) : len(hit) - len(tail)]
        if name and "/" not in name and Path(hit).is_file():
            found[name] = Path(hit)
    return dict(sorted(found.items(), key=lambda kv: -_written(kv[1])))


def find_history(cfg: AppConfig, instance: str | None) -> History:
    """The history to read: ``instance`` (``--instance``, else the configured one)'s; with neither, the
    most recently written one where ``[store] path`` puts histories. FileNotFoundError says where it
    looked and which instances have one."""
    named = instance or cfg.instance
    known = histories(cfg)
    others = ", ".join(known) or "none"
    if named is not None:
        path = Path(str(cfg.store.path).replace(INSTANCE, named))
        if path.is_file():
            return History(path, named)
        raise FileNotFoundError(
            f"no event history of instance {named!r} at {path} (instances with a history there: {others}; "
            "--instance NAME reads another)"
        )
    if not known:
        where = str(cfg.store.path).replace(INSTANCE, "<instance>")
        raise FileNotFoundError(
            f"no event history at {where} yet: `monitor run` writes one ([store] path; --db FILE reads another)"
        )
    name, path = next(iter(known.items()))
    note = None
    if len(known) > 1:
        rest = ", ".join(n for n in known if n != name)
        note = f"reading the history of instance {name}, the most recently written (others: {rest}; --instance NAME)"
    return History(path, name, note)
