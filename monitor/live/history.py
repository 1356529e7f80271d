"""``monitor events``: list and show events from the history."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import re
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from sinks.event_store import EventStore, StoredEvent

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
LAST_TIME = 253402300800.0
"""9999-12-31 23:59:59 UTC, a second after: the last time a date can show."""
SEVERITY_NAMES = {0: "0 noting", 1: "1 suspicious", 2: "2 dangerous"}


def parse_time(text: str, *, now: float | None = None) -> float:
    """A Unix time from ``2h``/``30m``/``7d`` (that long ago), an ISO 8601 date-time (local time when no
    zone is given) or a Unix timestamp, from 1970 to 9999. Raises ValueError naming the text."""
    text = text.strip()
    usage = "use e.g. 2h, 30m, 7d, 2026-11-25T14:00 or a Unix time"
    t: float | None = None
    if m := _RELATIVE.match(text):
        t = (now or time.time()) - float(m.group(1)) * _UNITS[m.group(2)]
    else:
        with contextlib.suppress(ValueError):
            t = float(text)
        if t is None:
            try:
                t = datetime.fromisoformat(text).timestamp()
            except (ValueError, OverflowError, OSError):
                raise ValueError(f"cannot read time {text!r}: {usage}") from None
    if not math.isfinite(t):
        raise ValueError(f"cannot read time {text!r}: not a number; {usage}")
    if not 0 <= t < LAST_TIME:
        raise ValueError(f"time {text!r} is {'before 1970' if t < 0 else 'after 9999'}; {usage}")
    return t


def _clock(t: float | None) -> str:
    return "-" if t is None else datetime.fromtimestamp(t).isoformat(sep=" ", timespec="seconds")


def _duration(e: StoredEvent) -> str:
    return "open" if e.end is None else f"{e.end - e.start:.0f}s"


def render(events: Sequence[StoredEvent], fmt: str) -> str:
    """Events as an aligned table, a JSON array or CSV."""
    if fmt == "json":
        return json.dumps([e.as_dict() for e in events], indent=2, ensure_ascii=False)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["id", "camera", "start", "end", "peak_score", "severity", "explanation", "rule"])
        for e in events:
            w.writerow(
                [
                    e.id,
                    e.camera,
                    _clock(e.start),
                    _clock(e.end),
                    f"{e.peak_score:.3f}",
                    e.severity,
                    e.explanation or "",
                    e.rule,
                ]
            )
        return buf.getvalue().rstrip("\n")
    if not events:
        return "0 events"
    rows = [("ID", "CAMERA", "START", "DURATION", "PEAK", "SEVERITY", "RULE", "EXPLANATION")]
    for e in events:
        expl = (e.explanation or "").replace("\n", " ")
        rows.append(
            (
                e.id,
                e.camera,
                _clock(e.start),
                _duration(e),
                f"{e.peak_score:.2f}",
                SEVERITY_NAMES.get(e.severity, str(e.severity)),
                e.rule,
                expl[:60] + ("…" if len(expl) > 60 else ""),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(7)]
    lines = ["  ".join(c.ljust(widths[i]) for i, c in enumerate(r[:7])) + "  " + r[7] for r in rows]
    lines.append(f"{len(events)} event{'s' if len(events) != 1 else ''}")
    return "\n".join(line.rstrip() for line in lines)


def show(store: EventStore, event: StoredEvent, snapshot_path: Path | None) -> str:
    """A readable account of one event; writes its snapshot to ``snapshot_path`` when it has one."""
    lines = [
        f"event {event.id} on {event.camera}",
        f"  start: {_clock(event.start)} (stream {event.start_time:.1f} s)",
        f"  end:   {_clock(event.end)}" + ("" if event.end_time is None else f" (stream {event.end_time:.1f} s)"),
        f"  peak score {event.peak_score:.3f}, last score {event.score:.3f}, peak frame {event.peak_frame_index}",
        f"  severity: {SEVERITY_NAMES.get(event.severity, event.severity)}",
        f"  explanation: {event.explanation or '(none)'}",
        "  descriptions of the peak window:",
        *(f"    - {d}" for d in event.descriptions),
    ]
    seen = store.descriptions(event.camera, event.start - 1.0, (event.end or time.time()) + 1.0)
    if seen:
        lines.append("  everything described during the event:")
        lines += [f"    {_clock(d.wall_time)}  {d.text}{'  (unchanged)' if d.reused else ''}" for d in seen]
    if event.snapshot is not None and snapshot_path is not None:
        snapshot_path.write_bytes(event.snapshot)
        lines.append(f"  snapshot written to {snapshot_path}")
    elif event.snapshot is None:
        lines.append("  no snapshot")
    lines.append(f"  clip: {store.clip_dir() / event.clip}" if event.clip else "  no clip")
    return "\n".join(lines)
