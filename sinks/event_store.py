"""The event history: descriptions, window scores and events with snapshots, in SQLite (WAL)."""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pipeline.records import GENERAL_RULE, Description, Event, WindowScore

T = TypeVar("T")


def _locked(method: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(method)
    def wrapper(self: EventStore, *args: Any, **kwargs: Any) -> T:
        with self._lock:
            return method(self, *args, **kwargs)

    return wrapper


SCHEMA = """
CREATE TABLE IF NOT EXISTS descriptions (
    id INTEGER PRIMARY KEY, camera TEXT NOT NULL, frame_index INTEGER NOT NULL, stream_time REAL NOT NULL,
    wall_time REAL NOT NULL, text TEXT NOT NULL, reused INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS descriptions_camera_wall ON descriptions (camera, wall_time);
CREATE INDEX IF NOT EXISTS descriptions_wall ON descriptions (wall_time);
CREATE TABLE IF NOT EXISTS scores (
    id INTEGER PRIMARY KEY, camera TEXT NOT NULL, seq INTEGER NOT NULL, start_time REAL NOT NULL,
    end_time REAL NOT NULL, wall_time REAL NOT NULL, score REAL NOT NULL, descriptions TEXT NOT NULL,
    frame_indices TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS scores_camera_wall ON scores (camera, wall_time);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, camera TEXT NOT NULL, start_wall REAL NOT NULL, end_wall REAL, start_time REAL NOT NULL,
    end_time REAL, peak_score REAL NOT NULL, score REAL NOT NULL, peak_frame_index INTEGER NOT NULL,
    explanation TEXT, descriptions TEXT NOT NULL, snapshot BLOB, updated_wall REAL NOT NULL);
CREATE INDEX IF NOT EXISTS events_camera_start ON events (camera, start_wall);
CREATE TABLE IF NOT EXISTS runs (
    started REAL NOT NULL, instance TEXT NOT NULL, judge TEXT NOT NULL, judge_backend TEXT NOT NULL,
    results TEXT);
"""

_GENERAL = f"'{GENERAL_RULE}'"
"""Rows of stores written before rules existed belong to the general rule."""
ADDED_COLUMNS = {"severity": "INTEGER NOT NULL DEFAULT 0", "clip": "TEXT", "rule": f"TEXT NOT NULL DEFAULT {_GENERAL}"}
"""Columns of ``events`` that histories written by earlier versions lack (added when opened for writing)."""
ADDED_SCORE_COLUMNS = {"rule": f"TEXT NOT NULL DEFAULT {_GENERAL}"}
"""The same for ``scores``."""


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run that wrote to this history: when, which instance, the judge model it ran (an in-process
    model's local folder made absolute, or a hub id; a server's model name) and where its results went."""

    started: float
    instance: str
    judge: str
    judge_backend: str
    results: str | None = None


def clip_dir(store: Path) -> Path:
    """Where the event clips of the history at ``store`` are kept: a folder beside it."""
    return store.with_name(store.stem + "-clips")


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as kept in the history (``snapshot`` only when asked for)."""

    id: str
    camera: str
    start: float
    end: float | None
    start_time: float
    end_time: float | None
    peak_score: float
    score: float
    peak_frame_index: int
    explanation: str | None
    descriptions: tuple[str, ...]
    has_snapshot: bool
    severity: int = 0
    clip: str | None = None
    """File name of the event's video clip, in :meth:`EventStore.clip_dir`."""
    rule: str = GENERAL_RULE
    snapshot: bytes | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, without the JPEG bytes."""
        return {
            "id": self.id,
            "camera": self.camera,
            "start": self.start,
            "end": self.end,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "peak_score": self.peak_score,
            "score": self.score,
            "peak_frame_index": self.peak_frame_index,
            "explanation": self.explanation,
            "descriptions": list(self.descriptions),
            "has_snapshot": self.has_snapshot,
            "severity": self.severity,
            "clip": self.clip,
            "rule": self.rule,
        }


@dataclass(frozen=True, slots=True)
class StoredScore:
    camera: str
    wall_time: float
    score: float
    descriptions: tuple[str, ...]
    rule: str = GENERAL_RULE


class EventStore:
    """SQLite history. One connection, shared safely between threads (a lock around each statement)."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        if readonly:
            if not self.path.is_file():
                raise FileNotFoundError(f"no event history at {self.path}")
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only takes effect on a new file
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            for table, added in (("events", ADDED_COLUMNS), ("scores", ADDED_SCORE_COLUMNS)):
                for name, decl in added.items():
                    if name not in self._columns(table):
                        self._db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
        have = self._columns("events")
        extra = ", ".join(name if name in have else "NULL" for name in ADDED_COLUMNS)
        self._score_rule = "rule" in self._columns("scores")
        self._cols = (
            "id, camera, start_wall, end_wall, start_time, end_time, peak_score, score, peak_frame_index, "
            f"explanation, descriptions, snapshot IS NOT NULL, {extra}"
        )

    def _columns(self, table: str) -> set[str]:
        return {r[1] for r in self._db.execute(f"PRAGMA table_info({table})")}

    @_locked
    def close(self) -> None:
        self._db.close()

    # -- writing -----------------------------------------------------------------------------------

    @_locked
    def add_run(self, run: RunRecord) -> None:
        """Note that a run writes here (``monitor summarize`` then uses the judge it ran)."""
        self._db.execute(
            "INSERT INTO runs (started, instance, judge, judge_backend, results) VALUES (?,?,?,?,?)",
            (run.started, run.instance, run.judge, run.judge_backend, run.results),
        )

    @_locked
    def last_run(self) -> RunRecord | None:
        """The newest run noted here (None for a history of an earlier version, which noted none)."""
        try:
            row = self._db.execute(
                "SELECT started, instance, judge, judge_backend, results FROM runs ORDER BY started DESC LIMIT 1"
            ).fetchone()
        except sqlite3.OperationalError:  # no such table
            return None
        return None if row is None else RunRecord(*row)

    @_locked
    def add_description(self, d: Description) -> None:
        self._db.execute(
            "INSERT INTO descriptions (camera, frame_index, stream_time, wall_time, text, reused) VALUES (?,?,?,?,?,?)",
            (d.camera, d.frame_index, d.stream_time, d.wall_time, d.text, int(d.reused)),
        )

    @_locked
    def add_score(self, s: WindowScore) -> None:
        self._db.execute(
            "INSERT INTO scores (camera, seq, start_time, end_time, wall_time, score, descriptions, frame_indices, "
            "rule) VALUES (?,?,?,?,?,?,?,?,?)",
            (
                s.camera,
                s.seq,
                s.start_time,
                s.end_time,
                s.wall_time,
                s.score,
                json.dumps(list(s.descriptions)),
                json.dumps(list(s.frame_indices)),
                s.rule,
            ),
        )

    @_locked
    def upsert_event(self, e: Event) -> None:
        self._db.execute(
            "INSERT INTO events (id, camera, start_wall, end_wall, start_time, end_time, peak_score, score, "
            "peak_frame_index, explanation, descriptions, snapshot, updated_wall, severity, clip, rule) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(id) DO UPDATE SET end_wall=excluded.end_wall, end_time=excluded.end_time, "
            "peak_score=excluded.peak_score, score=excluded.score, peak_frame_index=excluded.peak_frame_index, "
            "explanation=excluded.explanation, descriptions=excluded.descriptions, severity=excluded.severity, "
            "snapshot=COALESCE(excluded.snapshot, events.snapshot), updated_wall=excluded.updated_wall, "
            "clip=COALESCE(excluded.clip, events.clip)",
            (
                e.id,
                e.camera,
                e.start_wall,
                e.end_wall,
                e.start_time,
                e.end_time,
                e.peak_score,
                e.score,
                e.peak_frame_index,
                e.explanation,
                json.dumps(list(e.descriptions)),
                e.snapshot,
                time.time(),
                e.severity,
                e.clip,
                e.rule,
            ),
        )

    def clip_dir(self) -> Path:
        """Where this history's event clips are kept."""
        return clip_dir(self.path)

    @_locked
    def open_events(self) -> list[Event]:
        """Events that never ended (the monitor was killed), as they were last stored, snapshot left out."""
        rows = self._db.execute(
            "SELECT id, camera, start_time, start_wall, end_time, end_wall, peak_score, score, peak_frame_index, "
            "descriptions, explanation, updated_wall, severity, rule FROM events WHERE end_wall IS NULL "
            "ORDER BY start_wall"
        ).fetchall()
        return [
            Event(
                id=r[0],
                camera=r[1],
                start_time=r[2],
                start_wall=r[3],
                end_time=None,
                end_wall=None,
                peak_score=r[6],
                score=r[7],
                peak_frame_index=r[8],
                descriptions=tuple(json.loads(r[9])),
                explanation=r[10],
                severity=r[12],
                rule=r[13],
            )
            for r in rows
        ]

    @_locked
    def close_open_events(self) -> int:
        """Mark events left open by a crash as ended at their last update; returns how many."""
        cur = self._db.execute("UPDATE events SET end_wall = updated_wall WHERE end_wall IS NULL")
        return cur.rowcount

    @_locked
    def enforce_retention(self, *, max_age_s: float, max_bytes: float, now: float | None = None) -> int:
        """Delete rows older than ``max_age_s``, then the oldest rows while the file exceeds ``max_bytes``."""
        cutoff = (now or time.time()) - max_age_s
        deleted = 0
        clips_before = self._clips()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for sql in (
                "DELETE FROM descriptions WHERE wall_time < ?",
                "DELETE FROM scores WHERE wall_time < ?",
                "DELETE FROM events WHERE COALESCE(end_wall, start_wall) < ?",
            ):
                deleted += self._db.execute(sql, (cutoff,)).rowcount
        for _ in range(20):
            if self.size_bytes() <= max_bytes:
                break
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                for table in ("descriptions", "scores", "events"):
                    n = self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                    order = "start_wall" if table == "events" else "id"
                    deleted += self._db.execute(
                        f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} ORDER BY {order} LIMIT ?)",
                        (max(1, n // 10),),
                    ).rowcount
        for name in clips_before - self._clips():  # the clips of deleted events go with them
            if Path(name).name == name:
                (self.clip_dir() / name).unlink(missing_ok=True)
        if deleted:
            self._db.executescript("PRAGMA incremental_vacuum;")  # execute() would run only its first step
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return deleted

    def _clips(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT clip FROM events WHERE clip IS NOT NULL")}

    @_locked
    def size_bytes(self) -> int:
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        size = self._db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    # -- reading -----------------------------------------------------------------------------------

    @_locked
    def events(
        self, *, camera: str | None = None, since: float | None = None, until: float | None = None
    ) -> list[StoredEvent]:
        """Events that overlap [since, until], oldest first."""
        sql = f"SELECT {self._cols} FROM events WHERE 1=1"
        args: list[Any] = []
        if camera:
            sql += " AND camera = ?"
            args.append(camera)
        if since is not None:
            sql += " AND COALESCE(end_wall, 1e300) >= ?"
            args.append(since)
        if until is not None:
            sql += " AND start_wall <= ?"
            args.append(until)
        rows = self._db.execute(sql + " ORDER BY start_wall", args).fetchall()
        return [_event(r) for r in rows]

    @_locked
    def event(self, event_id: str) -> StoredEvent | None:
        """One event with its snapshot, by id or by a prefix that only it has."""
        cols = f"{self._cols}, snapshot"
        rows = self._db.execute(f"SELECT {cols} FROM events WHERE id = ?", (event_id,)).fetchall()
        if not rows:
            rows = self._db.execute(
                f"SELECT {cols} FROM events WHERE substr(id, 1, ?) = ? LIMIT 2", (len(event_id), event_id)
            ).fetchall()
        if len(rows) != 1:
            return None
        return _event(rows[0][:-1], snapshot=rows[0][-1])

    @_locked
    def descriptions(self, camera: str | None, since: float, until: float) -> list[Description]:
        """Descriptions of one camera (or all, for None) made in [since, until], oldest first."""
        sql = "SELECT camera, frame_index, stream_time, wall_time, text, reused FROM descriptions WHERE "
        args: list[Any] = [since, until]
        if camera is not None:
            sql += "camera = ? AND "
            args.insert(0, camera)
        rows = self._db.execute(sql + "wall_time BETWEEN ? AND ? ORDER BY wall_time", args).fetchall()
        return [Description(c, fi, st, wt, t, bool(r)) for c, fi, st, wt, t, r in rows]

    @_locked
    def scores(self, *, since: float, camera: str | None = None) -> list[StoredScore]:
        """Window scores of every rule since ``since``, oldest first."""
        rule = "rule" if self._score_rule else _GENERAL
        sql = f"SELECT camera, wall_time, score, descriptions, {rule} FROM scores WHERE wall_time >= ?"
        args: list[Any] = [since]
        if camera:
            sql += " AND camera = ?"
            args.append(camera)
        rows = self._db.execute(sql + " ORDER BY wall_time", args).fetchall()
        return [StoredScore(c, w, s, tuple(json.loads(d)), r) for c, w, s, d, r in rows]

    @_locked
    def cameras(self) -> Sequence[str]:
        return [r[0] for r in self._db.execute("SELECT DISTINCT camera FROM scores ORDER BY camera")]


def _event(r: Sequence[Any], snapshot: bytes | None = None) -> StoredEvent:
    return StoredEvent(
        id=r[0],
        camera=r[1],
        start=r[2],
        end=r[3],
        start_time=r[4],
        end_time=r[5],
        peak_score=r[6],
        score=r[7],
        peak_frame_index=r[8],
        explanation=r[9],
        descriptions=tuple(json.loads(r[10])),
        has_snapshot=bool(r[11]),
        severity=r[12] or 0,
        clip=r[13],
        rule=r[14] or GENERAL_RULE,
        snapshot=snapshot,
    )
