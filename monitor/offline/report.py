"""``monitor report``: one self-contained HTML page of a batch run (plots and snapshots inlined)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any


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


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write ``report.html`` (or ``out``) for the batch outputs under ``run_dir``."""
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
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Anomaly report: {e(run_dir.name)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}img{{max-width:100%}}
.event{{display:flex;gap:1em;align-items:flex-start;margin:.5em 0}}.event img{{width:320px}}</style></head><body>
<h1>Anomaly report</h1><p>{len(results)} videos, {sum(len(d.get("events", [])) for _, d in results)} events.</p>
<table><tr><th>video</th><th>duration</th><th>peak score</th><th>events</th></tr>{"".join(rows)}</table>
{fail_html}{"".join(sections)}</body></html>"""
    target = out or run_dir / "report.html"
    target.write_text(page, encoding="utf-8")
    return target
