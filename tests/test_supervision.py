"""Every background task and thread has an owner: faults injected into each are logged at once, naming the
part, and the part is restarted where that is safe, or the run stops with a non-zero exit status."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import uuid
from pathlib import Path

import pytest

from monitor.config import validate
from monitor.console.feed import ConsoleFeed, LinkState, MqttDecoder, ScorePoint
from monitor.console.subscriber import BrokerAddress, MqttFeeder
from monitor.live.monitor import Monitor
from monitor.offline.batch import plan_jobs, run_batch
from pipeline.camera import CameraPipeline
from pipeline.engines.batching import BatchingEngine
from pipeline.queues import Backpressure, ThreadToAsyncQueue
from pipeline.records import Frame
from pipeline.sampling import FrameSampler, SamplingSettings
from pipeline.sources import SourceSettings, VideoSource
from pipeline.supervision import restarting
from sinks.base import SinkHub, SinkRunner
from sinks.event_store import EventStore
from sinks.outbox import Outbox
from sinks.store_sink import StoreSettings, StoreSink
from tests.helpers.broker import Broker
from tests.helpers.fakes import AlarmAfter, FakeModel, fake_engine
from tests.helpers.media import make_clip
from tests.helpers.sinks import CollectingSink, mqtt_sink
from tests.helpers.subscriber import Subscriber
from tests.test_mqtt import event_change, mqtt_cfg


def errors(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR and text in r.getMessage()]


async def test_restarting_logs_each_failure_and_runs_the_work_again(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RuntimeError(f"boom {calls}")

    await restarting("the flaky part", flaky, initial_s=0.01, max_s=0.02)
    assert calls == 3
    logged = errors(caplog, "the flaky part failed")
    assert len(logged) == 2 and "boom 1" in logged[0].getMessage() and logged[0].exc_info is not None


async def test_a_failed_sink_runner_is_restarted_and_delivers_the_rest(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    original = SinkRunner.run
    crashed = []

    async def crash_once(self: SinkRunner) -> None:
        if not crashed:
            crashed.append(True)
            raise RuntimeError("runner bug")
        await original(self)

    monkeypatch.setattr(SinkRunner, "run", crash_once)
    monkeypatch.setattr("pipeline.supervision.backoff_delay", lambda *a: 0.01)
    sink = CollectingSink()
    async with SinkHub([sink]) as hub:
        for n in range(3):
            hub.publish(event_change("new", n))
        await asyncio.sleep(0.2)
    assert [r.after.id for r in sink.events] == ["ev0", "ev1", "ev2"]
    assert errors(caplog, "sink collect failed") and crashed


async def test_an_outbox_error_is_logged_at_once_and_delivery_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A SQLite error inside the MQTT delivery loop used to end delivery for good, without a log line."""
    broker = Broker(tmp_path / "broker").start()
    pfx = f"t{uuid.uuid4().hex[:8]}"
    original = Outbox.peek
    failed = []

    def peek(self: Outbox, limit: int) -> list:
        if not failed:
            failed.append(True)
            raise sqlite3.OperationalError("disk I/O error")
        return original(self, limit)

    sink = mqtt_sink(mqtt_cfg(broker.port, pfx, outbox=str(tmp_path / "o.sqlite")), ["cam"])
    try:
        async with Subscriber(broker.port, [f"{pfx}/events"]) as sub:
            monkeypatch.setattr(Outbox, "peek", peek)
            await sink.open()
            await sink.handle(event_change("new", 1))
            await sub.wait_for(lambda: len(sub.messages) == 1)
    finally:
        await sink.close()
        broker.stop()
    assert failed and sink.connection.stats.failures == 1
    (line,) = errors(caplog, f"MQTT delivery to 127.0.0.1:{broker.port} failed")
    assert "disk I/O error" in line.getMessage()
    assert sub.messages[0].json()["after"]["id"] == "ev1"


