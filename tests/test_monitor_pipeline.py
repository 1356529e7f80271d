"""The whole pipeline in-process with a fake model: ordering, gating, windows, events, sinks, shutdown."""

from __future__ import annotations

import asyncio
import resource
import time
from pathlib import Path

import pytest

from monitor.config import validate
from monitor.live.monitor import Monitor
from pipeline.inference import ScoreRequest
from pipeline.records import EventChange
from tests.helpers.fakes import AlarmAfter, FakeModel, fake_engine
from tests.helpers.media import make_clip
from tests.helpers.sinks import CollectingSink


def config(cameras: list[dict], **sections: dict) -> object:
    return validate({"cameras": cameras, **sections}, env={})


async def test_describes_judges_and_raises_an_event(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "c.mp4", seconds=6, fps=10, static_until=3.0)
    cfg = config(
        [{"name": "cam", "url": str(clip), "sampling": {"every_n_frames": 5}}],
        windows={"size": 2, "stride": 1},
        alerting={"threshold": 0.6, "hysteresis": 0.1},
    )
    sink = CollectingSink()
    fake = AlarmAfter()
    summary = await Monitor(cfg, models=fake_engine(fake, cfg), sinks=[sink]).run()
    assert sink.opened and sink.closed and not summary.stopped and not summary.failed
    assert [d.frame_index for d in sink.descriptions] == list(range(0, 60, 5))
    assert [s.seq for s in sink.scores] == list(range(1, 12))
    raw = [s.raw_score for s in sink.scores]
    assert all(r is not None and r < 0.01 for r in raw[:5]) and raw[-1] is not None and raw[-1] > 0.99
    smoothed = None  # the default causal moving average, alpha 0.5
    for s in sink.scores:
        assert s.raw_score is not None
        smoothed = s.raw_score if smoothed is None else 0.5 * s.raw_score + 0.5 * smoothed
        assert s.score == pytest.approx(smoothed)
    types = [e.type for e in sink.events]
    assert [t for t in types if t != "update"] == ["new", "end"] and "update" in types
    assert sink.events[-1].after.clip is not None  # named once written, after the end
    new = sink.events[0].after
    # raw scores cross 0.6 with the window [2.5, 3.0]; smoothed, one window later
    assert new.start_time == pytest.approx(3.0) and new.snapshot and new.snapshot[:2] == b"\xff\xd8"
    explained = [e for e in sink.events if e.after.explanation]
    assert explained and explained[0].after.explanation == "something alarming happened"
    (cs,) = summary.cameras
    assert (cs.frames_read, cs.frames_sampled, cs.described, cs.windows, cs.events) == (60, 12, 12, 11, 1)
    assert sink.statuses[-1].frames_read == 60


async def test_motion_gate_reuses_descriptions_and_the_judge_cache(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "c.mp4", seconds=6, fps=10, static_until=4.0)
    cfg = config(
        [{"name": "cam", "url": str(clip), "sampling": {"every_n_frames": 5, "motion_gate": True}}],
        sampling={"motion_max_reuse_s": 100, "motion_threshold": 0.02},  # the small square moves 2 % of it
    )
    sink = CollectingSink()
    fake = FakeModel()
    summary = await Monitor(cfg, models=fake_engine(fake, cfg), sinks=[sink]).run()
    reused = [d.reused for d in sink.descriptions]
    assert reused[:8] == [False] + [True] * 7  # static for 4 s
    assert not any(reused[8:])  # moving: every sampled frame differs
    assert summary.cameras[0].frames_gated == 7
    described = sum(n for kind, n in fake.batches if kind == "describe")
    assert described == 12 - 7
    scored = sum(n for kind, n in fake.batches if kind == "score")
    assert scored < len(sink.scores)  # identical windows were scored once


async def test_cameras_share_batches(tmp_path: Path) -> None:
    clips = [make_clip(tmp_path / f"c{i}.mp4", seconds=2, fps=10) for i in range(4)]
    cfg = config(
        [{"name": f"cam{i}", "url": str(c), "sampling": {"every_n_frames": 1}} for i, c in enumerate(clips)],
        model={"max_batch": 8, "max_wait_ms": 20},
    )
    fake = FakeModel(delay_s=0.02)
    sink = CollectingSink()
    await Monitor(cfg, models=fake_engine(fake, cfg), sinks=[sink]).run()
    sizes = [n for kind, n in fake.batches if kind == "describe"]
    assert sum(sizes) == 80 and max(sizes) == 8
    assert sum(sizes) / len(sizes) > 4
    for i in range(4):
        idx = [d.frame_index for d in sink.descriptions if d.camera == f"cam{i}"]
        assert idx == list(range(20))  # in order, per camera


async def test_a_failing_sink_does_not_stop_scoring(tmp_path: Path) -> None:
    class Broken(CollectingSink):
        name = "broken"

        async def handle(self, record: object) -> None:
            raise OSError("disk full")

    clip = make_clip(tmp_path / "c.mp4", seconds=2, fps=10)
    cfg = config(
        [{"name": "cam", "url": str(clip), "sampling": {"every_n_frames": 2}}], windows={"size": 3, "stride": 2}
    )
    good, broken = CollectingSink(), Broken()
    fake = FakeModel()
    await Monitor(cfg, models=fake_engine(fake, cfg), sinks=[broken, good]).run()
    assert len(good.descriptions) == 10 and len(good.scores) == 5


