"""What the console shows, as small records, and the thread-safe inbox that carries them to the Qt thread."""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from pipeline.records import GENERAL_RULE, CameraStatus, ControlState, Description, EventChange, Record, WindowScore

log = logging.getLogger(__name__)

MAX_JSON_BYTES = 256 * 1024
MAX_SNAPSHOT_BYTES = 8 * 1024 * 1024
CAMERA_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""Camera names as the monitor allows them; anything else on a topic is not one of its cameras."""
RULE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
EARLIEST, LATEST = 946_684_800.0, 4_102_444_800.0
"""Unix times outside 2000-2100 are not times the monitor sends."""


@dataclass(frozen=True, slots=True)
class ScorePoint:
    camera: str
    wall_time: float
    score: float
    description: str | None
    rule: str = GENERAL_RULE


@dataclass(frozen=True, slots=True)
class RuleSetting:
    """A rule's setting in force on a camera, as its settings owner published it (None: not said here)."""

    camera: str
    rule: str
    threshold: float | None = None
    enabled: bool | None = None


@dataclass(frozen=True, slots=True)
class DescriptionView:
    camera: str
    wall_time: float
    text: str


@dataclass(frozen=True, slots=True)
class EventView:
    id: str
    camera: str
    start: float
    end: float | None
    peak_score: float
    score: float
    explanation: str | None
    descriptions: tuple[str, ...]
    snapshot: bytes | None
    severity: int = 0
    clip: str | None = None


@dataclass(frozen=True, slots=True)
class StatusView:
    camera: str
    wall_time: float
    connected: bool
    fps: float
    dropped: int


@dataclass(frozen=True, slots=True)
class LinkState:
    """The console's own connection (to the broker, or the in-process pipeline)."""

    connected: bool
    detail: str


FeedItem = ScorePoint | RuleSetting | DescriptionView | EventView | StatusView | LinkState


class ConsoleFeed:
    """A bounded, thread-safe inbox: producers (MQTT thread, pipeline loop) push, the Qt timer drains.

    When full the oldest items go (counted); malformed input is counted with a warning at most every
    10 s, never raised.
    """

    def __init__(self, maxsize: int = 20_000) -> None:
        self._items: deque[FeedItem] = deque()
        self._lock = threading.Lock()
        self.maxsize = maxsize
        self.dropped = 0
        self.malformed = 0
        self._last_warning = 0.0

    def push(self, item: FeedItem) -> None:
        with self._lock:
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)

    def drain(self) -> list[FeedItem]:
        with self._lock:
            items = list(self._items)
            self._items.clear()
        return items

    def requeue(self, items: list[FeedItem]) -> None:
        """Put items back at the front, in order (what a tick left for the next one)."""
        with self._lock:
            self._items.extendleft(reversed(items))

    def reject(self, what: str, reason: str) -> None:
        """Count a malformed message; warn about it, at most every 10 seconds."""
        with self._lock:
            self.malformed += 1
            count = self.malformed
            now = time.monotonic()
            warn = now - self._last_warning > 10
            if warn:
                self._last_warning = now
        if warn:
            log.warning("console: ignored malformed message on %s (%s); %d so far", what, reason, count)


def items_from_record(record: Record) -> list[FeedItem]:
    """The console's view of a pipeline record (in-process console)."""
    if isinstance(record, WindowScore):
        return [
            ScorePoint(
                record.camera,
                record.wall_time,
                record.score,
                record.descriptions[-1] if record.descriptions else None,
                record.rule,
            )
        ]
    if isinstance(record, Description):
        return [DescriptionView(record.camera, record.wall_time, record.text)]
    if isinstance(record, EventChange):
        e = record.after
        return [
            EventView(
                e.id,
                e.camera,
                e.start_wall,
                e.end_wall,
                e.peak_score,
                e.score,
                e.explanation,
                e.descriptions,
                e.snapshot,
                e.severity,
            )
        ]
    if isinstance(record, CameraStatus):
        return [StatusView(record.camera, record.wall_time, record.connected, record.fps, record.frames_dropped)]
    if isinstance(record, ControlState):
        return [RuleSetting(record.camera, r.name, r.threshold, r.enabled) for r in record.rules]
    return []