async def test_store_retention_failure_is_logged_and_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = []
    original = EventStore.enforce_retention

    def retention(self: EventStore, **kw: float) -> int:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise sqlite3.DatabaseError("database disk image is malformed")
        return original(self, **kw)

    monkeypatch.setattr(EventStore, "enforce_retention", retention)
    monkeypatch.setattr("pipeline.supervision.backoff_delay", lambda *a: 0.01)
    sink = StoreSink(StoreSettings(path=tmp_path / "h.sqlite", retention_interval_s=0.05))
    await sink.open()
    await asyncio.sleep(0.3)
    await sink.close()
    assert len(calls) >= 3  # failed once, then ran again on its interval
    assert errors(caplog, "event store retention failed")


async def test_a_live_source_restarts_its_decode_loop_after_a_bug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clip = make_clip(tmp_path / "c.mp4", seconds=1, fps=10)
    original = VideoSource._convert
    failed = []

    def convert(self: VideoSource, frame: object) -> object:
        if not failed:
            failed.append(True)
            raise RuntimeError("decoder bug")
        return original(self, frame)  # type: ignore[arg-type]

    monkeypatch.setattr(VideoSource, "_convert", convert)
    q: ThreadToAsyncQueue[Frame] = ThreadToAsyncQueue(
        maxsize=100, policy=Backpressure.WAIT, loop=asyncio.get_running_loop()
    )
    settings = SourceSettings(name="cam", url=str(clip), live=True, reconnect_initial_s=0.05, reconnect_max_s=0.1)
    src = VideoSource(settings, sampler=FrameSampler(SamplingSettings(every_n_frames=1)), queue=q)
    src.start()
    got = []
    while len(got) < 5:
        got.append(await asyncio.wait_for(q.get(), 10))
    src.stop()
    await asyncio.to_thread(src.join, 5)
    assert src.stats.failures == 1 and failed
    assert errors(caplog, "the decode loop failed; restarting it")


def _camera_cfg(tmp_path: Path, names: tuple[str, ...]) -> object:
    clip = make_clip(tmp_path / "c.mp4", seconds=2, fps=10)
    return validate(
        {
            "cameras": [
                {"name": n, "url": str(clip), "realtime": True, "loop": True, "sampling": {"every_n_frames": 2}}
                for n in names
            ],
            "windows": {"size": 1, "stride": 1},
        },
        env={},
    )


async def test_a_crashed_camera_stage_stops_the_run_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    original = CameraPipeline._request_score

    def broken(self: CameraPipeline, window: object, tg: object) -> object:
        if self.camera == "back":
            raise RuntimeError("stage bug")
        return original(self, window, tg)  # type: ignore[arg-type]

    monkeypatch.setattr(CameraPipeline, "_request_score", broken)
    cfg = _camera_cfg(tmp_path, ("front", "back"))
    sink = CollectingSink()
    summary = await asyncio.wait_for(Monitor(cfg, models=fake_engine(FakeModel(), cfg), sinks=[sink]).run(), 30)
    assert summary.crashed == ("camera back",) and summary.stopped  # looped cameras never end by themselves
    (line,) = errors(caplog, "camera 'back': its stage failed")
    assert "stage bug" in line.getMessage() and line.exc_info is not None
    assert sink.closed


def test_a_crashed_camera_stage_gives_exit_status_1(
    tmp_path: Path, tiny_vlm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from monitor.cli import main

    def broken(self: CameraPipeline, window: object, tg: object) -> object:
        raise RuntimeError("stage bug")

    monkeypatch.setattr(CameraPipeline, "_request_score", broken)
    clip = make_clip(tmp_path / "c.mp4", seconds=2, fps=10)
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[store]\nenabled = false\n[windows]\nsize = 1\nstride = 1\n[[cameras]]\nname = "cam"\nurl = "{clip}"\n'
        "realtime = true\nloop = true\n"
    )
    code = main(["run", "--config", str(cfg), "--model", str(tiny_vlm), "--output", str(tmp_path / "out")])
    assert code == 1


