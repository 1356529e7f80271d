"""The alert state machine: window scores -> events with a lifecycle (new, update, end)."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator, Field, model_validator

from pipeline.records import Event, EventChange, WindowScore
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.rules import Rule


def _rising(bands: tuple[float, float]) -> tuple[float, float]:
    low, high = bands
    if not 0 < low <= high <= 1:
        raise ValueError(f"severity bands must rise within (0, 1], got {list(bands)}")
    return bands


SeverityBands = Annotated[tuple[float, float], AfterValidator(_rising)]
"""Peak scores from which an event is level 1 and level 2."""


class AlertSettings(Settings):
    """How the general rule's window scores become events (``[alerting]``, overridable per camera):
    threshold with hysteresis, minimum duration and cooldown, all in seconds of stream time; its
    hysteresis and severity bands are also every other rule's unless the rule sets its own."""

    threshold: float = Field(0.7, gt=0, le=1, title="An event starts when a window scores at least this")
    hysteresis: float = Field(0.1, ge=0, lt=1, title="It ends when the score falls below threshold - hysteresis")
    min_duration_s: float = Field(0.0, ge=0, title="The score must stay high this long before an event starts")
    consecutive: int = Field(1, ge=1, le=100, title="Windows in a row at or above the threshold before an event starts")
    cooldown_s: float = Field(30.0, ge=0, title="No new event on a camera this long after its last one ended")
    snapshot_quality: int = Field(85, ge=10, le=100, title="JPEG quality of event snapshots")
    severity: SeverityBands = Field(
        (0.85, 0.95),
        title="Peak scores from which an event is level 1 (suspicious) and level 2 (dangerous); below: 0",
    )

    @model_validator(mode="after")
    def _hysteresis(self) -> AlertSettings:
        if self.hysteresis >= self.threshold:
            raise ValueError(f"hysteresis ({self.hysteresis}) must be below threshold ({self.threshold})")
        return self


def new_event_id(wall_time: float, tag: str = "") -> str:
    """A unique, roughly time-ordered event id such as ``1764085412.512-3f9a1c``, or with the monitor
    instance's tag ``1764085412.512-b7e2-3f9a1c`` (unique across the instances of a site)."""
    return f"{wall_time:.3f}-{tag + '-' if tag else ''}{secrets.token_hex(3)}"


def instance_tag(instance: str) -> str:
    """Four hex digits that tell a monitor instance's event ids apart from the others'."""
    return hashlib.sha256(instance.encode()).hexdigest()[:4] if instance else ""


@dataclass(slots=True)
class _Candidate:
    since: float
    since_wall: float
    peak: WindowScore
    snapshot: bytes | None
    windows: int = 1


