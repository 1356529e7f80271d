"""``monitor report``: one self-contained HTML page of a batch run or of a live run's folder (plots and
snapshots inlined)."""

from __future__ import annotations

import base64
import html
import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from monitor.offline.plots import plot_scores

STYLE = """body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}img{max-width:100%}
.event{display:flex;gap:1em;align-items:flex-start;margin:.5em 0}.event img{width:320px}"""


def _img(path: Path, mime: str) -> str:
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:{mime};base64,{data}" alt="{html.escape(path.name)}">'


def _results(run_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(run_dir.rglob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("complete") and "windows" in data:
            out.append((path, data))
    return out


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


def _lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file (a line that is not one is passed over)."""
    out = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict):
                out.append(item)
    return out


def _live_page(run_dir: Path, *, threshold: float) -> str:
    """A live run's folder (``results.jsonl``, ``snapshots/``): per camera its scores and its events."""
    e = html.escape
    scores: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    events: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)  # camera -> id -> its latest state
    described: dict[str, int] = defaultdict(int)
    for item in _lines(run_dir / "results.jsonl"):
        camera = str(item.get("camera"))
        if item.get("kind") == "score" and isinstance(item.get("score"), int | float):
            scores[camera][str(item.get("rule"))].append((float(item.get("wall_time") or 0), float(item["score"])))
        elif item.get("kind") == "event" and isinstance(item.get("after"), dict):
            events[camera][str(item["after"].get("id"))] = item["after"]
        elif item.get("kind") == "description":
            described[camera] += 1
    cameras = sorted(set(scores) | set(events) | set(described))
    rows, sections = [], []
    for i, cam in enumerate(cameras):
        evs = sorted(events[cam].values(), key=lambda ev: ev.get("start") or 0)
        general = next(iter(scores[cam].values()), []) if "anomaly" not in scores[cam] else scores[cam]["anomaly"]
        peak = max((sc for _, sc in general), default=0.0)
        rows.append(
            f"<tr><td><a href='#c{i}'>{e(cam)}</a></td><td>{described[cam]}</td><td>{len(general)}</td>"
            f"<td>{peak:.2f}</td><td>{len(evs)}</td></tr>"
        )
        plot = ""
        if general:
            t0 = general[0][0]
            spans = [
                ((ev.get("start") or t0) - t0, (ev.get("end") or general[-1][0]) - t0)
                for ev in evs
                if ev.get("rule", "anomaly") == "anomaly"
            ]
            with tempfile.TemporaryDirectory() as tmp:
                png = plot_scores(
                    Path(tmp) / "plot.png",
                    title=f"{cam}: anomaly score",
                    end_times=[t - t0 for t, _ in general],
                    scores=[sc for _, sc in general],
                    duration=general[-1][0] - t0,
                    threshold=threshold,
                    events=spans,
                    xlabel="seconds since the first score",
                )
                plot = _img(png, "image/png")
        items = []
        for ev in evs:
            snap = _img(run_dir / ev["snapshot"], "image/jpeg") if ev.get("snapshot") else ""
            ended = "open" if ev.get("end") is None else f"{(ev['end'] - (ev.get('start') or ev['end'])):.0f} s"
            items.append(
                f"<div class='event'>{snap}<p><b>{e(str(ev.get('rule')))} · {e(str(ev.get('severity')))} · "
                f"peak {float(ev.get('peak_score') or 0):.2f} · {ended}</b> ({e(str(ev.get('id')))}): "
                f"{e(ev.get('explanation') or '')}</p><ul>"
                + "".join(f"<li>{e(str(x))}</li>" for x in ev.get("descriptions", []))
                + "</ul></div>"
            )
        sections.append(f"<section id='c{i}'><h2>{e(cam)}</h2>{plot}{''.join(items)}</section>")
    body = (
        f"<h1>Anomaly report: {e(run_dir.resolve().name)}</h1><p>{len(cameras)} cameras, "
        f"{sum(len(v) for v in events.values())} events.</p><table><tr><th>camera</th><th>descriptions</th>"
        f"<th>scores</th><th>peak score</th><th>events</th></tr>{''.join(rows)}</table>{''.join(sections)}"
    )
    return _page(f"Anomaly report: {run_dir.resolve().name}", body)


def write_report(run_dir: Path, out: Path | None = None, *, threshold: float = 0.5) -> Path:
    """Write ``report.html`` (or ``out``) for the batch outputs under ``run_dir``, or for a live run's
    folder (one with ``results.jsonl``; ``threshold`` is drawn on its plots)."""
    target = out or run_dir / "report.html"
    if (run_dir / "results.jsonl").is_file() and not (run_dir / "batch_summary.json").is_file():
        target.write_text(_live_page(run_dir, threshold=threshold), encoding="utf-8")
        return target
    results = _results(run_dir)
    summary_path = run_dir / "batch_summary.json"
    failed: list[dict[str, Any]] = []
    if summary_path.is_file():
        failed = [v for v in json.loads(summary_path.read_text()).get("videos", []) if v.get("status") == "failed"]
    e = html.escape
    rows, sections = [], []
    for i, (path, d) in enumerate(results):
        events = d.get("events", [])
        rows.append(
            f"<tr><td><a href='#v{i}'>{e(d['video'])}</a></td><td>{d.get('duration', 0):.1f} s</td>"
            f"<td>{d.get('peak_score', 0):.2f}</td><td>{len(events)}</td></tr>"
        )
        evs = []
        for ev in events:
            snap = _img(path.parent / ev["snapshot"], "image/jpeg") if ev.get("snapshot") else ""
            evs.append(
                f"<div class='event'>{snap}<p><b>{ev['start_time']:.1f}-{ev['end_time']:.1f} s, peak "
                f"{ev['peak_score']:.2f}</b>: {e(ev.get('explanation') or '')}</p><ul>"
                + "".join(f"<li>{e(x)}</li>" for x in ev.get("descriptions", []))
                + "</ul></div>"
            )
        sections.append(
            f"<section id='v{i}'><h2>{e(d['video'])}</h2>{_img(path.with_suffix('.png'), 'image/png')}"
            + "".join(evs)
            + "</section>"
        )
    fail_html = ""
    if failed:
        fail_html = (
            "<h2>Failed</h2><ul>"
            + "".join(f"<li>{e(v['video'])}: {e(v.get('error') or '')}</li>" for v in failed)
            + "</ul>"
        )
    n_events = sum(len(d.get("events", [])) for _, d in results)
    body = f"""<h1>Anomaly report</h1><p>{len(results)} videos, {n_events} events.</p>
<table><tr><th>video</th><th>duration</th><th>peak score</th><th>events</th></tr>{"".join(rows)}</table>
{fail_html}{"".join(sections)}"""
    target.write_text(_page(f"Anomaly report: {run_dir.name}", body), encoding="utf-8")
    return target