class MqttDecoder:
    """Turns the monitor's MQTT messages (README: MQTT) into feed items; rejects malformed ones."""

    def __init__(self, prefix: str, feed: ConsoleFeed) -> None:
        self.prefix = prefix.rstrip("/")
        self.feed = feed
        self._snapshots: dict[str, bytes] = {}

    def decode(self, topic: str, payload: bytes) -> list[FeedItem]:
        """Feed items for one message; an empty list for topics the console ignores or malformed input."""
        if not topic.startswith(self.prefix + "/"):
            return []
        parts = topic[len(self.prefix) + 1 :].split("/")
        try:
            if parts == ["events"]:
                return self._event(self._json(payload))
            if len(parts) == 4 and parts[1] == "rules" and parts[3] in ("score", "threshold", "enabled"):
                return self._rule(parts[0], parts[2], parts[3], payload)
            if len(parts) != 2 or not parts[0]:
                return []
            camera, kind = parts
            if kind in ("snapshot", "status") and not CAMERA_NAME.match(camera):
                raise ValueError("not a camera name")
            if kind == "snapshot":
                if len(payload) > MAX_SNAPSHOT_BYTES or payload[:2] != b"\xff\xd8":
                    raise ValueError("not a JPEG" if payload[:2] != b"\xff\xd8" else "too large")
                self._snapshots[camera] = payload
                return []
            if kind == "status":
                d = self._json(payload)
                return [
                    StatusView(
                        camera,
                        _time(d, "wall_time"),
                        bool(d.get("connected")),
                        _num(d, "fps"),
                        int(_num(d, "frames_dropped")),
                    )
                ]
            return []
        except (ValueError, KeyError, TypeError, RecursionError) as exc:
            self.feed.reject(topic, str(exc) or type(exc).__name__)
            return []

    def _rule(self, camera: str, rule: str, kind: str, payload: bytes) -> list[FeedItem]:
        """A rule's score, threshold or enabled state (its topics: ``<prefix>/<camera>/rules/<rule>/...``; the
        general rule's earlier topics ``<prefix>/<camera>/score|threshold`` carry the same and are ignored)."""
        if not CAMERA_NAME.match(camera) or not RULE_NAME.match(rule):
            raise ValueError("not a camera and rule name")
        if kind == "threshold":
            value = _number(payload)
            if not 0 < value <= 1:
                raise ValueError(f"threshold {value:g} is outside (0, 1]")
            return [RuleSetting(camera, rule, threshold=value)]
        if kind == "enabled":
            if payload not in (b"ON", b"OFF"):
                raise ValueError("not ON or OFF")
            return [RuleSetting(camera, rule, enabled=payload == b"ON")]
        d = self._json(payload)
        descriptions = d.get("descriptions") or []
        if not isinstance(descriptions, list):
            raise ValueError("descriptions is not a list")
        text = _text(descriptions[-1]) if descriptions else None
        return [ScorePoint(camera, _time(d, "wall_time"), _score(d, "score"), text, rule)]

    @staticmethod
    def _json(payload: bytes) -> dict[str, Any]:
        if len(payload) > MAX_JSON_BYTES:
            raise ValueError(f"{len(payload)} bytes is too large")
        obj = json.loads(payload.decode("utf-8"))
        if not isinstance(obj, dict):
            raise ValueError("not a JSON object")
        return obj

    def _event(self, d: dict[str, Any]) -> list[FeedItem]:
        if d.get("type") not in ("new", "update", "end"):
            raise ValueError(f"unknown event type {d.get('type')!r}")
        a = d["after"]
        if not isinstance(a, dict):
            raise ValueError("after is not an object")
        camera = str(a["camera"])
        if not CAMERA_NAME.match(camera):
            raise ValueError("not a camera name")
        descriptions = a.get("descriptions") or []
        if not isinstance(descriptions, list):
            raise ValueError("descriptions is not a list")
        end = None if a.get("end") is None else _time(a, "end")
        return [
            EventView(
                id=str(a["id"]),
                camera=camera,
                start=_time(a, "start"),
                end=end,
                peak_score=_score(a, "peak_score"),
                score=_score(a, "score"),
                explanation=None if a.get("explanation") is None else _text(a["explanation"]),
                descriptions=tuple(_text(x) for x in descriptions),
                snapshot=self._snapshots.get(camera) if a.get("has_snapshot") else None,
                severity=_severity(a),
                clip=a["clip"] if isinstance(a.get("clip"), str) else None,
            )
        ]


def _text(value: object) -> str:
    """A text of a message as the console shows it: a string as it is, anything else said plainly."""
    if isinstance(value, str):
        return value
    if value is None:
        return "(no text)"
    return f"(not a text: {json.dumps(value)[:200]})"


def _severity(d: dict[str, Any]) -> int:
    value = d.get("severity", 0)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2:
        raise ValueError("severity is not 0, 1 or 2")
    return value


def _number(payload: bytes) -> float:
    """A retained number such as ``0.65``."""
    if len(payload) > 32:
        raise ValueError("too long for a number")
    value = float(payload.decode("ascii"))
    if not math.isfinite(value):
        raise ValueError("not a finite number")
    return value


def _num(d: dict[str, Any], key: str) -> float:
    value = d[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key} is not a finite number")
    return float(value)


def _time(d: dict[str, Any], key: str) -> float:
    value = _num(d, key)
    if not EARLIEST <= value <= LATEST:
        raise ValueError(f"{key} {value:g} is not a plausible Unix time")
    return value


def _score(d: dict[str, Any], key: str) -> float:
    value = _num(d, key)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{key} {value} is outside [0, 1]")
    return value
