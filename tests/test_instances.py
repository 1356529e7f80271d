"""Several monitors, one site: three instances over the shards of one configuration on one broker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from monitor.config import load
from monitor.console.feed import ConsoleFeed, MqttDecoder, ScorePoint
from monitor.options import select_cameras
from tests.helpers.broker import Broker
from tests.helpers.cli import monitor_command
from tests.helpers.media import make_clip
from tests.helpers.subscriber import Subscriber

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
CAMERAS = [f"cam{i}" for i in range(1, 7)]


def write_config(tmp_path: Path, broker: Broker, pfx: str, clip: Path) -> Path:
    cams = "".join(
        f'[[cameras]]\nname = "{c}"\nurl = "{clip}"\nrealtime = true\nloop = true\n' for c in reversed(CAMERAS)
    )
    cfg = tmp_path / "site.toml"
    cfg.write_text(f"""
[model]
max_new_tokens = 4
[sampling]
every_n_frames = 5
[windows]
size = 1
stride = 1
[alerting]
threshold = 0.01
hysteresis = 0.0
cooldown_s = 0
min_duration_s = 0
[outputs]
status_interval_s = 1
[mqtt]
enabled = true
port = {broker.port}
topic_prefix = "{pfx}"
discovery_prefix = "{pfx}-ha"
reconnect_initial_s = 0.2
reconnect_max_s = 1
{cams}""")
    return cfg


def test_the_shards_split_the_cameras_stably(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "b")
    cfg = load(write_config(tmp_path, broker, "p", make_clip(tmp_path / "c.mp4", seconds=1)))
    shares = [[c.name for c in select_cameras(cfg, shard=(i, 3)).cameras] for i in (1, 2, 3)]
    assert sorted(c for s in shares for c in s) == CAMERAS and all(len(s) == 2 for s in shares)
    assert shares == [[c.name for c in select_cameras(cfg, shard=(i, 3)).cameras] for i in (1, 2, 3)]
    with pytest.raises(ValueError, match="no camera named nope"):
        select_cameras(cfg, names=["cam1", "nope"])
    with pytest.raises(ValueError, match="no cameras in this shard"):
        select_cameras(select_cameras(cfg, names=["cam1"]), shard=(2, 2))
    names = {select_cameras(cfg, shard=(i, 3)).bind_instance().instance for i in (1, 2, 3)}
    assert len(names) == 3  # a name per share by default


def test_three_instances_on_one_broker(tmp_path: Path, tiny_vlm: Path) -> None:
    broker = Broker(tmp_path / "broker").start()
    pfx = f"t{uuid.uuid4().hex[:8]}"
    clip = make_clip(tmp_path / "c.mp4", seconds=3, fps=10)
    cfg = write_config(tmp_path, broker, pfx, clip)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LLMVAD_STATE_DIR": str(tmp_path / "state")}

    def start(i: int) -> subprocess.Popen[str]:
        cmd = monitor_command("run", "--config", cfg, "--model", tiny_vlm)
        cmd += ["--shard", f"{i}/3", "--max-seconds", "120", "--output", str(tmp_path / f"out{i}")]
        log = (tmp_path / f"instance{i}.log").open("w")
        return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)

    procs = {i: start(i) for i in (1, 2, 3)}

    async def watch() -> Subscriber:
        async with Subscriber(broker.port, [f"{pfx}/#", f"{pfx}-ha/#"]) as sub:

            def online() -> set[str]:
                return {m.topic for m in sub.messages if m.topic.endswith("/available") and m.payload == b"online"}

            def cameras_with_events() -> set[str]:
                return {m.json()["after"]["camera"] for m in sub.on(f"{pfx}/events")}

            await sub.wait_for(lambda: len(online()) == 3 and cameras_with_events() == set(CAMERAS), timeout=240)
            procs[1].send_signal(signal.SIGTERM)  # one instance stops: only its cameras become unavailable
            await asyncio.to_thread(procs[1].wait, 60)
            await sub.wait_for(lambda: any(m.payload == b"offline" for m in sub.messages), timeout=30)
            await asyncio.sleep(1.0)
        return sub

    try:
        sub = asyncio.run(watch())
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs.values():
            p.wait(60)
        broker.stop()
    logs = {i: (tmp_path / f"instance{i}.log").read_text() for i in procs}
    assert procs[1].returncode == 0, logs[1][-3000:]
    instances = {}
    for i, text in logs.items():
        line = next(ln for ln in text.splitlines() if "instance " in ln and ": cameras " in ln)
        name, cams = line.split("instance ", 1)[1].split(": cameras ")
        instances[i] = (name, cams.split(", "))
    names = {name for name, _ in instances.values()}
    assert len(names) == 3
    assert sorted(c for _, cams in instances.values() for c in cams) == CAMERAS

    # one client id per instance, and no instance knocked another off the broker
    broker_log = (tmp_path / "broker" / "mosquitto.log").read_text()
    for name in names:
        assert f"as llmvad-{name}" in broker_log
    assert "already connected" not in broker_log

    # availability per instance, and discovery tied to it: the stopped one's cameras only go unavailable
    last: dict[str, bytes] = {}
    for m in sub.messages:
        last[m.topic] = m.payload
    topic = {i: f"{pfx}/instances/{name}/available" for i, (name, _) in instances.items()}
    assert last[topic[1]] == b"offline" and last[topic[2]] == last[topic[3]] == b"online"
    for i, (_, cams) in instances.items():
        for cam in cams:
            (config,) = sub.on(f"{pfx}-ha/binary_sensor/{pfx}_{cam}/anomaly/config")
            assert config.json()["availability_topic"] == topic[i]

    # state files of their own
    for name in names:
        assert (tmp_path / "state" / name / "mqtt-outbox.sqlite").is_file()
        assert (tmp_path / "state" / name / "events.sqlite").is_file()

    # event ids unique across the site, each carrying its instance's tag
    ids = [m.json()["after"]["id"] for m in sub.on(f"{pfx}/events") if m.json()["type"] == "new"]
    assert len(ids) == len(set(ids)) and len({i.split("-")[1] for i in ids}) == 3

    # the console, one subscriber, shows the cameras of every instance together
    feed = ConsoleFeed()
    decoder = MqttDecoder(pfx, feed)
    seen = {p.camera for m in sub.messages for p in decoder.decode(m.topic, m.payload) if isinstance(p, ScorePoint)}
    assert seen == set(CAMERAS) and feed.malformed == 0
