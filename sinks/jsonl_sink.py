"""A sink that appends one JSON line per description, window score and event change."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from pathlib import Path

from pipeline.records import CameraStatus, EventChange, Record
from sinks.serialize import record_dict


class JsonLinesSink:
    """Writes ``results.jsonl`` and event snapshots as ``snapshots/<event id>.jpg``.

    Each line is written whole or not at all: a write cut short (a full disk) is taken back, so the file
    stays one JSON object per line whatever happens; a snapshot is written to a temporary file first.
    """

    name = "jsonl"

    def __init__(self, directory: Path, *, filename: str = "results.jsonl") -> None:
        self.directory = Path(directory)
        self.path = self.directory / filename
        self.snapshot_dir = self.directory / "snapshots"
        self._fd: int | None = None

    async def open(self) -> None:
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # the umask decides

    async def handle(self, record: Record) -> None:
        if isinstance(record, CameraStatus):
            return
        await asyncio.to_thread(self._write, record)

    def _write(self, record: Record) -> None:
        assert self._fd is not None, "sink not opened"
        snapshot = None
        if isinstance(record, EventChange) and record.after.snapshot is not None:
            path = self.snapshot_dir / f"{record.after.id}.jpg"
            if record.before is None or record.before.snapshot != record.after.snapshot or not path.exists():
                tmp = path.with_suffix(".jpg.tmp")
                try:
                    tmp.write_bytes(record.after.snapshot)
                    tmp.replace(path)
                except OSError:
                    tmp.unlink(missing_ok=True)
                    raise
            snapshot = str(path.relative_to(self.directory))
        self._append((json.dumps(record_dict(record, snapshot), ensure_ascii=False) + "\n").encode())

    def _append(self, line: bytes) -> None:
        """Append one line, whole or not at all."""
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        try:
            written = 0
            while written < len(line):
                written += os.write(self._fd, line[written:])
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, size)  # the part that was written goes
            raise

    async def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