async def test_a_dead_model_engine_stops_the_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    class Dying(FakeModel):
        def describe(self, batch, max_new_tokens, cancel=None):  # type: ignore[no-untyped-def]
            raise SystemExit("the model thread dies")

    cfg = _camera_cfg(tmp_path, ("cam",))
    summary = await asyncio.wait_for(Monitor(cfg, models=fake_engine(Dying(), cfg), sinks=[]).run(), 30)
    assert summary.crashed == ("model engine",)
    assert errors(caplog, "the model engine failed")


async def test_the_run_awaits_the_engine_failure_it_is_told_of(tmp_path: Path) -> None:
    """The failure is an event the run waits on with its other tasks, not a flag it polls: an engine whose
    ``failure`` never reads as set still stops a run of a camera that would go on for ever."""

    told = asyncio.Event()

    class Told(BatchingEngine):
        @property
        def failure(self) -> BaseException | None:
            return None

        @failure.setter
        def failure(self, value: BaseException | None) -> None:
            pass

        async def failed(self) -> BaseException:
            await told.wait()
            return RuntimeError("the GPU fell off the bus")

    cfg = _camera_cfg(tmp_path, ("cam",))
    engine = Told(FakeModel(), max_batch=cfg.model.max_batch)
    sink = CollectingSink()
    run = asyncio.create_task(Monitor(cfg, models=engine, sinks=[sink]).run())
    while len(sink.scores) < 2:
        await asyncio.sleep(0.05)
    told.set()
    summary = await asyncio.wait_for(run, 60)
    assert summary.crashed == ("model engine",) and summary.stopped


async def test_a_video_whose_processing_crashes_gets_a_failed_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import monitor.offline.batch as batch

    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a", "b", "c"):
        make_clip(videos / f"{name}.mp4", seconds=1, fps=10)
    original = batch.write_outputs

    def write(job: batch.VideoJob, *args: object, **kw: object) -> None:
        if job.stem == "b":
            raise ValueError("plot bug")
        original(job, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(batch, "write_outputs", write)
    cfg = validate({"sampling": {"every_n_frames": 5}}, env={})
    summary = await run_batch(cfg, plan_jobs(videos, tmp_path / "out"), models=fake_engine(AlarmAfter(), cfg))
    rows = {o.video: o for o in summary.outcomes}
    assert set(rows) == {"a.mp4", "b.mp4", "c.mp4"}
    assert rows["b.mp4"].status == "failed" and "plot bug" in (rows["b.mp4"].error or "")
    assert rows["a.mp4"].status == rows["c.mp4"].status == "done"
    assert errors(caplog, "b.mp4: processing failed")


def test_the_console_subscriber_survives_a_bug(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import aiomqtt

    broker = Broker(tmp_path / "broker").start()
    pfx = f"t{uuid.uuid4().hex[:8]}"
    original = MqttDecoder.decode
    failed = []

    def decode(self: MqttDecoder, topic: str, payload: bytes) -> list:
        if not failed:
            failed.append(True)
            raise RuntimeError("decoder bug")
        return original(self, topic, payload)

    monkeypatch.setattr(MqttDecoder, "decode", decode)
    monkeypatch.setattr("monitor.console.subscriber.backoff_delay", lambda *a: 0.05)
    feed = ConsoleFeed()
    feeder = MqttFeeder(BrokerAddress("127.0.0.1", broker.port), pfx, feed)
    feeder.start()
    items: list = []

    async def publish() -> None:
        payload = b'{"wall_time": 1800000000.0, "score": 0.5}'
        async with aiomqtt.Client("127.0.0.1", broker.port) as c:
            for _ in range(100):
                await c.publish(f"{pfx}/cam/rules/anomaly/score", payload)
                await asyncio.sleep(0.05)
                items.extend(feed.drain())
                if any(isinstance(i, ScorePoint) for i in items):
                    return

    try:
        asyncio.run(publish())
    finally:
        feeder.stop()
        broker.stop()
    assert failed and feeder.failures == 1
    assert any(isinstance(i, LinkState) and not i.connected and "decoder bug" in i.detail for i in items)
    assert any(isinstance(i, ScorePoint) for i in items)  # it reconnected and goes on
    assert errors(caplog, "console: the MQTT subscriber failed")
