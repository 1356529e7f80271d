"""Summaries of a period: staged summarising, ``monitor summarize`` with the real 270M judge, and the
MQTT request/answer on a real broker."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from pathlib import Path

import pytest

from monitor.cli import main
from monitor.live.summary import parse_request, thin
from pipeline.inference import ExplainRequest
from pipeline.records import Description, Event
from pipeline.snapshots import encode_jpeg
from pipeline.summaries import LogLine, Summarizer, SummarySettings, chunks, condense
from sinks.event_store import EventStore
from tests.helpers.broker import Broker
from tests.helpers.fakes import FakeModel, fake_engine
from tests.helpers.media import make_clip
from tests.helpers.subscriber import Subscriber
from tests.test_operator_controls import Running, live_config, publish

T0 = 1_796_000_000.0  # a fixed moment, so that periods are reproducible


def test_condense_drops_repeats_and_chunks_respect_the_limit() -> None:
    lines = [
        LogLine(T0 + 2, "a", "an empty hall"),
        LogLine(T0 + 1, "a", "an empty hall"),
        LogLine(T0 + 3, "b", "an empty hall"),
        LogLine(T0 + 4, "a", "an empty hall"),
        LogLine(T0 + 5, "a", "a man runs in"),
        LogLine(T0 + 6, "a", "an empty hall"),
        LogLine(T0 + 5.5, "a", "suspicious (score 0.90): a man runs in", event=True),
    ]
    kept = condense(lines)
    assert [(x.wall_time - T0, x.camera) for x in kept] == [(1, "a"), (3, "b"), (5, "a"), (5.5, "a"), (6, "a")]
    groups = chunks(["x" * 400] * 10, 1000)
    assert [len(g) for g in groups] == [2, 2, 2, 2, 2]
    assert chunks(["y" * 5000], 1000) == [["y" * 5000]]  # a text longer than the limit stands alone
    many = [LogLine(T0 + i, "a", f"d{i}") for i in range(100)] + [LogLine(T0 + 50.5, "a", "alarm", event=True)]
    thinned = thin(condense(many), 10)
    assert sum(not x.event for x in thinned) == 10 and any(x.event for x in thinned)
    assert thinned[0].text == "d0" and thinned[-1].text == "d99"


class Counting(FakeModel):
    """Answers each explain request with a short text naming how many log lines it was given."""

    def explain(self, batch, max_new_tokens, cancel=None):  # type: ignore[no-untyped-def]
        from pipeline.inference import ExplainResult

        out = []
        for request in self._work("explain", batch, cancel):
            assert isinstance(request, ExplainRequest)
            out.append(ExplainResult(f"{request.prompt.user.count(chr(10))} lines seen."))
        return out


async def test_a_long_period_is_summarised_in_parts_then_merged() -> None:
    settings = SummarySettings(chunk_chars=1000, max_new_tokens=16)
    fake = Counting()
    lines = [LogLine(T0 + i, "hall", f"person number {i} walks through the hall carrying a box") for i in range(300)]
    async with fake_engine(fake) as models:
        writer = Summarizer(models, settings)
        text = await writer.summarize("today", lines)
    prompts = [p.user for p in fake.prompts(ExplainRequest)]
    assert writer.stages == 2 and writer.requests == len(prompts) > 2
    assert text.endswith("lines seen.")
    # every part fits the limit (plus the template's own words), and the last prompt merges the parts
    assert all(len(p) < 1000 + len(settings.prompt) for p in prompts)
    assert "Summaries of consecutive parts of today" in prompts[-1] and "Part 1:" in prompts[-1]
    parts = prompts[:-1]
    assert sum(p.count("person number") for p in parts) == 300  # each line in exactly one part
    async with fake_engine(FakeModel()) as models:
        assert await Summarizer(models, settings).summarize("today", []) == "Nothing was recorded in this period."


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        (b"[1, 2]", "not a JSON object"),
        (b'{"since": "yesterday-ish"}', "cannot read time"),
        (b'{"since": "1h", "until": "2h"}', "until must come after since"),
        (b'{"camera": "garage"}', "not one of this monitor's"),
        (b'{"since": "1h", "colour": "red"}', "unknown field"),
        (b'{"since": true}', "must be a time"),
        (b"{" + b" " * 5000 + b"}", "at most 4096"),
        (b"{broken", "Expecting property name"),
    ],
)
def test_bad_summary_requests_are_refused_with_a_reason(payload: bytes, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_request(payload, ["yard"], now=T0)


def test_summary_requests() -> None:
    r = parse_request(b'{"since": "8h", "camera": "yard", "id": 7}', ["yard"], now=T0)
    assert (r.since, r.until, r.camera, r.id) == (T0 - 8 * 3600, T0, "yard", "7")
    assert parse_request(b"30m", ["yard"], now=T0).since == T0 - 1800
    assert parse_request(b"", ["yard"], now=T0).since == T0 - 86400


def history(path: Path, now: float) -> Path:
    """An event history of the last hour: two cameras' descriptions and two events, one with a snapshot."""
    store = EventStore(path)
    texts = ["An empty corridor with a closed door.", "A man in a grey coat walks along the corridor."]
    for i in range(40):
        for cam in ("lobby", "yard"):
            store.add_description(Description(cam, i, float(i), now - 3000 + 60 * i, texts[(i // 10) % 2]))
    store.add_description(Description("yard", 99, 99.0, now - 1200, "A man hits another man with a stick."))
    jpeg = encode_jpeg(make_frame(), 80)
    for k, (cam, at, severity, why, snap) in enumerate(
        [
            ("yard", now - 1200, 2, "A man hits another man with a stick.", jpeg),
            ("lobby", now - 600, 1, "Someone forces the back door open.", None),
        ]
    ):
        store.upsert_event(
            Event(f"ev{k}", cam, 0.0, at, 20.0, at + 20, 0.97 - k / 10, 0.9, 3, (why,), why, snap, severity)
        )
    store.close()
    return path


def make_frame():  # type: ignore[no-untyped-def]
    import numpy as np

    return np.full((48, 64, 3), 120, dtype=np.uint8)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["text", "markdown", "html"])
def test_monitor_summarize_with_the_real_judge(
    tmp_path: Path, judge_270m: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = history(tmp_path / "events.sqlite", time.time())
    out = tmp_path / f"summary.{fmt}"
    args = ["summarize", "--db", str(db), "--judge-model", str(judge_270m), "--since", "2h", "--format", fmt]
    assert main([*args, "--output", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"summary written to {out}"
    page = out.read_text()
    assert "Someone forces the back door open." in page and "A man hits another man with a stick." in page
    assert "2 dangerous" in page and "1 suspicious" in page
    assert "Events (2)" in page
    if fmt == "html":
        assert page.count("data:image/jpeg;base64,") == 1  # the one snapshot, embedded
    if fmt == "markdown":
        assert (tmp_path / "summary-snapshots" / "ev0.jpg").is_file()
        assert "](summary-snapshots/ev0.jpg)" in page
    # the model's own sentences come first, after the title
    written = page.split("\n")[2] if fmt != "html" else page.split("<p>")[1]
    assert written.strip() and "Nothing was recorded" not in written
    # one camera, a period with nothing in it
    assert main(["summarize", "--db", str(db), "--judge-model", str(judge_270m), "--since", "3d", "--until", "2d"]) == 0
    quiet = capsys.readouterr().out
    assert "Nothing was recorded in this period." in quiet and "Events (0)" in quiet
    assert main(["summarize", "--db", str(db), "--since", "1h", "--until", "2h"]) == 2
    assert "must come after" in capsys.readouterr().err


async def test_summary_over_mqtt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broker = Broker(tmp_path / "broker").start()
    pfx = f"t{uuid.uuid4().hex[:8]}"
    clip = make_clip(tmp_path / "still.mp4", seconds=2, fps=10, moving=False)
    cfg = live_config(tmp_path, broker.port, pfx, clip)
    history(tmp_path / "events.db", time.time())  # what earlier runs recorded
    try:
        async with Subscriber(broker.port, [f"{pfx}/#"]) as sub, Running(cfg, Counting()) as run:
            await sub.wait_for(lambda: len(sub.on(f"{pfx}/yard/score")) >= 1)
            await publish(broker.port, f"{pfx}/summarize/set", b'{"since": "2h", "camera": "yard", "id": "away"}')
            await sub.wait_for(lambda: bool(sub.on(f"{pfx}/summary")))
            answer = sub.on(f"{pfx}/summary")[0].json()
            assert answer["id"] == "away" and answer["camera"] == "yard"
            assert answer["summary"].endswith("lines seen.")
            assert [e["id"] for e in answer["events"]] == ["ev0"] and answer["events"][0]["severity"] == 2
            assert "A man hits another man with a stick." in answer["markdown"]
            assert not sub.on(f"{pfx}/summary")[0].retain
            with caplog.at_level(logging.WARNING, logger="sinks.mqtt_sink"):
                await publish(broker.port, f"{pfx}/summarize/set", b'{"camera": "garage"}')
                await publish(broker.port, f"{pfx}/summarize/set", b"soon")
                await sub.wait_for(lambda: run.monitor.commands.stats.rejected == 2)
            assert caplog.text.count("ignored a command on") == 1 and "garage" in caplog.text
            await asyncio.sleep(0.3)
            assert len(sub.on(f"{pfx}/summary")) == 1
    finally:
        broker.stop()
    assert json.dumps(answer)  # JSON all the way
