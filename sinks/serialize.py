"""Plain JSON-ready dictionaries of records (shared by the JSON-lines and later network sinks)."""

from __future__ import annotations

from typing import Any

from pipeline.records import Answer, CameraStatus, ControlState, Description, Event, EventChange, Record, WindowScore


def event_dict(event: Event, snapshot: str | None = None) -> dict[str, Any]:
    """An event without its JPEG bytes; ``snapshot`` is where they were stored, if anywhere.

    ``start``/``end`` are Unix times; ``start_time``/``end_time`` are seconds of the camera's stream.
    """
    out: dict[str, Any] = {
        "id": event.id,
        "camera": event.camera,
        "start": event.start_wall,
        "end": event.end_wall,
        "start_time": round(event.start_time, 4),
        "end_time": None if event.end_time is None else round(event.end_time, 4),
        "peak_score": round(event.peak_score, 6),
        "score": round(event.score, 6),
        "severity": event.severity,
        "peak_frame_index": event.peak_frame_index,
        "explanation": event.explanation,
        "descriptions": list(event.descriptions),
        "has_snapshot": event.snapshot is not None,
        "clip": event.clip,
        "rule": event.rule,
    }
    if snapshot is not None:
        out["snapshot"] = snapshot
    return out


def record_dict(record: Record, snapshot: str | None = None) -> dict[str, Any]:
    """A record as a JSON-ready dict with a ``kind`` field."""
    if isinstance(record, Description):
        return {
            "kind": "description",
            "camera": record.camera,
            "frame_index": record.frame_index,
            "stream_time": round(record.stream_time, 4),
            "wall_time": record.wall_time,
            "text": record.text,
            "reused": record.reused,
        }
    if isinstance(record, WindowScore):
        return {
            "kind": "score",
            "camera": record.camera,
            "seq": record.seq,
            "start_time": round(record.start_time, 4),
            "end_time": round(record.end_time, 4),
            "wall_time": record.wall_time,
            "score": round(record.score, 6),
            "raw_score": None if record.raw_score is None else round(record.raw_score, 6),
            "exact": record.exact,
            "rule": record.rule,
            "descriptions": list(record.descriptions),
            "frame_indices": list(record.frame_indices),
        }
    if isinstance(record, EventChange):
        return {
            "kind": "event",
            "type": record.type,
            "camera": record.camera,
            "before": None if record.before is None else event_dict(record.before, snapshot),
            "after": event_dict(record.after, snapshot),
        }
    if isinstance(record, CameraStatus):
        return {
            "kind": "status",
            "camera": record.camera,
            "wall_time": record.wall_time,
            "connected": record.connected,
            "fps": round(record.fps, 3),
            "frames_read": record.frames_read,
            "frames_sampled": record.frames_sampled,
            "frames_gated": record.frames_gated,
            "frames_dropped": record.frames_dropped,
            "queue_depth": record.queue_depth,
            "error": record.error,
            "clip_buffer_bytes": record.clip_buffer_bytes,
            "clip_buffer_s": round(record.clip_buffer_s, 1),
            "figures": dict(record.figures),
        }
    if isinstance(record, ControlState):
        return {
            "kind": "control",
            "camera": record.camera,
            "wall_time": record.wall_time,
            "enabled": record.enabled,
            "rules": [{"name": r.name, "enabled": r.enabled, "threshold": r.threshold} for r in record.rules],
        }
    if isinstance(record, Answer):
        return {"kind": "answer", "to": record.kind, "wall_time": record.wall_time, "body": dict(record.body)}
    raise TypeError(f"not a record: {type(record).__name__}")