class AlertMachine:
    """Turns one camera's window scores for one rule into events.

    * An event starts when scores have stayed at or above the rule's ``threshold`` for ``min_duration_s``
      and for ``consecutive`` windows (at the first such window when these are 0 and 1) and the rule is
      not cooling down. Its events carry the rule's name and level.
    * While it lasts, a higher score raises its peak (new snapshot and descriptions): an ``update``.
    * It ends at the first window below the rule's ``release``; no new event starts for ``cooldown_s``
      after that.

    The rule in force can change at any window (:meth:`use`: an operator's change).
    """

    RECENT = 32

    def __init__(self, camera: str, rule: Rule, *, id_factory: Callable[[float], str] = new_event_id) -> None:
        self.camera = camera
        self.rule = rule
        self._new_id = id_factory
        self.active: Event | None = None
        self._candidate: _Candidate | None = None
        self._cooldown_until = float("-inf")
        self._recent: OrderedDict[str, Event] = OrderedDict()
        self.suppressed = 0
        """Crossings ignored because of the cooldown."""

    def use(self, rule: Rule) -> None:
        """Apply these settings of the rule from the next window on."""
        self.rule = rule

    def wants_snapshot(self, score: float) -> bool:
        """Whether a window with this score would start an event or raise a peak (so needs a snapshot)."""
        if self.active is not None:
            return score > self.active.peak_score
        if score < self.rule.threshold:
            return False
        return self._candidate is None or score > self._candidate.peak.score

    def update(self, ws: WindowScore, snapshot: bytes | None = None) -> list[EventChange]:
        """Feed the next window score (in time order); return the event changes it causes."""
        s = self.rule
        if self.active is not None:
            ev = self.active
            if ws.score < s.release:
                ended = replace(ev, end_time=ws.end_time, end_wall=ws.wall_time, score=ws.score)
                self.active = None
                self._cooldown_until = ws.end_time + s.cooldown_s
                self._remember(ended)
                return [EventChange("end", ev, ended)]
            if ws.score > ev.peak_score:
                raised = replace(
                    ev,
                    score=ws.score,
                    peak_score=ws.score,
                    peak_frame_index=ws.frame_indices[-1],
                    descriptions=ws.descriptions,
                    snapshot=snapshot if snapshot is not None else ev.snapshot,
                    severity=self._severity(ws.score),
                )
                self.active = raised
                return [EventChange("update", ev, raised)]
            self.active = replace(ev, score=ws.score)
            return []
        if ws.score < s.threshold:
            self._candidate = None
            return []
        if ws.end_time < self._cooldown_until:
            self.suppressed += 1
            return []
        cand = self._candidate
        if cand is None:
            cand = self._candidate = _Candidate(ws.start_time, ws.wall_time, ws, snapshot)
        else:
            cand.windows += 1
            if ws.score > cand.peak.score:
                cand.peak, cand.snapshot = ws, snapshot if snapshot is not None else cand.snapshot
        if ws.end_time - cand.since < s.min_duration_s or cand.windows < s.consecutive:
            return []
        self._candidate = None
        peak = cand.peak
        ev = Event(
            id=self._new_id(ws.wall_time),
            camera=self.camera,
            start_time=cand.since,
            start_wall=cand.since_wall,
            end_time=None,
            end_wall=None,
            peak_score=peak.score,
            score=ws.score,
            peak_frame_index=peak.frame_indices[-1],
            descriptions=peak.descriptions,
            snapshot=cand.snapshot,
            severity=self._severity(peak.score),
            rule=self.rule.name,
        )
        self.active = ev
        return [EventChange("new", None, ev)]

    def _severity(self, peak_score: float) -> int:
        return self.rule.severity_of(peak_score)

    def set_explanation(self, event_id: str, text: str) -> EventChange | None:
        """Attach an explanation to an active or recently ended event."""
        return self._amend(event_id, explanation=text)

    def set_clip(self, event_id: str, name: str) -> EventChange | None:
        """Name the video clip of an active or recently ended event."""
        return self._amend(event_id, clip=name)

    def _amend(self, event_id: str, **fields: str) -> EventChange | None:
        if self.active is not None and self.active.id == event_id:
            before = self.active
            self.active = replace(before, **fields)  # type: ignore[arg-type]
            return EventChange("update", before, self.active)
        before_ended = self._recent.get(event_id)
        if before_ended is None:
            return None
        after = replace(before_ended, **fields)  # type: ignore[arg-type]
        self._recent[event_id] = after
        return EventChange("update", before_ended, after)

    def close(self, end_time: float, wall_time: float | None = None) -> EventChange | None:
        """End the active event (end of stream or shutdown)."""
        if self.active is None:
            return None
        ev = self.active
        ended = replace(ev, end_time=max(end_time, ev.start_time), end_wall=wall_time or time.time())
        self.active = None
        self._remember(ended)
        return EventChange("end", ev, ended)

    def _remember(self, ev: Event) -> None:
        self._recent[ev.id] = ev
        while len(self._recent) > self.RECENT:
            self._recent.popitem(last=False)
