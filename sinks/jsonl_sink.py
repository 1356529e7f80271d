"""A sink that appends one JSON line per description, window score and event change."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import IO

from pipeline.records import CameraStatus, EventChange, Record
from sinks.serialize import record_dict


class JsonLinesSink:
    """Writes ``results.jsonl`` (flushed line by line) and event snapshots as ``snapshots/<event id>.jpg``."""

    name = "jsonl"

    def __init__(self, directory: Path, *, filename: str = "results.jsonl") -> None:
        self.directory = Path(directory)
        self.path = self.directory / filename
        self.snapshot_dir = self.directory / "snapshots"
        self._fh: IO[str] | None = None

    async def open(self) -> None:
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8")

    async def handle(self, record: Record) -> None:
        if isinstance(record, CameraStatus):
            return
        await asyncio.to_thread(self._write, record)

    def _write(self, record: Record) -> None:
        assert self._fh is not None, "sink not opened"
        snapshot = None
        if isinstance(record, EventChange) and record.after.snapshot is not None:
            path = self.snapshot_dir / f"{record.after.id}.jpg"
            if record.before is None or record.before.snapshot != record.after.snapshot or not path.exists():
                tmp = path.with_suffix(".jpg.tmp")
                tmp.write_bytes(record.after.snapshot)
                tmp.replace(path)
            snapshot = str(path.relative_to(self.directory))
        self._fh.write(json.dumps(record_dict(record, snapshot), ensure_ascii=False) + "\n")
        self._fh.flush()

    async def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