async def test_event_changes_reach_a_durable_sink_once(tmp_path: Path) -> None:
    """A durable sink (the outbox, the store) writes each event change at once, and gets it only that way."""

    class Durable(CollectingSink):
        name = "durable"

        def __init__(self) -> None:
            super().__init__()
            self.persisted: list[EventChange] = []

        def persist(self, record: EventChange) -> None:
            self.persisted.append(record)

    clip = make_clip(tmp_path / "c.mp4", seconds=6, fps=10, static_until=3.0)
    cfg = config(
        [{"name": "cam", "url": str(clip), "sampling": {"every_n_frames": 5}}],
        windows={"size": 2, "stride": 1},
        alerting={"threshold": 0.6, "hysteresis": 0.1},
    )
    durable, plain = Durable(), CollectingSink()
    await Monitor(cfg, models=fake_engine(AlarmAfter(), cfg), sinks=[durable, plain]).run()
    assert plain.events and not durable.events  # not through its queue as well
    assert [(c.type, c.after.id) for c in durable.persisted] == [(c.type, c.after.id) for c in plain.events]
    assert len(durable.scores) == len(plain.scores) and len(durable.descriptions) == len(plain.descriptions)


async def test_stop_shuts_down_promptly_while_the_model_is_slow(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "c.mp4", seconds=4, fps=10)
    cfg = config(
        [{"name": "cam", "url": str(clip), "realtime": True, "loop": True, "sampling": {"every_n_frames": 1}}],
        alerting={"threshold": 0.01, "hysteresis": 0.0},
    )
    fake = FakeModel(delay_s=0.5)
    sink = CollectingSink()
    stop = asyncio.Event()
    mon = Monitor(cfg, models=fake_engine(fake, cfg), sinks=[sink])
    task = asyncio.create_task(mon.run(stop))
    await asyncio.sleep(2.0)
    t0 = time.monotonic()
    stop.set()
    summary = await asyncio.wait_for(task, 10)
    assert time.monotonic() - t0 < 5.0
    assert summary.stopped and sink.closed


async def test_memory_stays_flat_when_the_model_is_slower_than_the_camera(tmp_path: Path) -> None:
    """A 25 fps live-paced source, every frame sampled, a model that manages ~5 frames/s."""
    clip = make_clip(tmp_path / "c.mp4", seconds=2, fps=25, size=(640, 360))
    cfg = config(
        [
            {
                "name": "cam",
                "url": str(clip),
                "realtime": True,
                "loop": True,
                "sampling": {"every_n_frames": 1},
                "queue_size": 4,
            }
        ],
        model={"max_batch": 2, "max_wait_ms": 0},
        outputs={"status_interval_s": 0.5},
    )
    fake = FakeModel(delay_s=0.4)
    sink = CollectingSink()
    stop = asyncio.Event()
    mon = Monitor(cfg, models=fake_engine(fake, cfg), sinks=[sink])
    task = asyncio.create_task(mon.run(stop))
    await asyncio.sleep(2.0)
    rss_early = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    await asyncio.sleep(4.0)
    rss_late = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stop.set()
    summary = await asyncio.wait_for(task, 10)
    (cs,) = summary.cameras
    assert cs.frames_dropped > 50  # the source is not slowed down: frames are dropped, and counted
    assert cs.frames_sampled >= 120
    assert cs.frames_sampled >= cs.frames_dropped + cs.described
    assert len(sink.statuses) >= 8 and max(s.queue_depth for s in sink.statuses) <= 4
    assert rss_late - rss_early < 50_000  # KiB: 4 s more of 25 fps 640x360 would be ~70 MB if kept


async def test_per_camera_prompt_overrides(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "c.mp4", seconds=2, fps=10)
    cfg = config(
        [
            {"name": "plain", "url": str(clip), "sampling": {"every_n_frames": 5}},
            {
                "name": "special",
                "url": str(clip),
                "sampling": {"every_n_frames": 5},
                "model": {"prompt": "Count the boxes."},
                "judge": {"prompt": "ALARM-PRONE SITE. {context}{descriptions}"},
                "context": "a loading dock",
            },
        ]
    )
    fake = FakeModel()
    sink = CollectingSink()
    await Monitor(cfg, models=fake_engine(fake, cfg), sinks=[sink]).run()
    seen = [p.user for p in fake.prompts(ScoreRequest)]
    asked = fake.describe_prompts()
    by_cam = {c: [s.score for s in sink.scores if s.camera == c] for c in ("plain", "special")}
    assert max(by_cam["plain"]) < 0.01 and min(by_cam["special"]) > 0.99
    assert any(u.startswith("ALARM-PRONE SITE. Camera: a loading dock\n") for u in seen)
    assert not any("ALARM" in u and "Report:" in u for u in seen)  # the default template is not used there
    assert asked.count("Count the boxes.") == 4 and len(asked) == 8


async def test_the_semantic_gate_keeps_alike_frames_from_the_model(tmp_path: Path) -> None:
    """A flickering scene passes the motion gate; its frames still look alike to the vision embedding."""
    clip = make_clip(tmp_path / "c.mp4", seconds=4, fps=10, moving=False)
    common = {"every_n_frames": 5, "motion_gate": True, "motion_threshold": 0.0, "motion_max_reuse_s": 100}
    results = {}
    for semantic in (False, True):
        cfg = config(
            [{"name": "cam", "url": str(clip), "sampling": {**common, "semantic_gate": semantic}}],
        )
        fake = FakeModel()
        sink = CollectingSink()
        summary = await Monitor(cfg, models=fake_engine(fake, cfg), sinks=[sink]).run()
        described = sum(n for kind, n in fake.batches if kind == "describe")
        embedded = sum(n for kind, n in fake.batches if kind == "embed")
        results[semantic] = (described, embedded, summary.cameras[0].frames_gated, len(sink.descriptions))
    assert results[False] == (8, 0, 0, 8)  # threshold 0: every sampled frame counts as motion
    described, embedded, gated, descriptions = results[True]
    assert described == 1 and embedded == 8 and gated == 7 and descriptions == 8  # the same still scene
