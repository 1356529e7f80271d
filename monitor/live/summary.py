"""Summaries of what happened in a period, from the event history: the events with their times, severity,
explanations and snapshots, and a few sentences by the model (``monitor summarize``, MQTT summarize)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import html
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from monitor.live.history import SEVERITY_NAMES, parse_time
from pipeline.inference import ModelClient
from pipeline.records import GENERAL_RULE
from pipeline.summaries import LogLine, Summarizer, SummarySettings, condense
from sinks.event_store import EventStore, StoredEvent


@dataclass(frozen=True, slots=True)
class PeriodSummary:
    """What happened in [since, until] on one camera or all of them."""

    since: float
    until: float
    camera: str | None
    events: tuple[StoredEvent, ...]
    """Oldest first, with their snapshots when they were asked for."""
    text: str
    """The model's few sentences."""
    descriptions: int
    """Descriptions the model was given (after repeats were dropped and long periods thinned)."""
    requests: int
    """Model calls it took (more than one when the period was summarised in parts)."""

    @property
    def period(self) -> str:
        return period_label(self.since, self.until)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, without the snapshots."""
        return {
            "since": self.since,
            "until": self.until,
            "camera": self.camera,
            "summary": self.text,
            "events": [
                {
                    "id": e.id,
                    "camera": e.camera,
                    "start": e.start,
                    "end": e.end,
                    "severity": e.severity,
                    "rule": e.rule,
                    "peak_score": round(e.peak_score, 4),
                    "explanation": e.explanation,
                    "has_snapshot": e.has_snapshot,
                }
                for e in self.events
            ],
        }


def period_label(since: float, until: float) -> str:
    """``2026-12-01 08:00 to 16:30`` (the date repeated only when it changes)."""
    a, b = datetime.fromtimestamp(since), datetime.fromtimestamp(until)
    end = b.strftime("%H:%M") if a.date() == b.date() else b.strftime("%Y-%m-%d %H:%M")
    return f"{a.strftime('%Y-%m-%d %H:%M')} to {end}"


def thin(lines: Sequence[LogLine], limit: int) -> list[LogLine]:
    """At most ``limit`` description lines, evenly spread over the period; event lines are all kept."""
    plain = [i for i, line in enumerate(lines) if not line.event]
    if len(plain) <= limit:
        return list(lines)
    keep = {plain[round(k * (len(plain) - 1) / max(1, limit - 1))] for k in range(limit)}
    return [line for i, line in enumerate(lines) if line.event or i in keep]


def _event_line(e: StoredEvent) -> LogLine:
    what = e.explanation or (e.descriptions[-1] if e.descriptions else "an anomaly")
    level = SEVERITY_NAMES.get(e.severity, str(e.severity)).split(" ", 1)[-1]
    rule = "" if e.rule == GENERAL_RULE else f" rule {e.rule}"
    return LogLine(e.start, e.camera, f"{level}{rule} (score {e.peak_score:.2f}): {what}", event=True)


def read_period(
    store: EventStore, *, camera: str | None, since: float, until: float, snapshots: bool, max_descriptions: int
) -> tuple[list[StoredEvent], list[LogLine]]:
    """The period's events (with snapshots when asked) and its log: events and condensed descriptions."""
    events = store.events(camera=camera, since=since, until=until)
    if snapshots:
        events = [(store.event(e.id) or e) if e.has_snapshot else e for e in events]
    lines = [LogLine(d.wall_time, d.camera, d.text) for d in store.descriptions(camera, since, until)]
    log = thin(condense([*lines, *(_event_line(e) for e in events)]), max_descriptions)
    return events, log


async def summarize_period(
    store: EventStore,
    models: ModelClient,
    settings: SummarySettings,
    *,
    camera: str | None,
    since: float,
    until: float,
    snapshots: bool = False,
) -> PeriodSummary:
    """Read the period from ``store`` (in a worker thread) and have the model summarise it."""
    events, log = await asyncio.to_thread(
        read_period,
        store,
        camera=camera,
        since=since,
        until=until,
        snapshots=snapshots,
        max_descriptions=settings.max_descriptions,
    )
    writer = Summarizer(models, settings)
    text = await writer.summarize(period_label(since, until), log)
    return PeriodSummary(since, until, camera, tuple(events), text, sum(not x.event for x in log), writer.requests)


def _clock(t: float | None) -> str:
    return "open" if t is None else datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def _level(e: StoredEvent) -> str:
    return SEVERITY_NAMES.get(e.severity, str(e.severity))


