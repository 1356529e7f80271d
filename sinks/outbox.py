"""A durable FIFO of outgoing MQTT messages: written before publishing, removed once acknowledged."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class OutMessage:
    """One MQTT message waiting for delivery."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


class Outbox:
    """SQLite (WAL) table of messages in insertion order; survives crashes and SIGKILL. Thread-safe: the
    event loop adds alerts the moment they are emitted while the sink's thread delivers."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes, fast
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
            "payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL, created REAL NOT NULL)"
        )

    def add(self, messages: Iterable[OutMessage]) -> None:
        """Append messages atomically (all or none)."""
        now = time.time()
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO outbox (topic, payload, qos, retain, created) VALUES (?, ?, ?, ?, ?)",
                [(m.topic, m.payload, m.qos, int(m.retain), now) for m in messages],
            )

    def peek(self, limit: int) -> list[tuple[int, OutMessage]]:
        """The oldest ``limit`` messages with their ids, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, qos, retain FROM outbox ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [(i, OutMessage(t, bytes(p), q, bool(r))) for i, t, p, q, r in rows]

    def remove(self, ids: Sequence[int]) -> None:
        """Delete delivered messages."""
        if ids:
            with self._lock, self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
