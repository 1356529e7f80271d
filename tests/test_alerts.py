from __future__ import annotations

import itertools

import pytest

from pipeline.alerts import AlertMachine, AlertSettings
from pipeline.judge import JudgeSettings
from pipeline.records import WindowScore
from pipeline.rules import general_rule

_seq = itertools.count()


def ws(t: float, score: float) -> WindowScore:
    return WindowScore("cam", next(_seq), t - 2, t, 1000 + t, score, (f"d{t}",), (int(t * 10),))


def machine(**kw: float) -> AlertMachine:
    ids = (f"ev{i}" for i in itertools.count(1))
    return AlertMachine("cam", general_rule(JudgeSettings(), AlertSettings(**kw)), id_factory=lambda _w: next(ids))


def run(m: AlertMachine, points: list[tuple[float, float]]) -> list[tuple[str, float, str]]:
    out = []
    for t, s in points:
        out += [(c.type, t, c.after.id) for c in m.update(ws(t, s), snapshot=f"jpg{t}".encode())]
    return out


def test_event_starts_at_the_crossing_and_ends_with_hysteresis() -> None:
    m = machine(threshold=0.7, hysteresis=0.2, cooldown_s=0)
    changes = run(m, [(1, 0.1), (2, 0.75), (3, 0.9), (4, 0.6), (5, 0.8), (6, 0.49)])
    assert changes == [("new", 2, "ev1"), ("update", 3, "ev1"), ("end", 6, "ev1")]


def test_event_fields() -> None:
    m = machine(threshold=0.5, hysteresis=0.1, cooldown_s=0)
    (new,) = m.update(ws(2, 0.6), snapshot=b"a")
    assert new.before is None and new.after.active
    assert (new.after.start_time, new.after.peak_score, new.after.snapshot) == (0, 0.6, b"a")
    (up,) = m.update(ws(3, 0.9), snapshot=b"b")
    assert up.before == new.after
    assert (up.after.peak_score, up.after.snapshot, up.after.descriptions, up.after.peak_frame_index) == (
        0.9,
        b"b",
        ("d3",),
        30,
    )
    assert m.update(ws(4, 0.7)) == []  # below the peak: no change message, current score tracked
    assert m.active is not None and m.active.score == 0.7
    (end,) = m.update(ws(5, 0.1))
    assert (end.after.end_time, end.after.end_wall, end.after.score, end.after.peak_score) == (5, 1005, 0.1, 0.9)
    assert not end.after.active


def test_minimum_duration() -> None:
    m = machine(threshold=0.5, hysteresis=0.1, min_duration_s=3, cooldown_s=0)
    # windows span [t-2, t]: high from t=2 (since 0); confirmed once end - since >= 3
    assert run(m, [(2, 0.9), (3, 0.6), (4, 0.2)]) == [("new", 3, "ev1"), ("end", 4, "ev1")]
    m2 = machine(threshold=0.5, hysteresis=0.1, min_duration_s=3, cooldown_s=0)
    assert run(m2, [(2, 0.9), (3, 0.2), (4, 0.9)]) == []  # a dip resets the candidate
    ev = m.active or m._recent["ev1"]
    assert ev.peak_score == 0.9  # the peak of the pending period is kept


def test_cooldown_suppresses_new_events() -> None:
    m = machine(threshold=0.5, hysteresis=0.1, cooldown_s=10)
    changes = run(m, [(1, 0.9), (2, 0.1), (5, 0.9), (11, 0.9), (12, 0.95), (13, 0.95)])
    assert [c[:2] for c in changes] == [("new", 1), ("end", 2), ("new", 12)]
    assert m.suppressed == 2


def test_explanation_update_even_after_the_end() -> None:
    m = machine(threshold=0.5, hysteresis=0.1, cooldown_s=0)
    (new,) = m.update(ws(1, 0.9))
    up = m.set_explanation(new.after.id, "a fight")
    assert up is not None and up.type == "update" and up.after.explanation == "a fight"
    (end,) = m.update(ws(2, 0.0))
    assert end.after.explanation == "a fight"
    (new2,) = m.update(ws(3, 0.9))
    m.update(ws(4, 0.0))
    late = m.set_explanation(new2.after.id, "late")
    assert late is not None and late.after.end_time == 4 and late.after.explanation == "late"
    assert m.set_explanation("unknown", "x") is None


def test_close_ends_the_active_event() -> None:
    m = machine(threshold=0.5, hysteresis=0.1)
    assert m.close(1.0) is None
    m.update(ws(3, 0.9))
    end = m.close(7.0, 1007.0)
    assert end is not None and end.type == "end" and end.after.end_time == 7.0
    assert m.active is None


def test_wants_snapshot_only_for_new_peaks() -> None:
    m = machine(threshold=0.5, hysteresis=0.1)
    assert not m.wants_snapshot(0.4)
    assert m.wants_snapshot(0.6)
    m.update(ws(1, 0.6))
    assert not m.wants_snapshot(0.55) and m.wants_snapshot(0.7)


def test_invalid_settings() -> None:
    with pytest.raises(ValueError):
        AlertSettings(threshold=0.5, hysteresis=0.5)