def render(summary: PeriodSummary, fmt: str, *, snapshot_dir: Path | None = None) -> str:
    """The summary as plain text, Markdown or one self-contained HTML page. Markdown links snapshots
    written to ``snapshot_dir`` (relative to its parent); HTML embeds them."""
    where = summary.camera or "all cameras"
    title = f"What happened on {where}, {summary.period}"
    events = summary.events
    if fmt == "html":
        return _html(summary, title)
    md = fmt == "markdown"
    out = [f"# {title}" if md else title, ""]
    out += [summary.text, ""]
    out.append(f"## Events ({len(events)})" if md else f"Events ({len(events)}):")
    if not events:
        out.append("None.")
    for e in events:
        rule = "" if e.rule == GENERAL_RULE else f", rule {e.rule}"
        head = f"{_clock(e.start)} to {_clock(e.end)}, {e.camera}{rule}, severity {_level(e)}, peak {e.peak_score:.2f}"
        text = e.explanation or "(no explanation)"
        if md:
            out += ["", f"### {head}", "", text, "", f"Event `{e.id}`."]
            if e.snapshot is not None and snapshot_dir is not None:
                snapshot_dir.mkdir(parents=True, exist_ok=True)
                (snapshot_dir / f"{e.id}.jpg").write_bytes(e.snapshot)
                out += ["", f"![snapshot of {e.id}]({snapshot_dir.name}/{e.id}.jpg)"]
        else:
            snap = f"; snapshot: monitor events show {e.id}" if e.has_snapshot else ""
            out += [f"- {head}", f"  {text}", f"  event {e.id}{snap}"]
    out += [
        "",
        f"({summary.descriptions} descriptions and {len(events)} events summarised in {summary.requests} model call"
        f"{'s' if summary.requests != 1 else ''})",
    ]
    return "\n".join(out) + "\n"


def _html(summary: PeriodSummary, title: str) -> str:
    esc = html.escape
    rows = []
    for e in summary.events:
        img = ""
        if e.snapshot is not None:
            data = base64.b64encode(e.snapshot).decode()
            img = f'<img alt="snapshot of {esc(e.id)}" src="data:image/jpeg;base64,{data}">'
        rows.append(
            f"<tr><td>{esc(_clock(e.start))}</td><td>{esc(_clock(e.end))}</td><td>{esc(e.camera)}</td>"
            f"<td>{esc(_level(e))}</td><td>{e.peak_score:.2f}</td><td>{esc(e.explanation or '')}</td>"
            f"<td>{img}</td></tr>"
        )
    table = (
        "<table><tr><th>start</th><th>end</th><th>camera</th><th>severity</th><th>peak</th><th>explanation</th>"
        f"<th>snapshot</th></tr>{''.join(rows)}</table>"
        if rows
        else "<p>No events.</p>"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}td,th{border:1px solid #ccc;padding:4px;"
        "vertical-align:top}table{border-collapse:collapse}img{max-width:320px}</style></head><body>"
        f"<h1>{esc(title)}</h1><p>{esc(summary.text)}</p><h2>Events ({len(summary.events)})</h2>{table}"
        f"<p><small>{summary.descriptions} descriptions summarised in {summary.requests} model calls, "
        f"{esc(_clock(time.time()))}</small></p></body></html>\n"
    )


@dataclass(frozen=True, slots=True)
class SummaryRequest:
    """A summary asked for over MQTT (``<prefix>/summarize/set``)."""

    since: float
    until: float
    camera: str | None = None
    id: str | None = None
    """Echoed in the answer, so an automation can match it to its request."""


def parse_request(payload: bytes, cameras: Sequence[str], *, now: float | None = None) -> SummaryRequest:
    """A request from a JSON object (``since``, ``until``, ``camera``, ``id``; times as ``8h``, ISO 8601 or
    Unix) or a bare ``since`` such as ``8h``; an empty payload asks for the last 24 hours. ValueError says
    what is wrong."""
    now = time.time() if now is None else now
    text = payload.decode("utf-8", "replace").strip()
    if len(payload) > 4096:
        raise ValueError(f"request of {len(payload)} bytes (at most 4096)")
    obj: object = json.loads(text) if text.startswith(("{", "[", '"')) else {"since": text or "24h"}
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    unknown = set(obj) - {"since", "until", "camera", "id"}
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}; use since, until, camera, id")

    def when(key: str, default: float) -> float:
        value = obj.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"{key} must be a time such as 8h, 2026-12-01T08:00 or a Unix time")
        return parse_time(str(value), now=now)

    since, until = when("since", now - 86400), when("until", now)
    if until <= since:
        raise ValueError("until must come after since")
    camera = obj.get("camera")
    if camera is not None and camera not in cameras:
        raise ValueError(f"camera {camera!r} is not one of this monitor's ({', '.join(cameras)})")
    ident = obj.get("id")
    if ident is not None and not isinstance(ident, str | int):
        raise ValueError("id must be a string or a number")
    return SummaryRequest(since, until, camera, None if ident is None else str(ident)[:200])


def _history(path: Path) -> EventStore:
    if not path.is_file():
        raise FileNotFoundError("no event history yet")
    return EventStore(path, readonly=True)


async def answer(
    request: SummaryRequest, store_path: Path, models: ModelClient, settings: SummarySettings, instance: str
) -> dict[str, Any]:
    """The JSON answer to a request: the summary, its events and a Markdown report, or an ``error``."""
    head: dict[str, Any] = {"id": request.id, "instance": instance}
    try:
        store = await asyncio.to_thread(_history, store_path)
    except FileNotFoundError as exc:
        return {**head, "since": request.since, "until": request.until, "error": str(exc)}
    with contextlib.closing(store):
        summary = await summarize_period(
            store, models, settings, camera=request.camera, since=request.since, until=request.until
        )
    return {**head, **summary.as_dict(), "markdown": render(summary, "markdown")}
