"""Running the console: as an MQTT subscriber (``monitor console``) or over the in-process pipeline
(``monitor run --console``)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from monitor.console.feed import ConsoleFeed, EventView, LinkState, ScorePoint, items_from_record
from pipeline.records import Record
from sinks.event_store import clip_dir

log = logging.getLogger(__name__)


class ConsoleSink:
    """The in-process console's sink: records become feed items for the Qt thread."""

    name = "console"

    def __init__(self, feed: ConsoleFeed) -> None:
        self.feed = feed

    async def open(self) -> None:
        self.feed.push(LinkState(True, "in-process pipeline running"))

    async def handle(self, record: Record) -> None:
        for item in items_from_record(record):
            self.feed.push(item)

    async def close(self) -> None:
        self.feed.push(LinkState(False, "pipeline finished"))


def load_history(feed: ConsoleFeed, path: Path, hours: float) -> int:
    """Push the last ``hours`` of scores and events from the event store; returns how many items."""
    from sinks.event_store import EventStore

    since = time.time() - hours * 3600
    store = EventStore(path, readonly=True)
    try:
        n = 0
        for s in store.scores(since=since):
            feed.push(
                ScorePoint(s.camera, s.wall_time, s.score, s.descriptions[-1] if s.descriptions else None, s.rule)
            )
            n += 1
        for e in store.events(since=since):
            full = store.event(e.id)
            feed.push(
                EventView(
                    e.id,
                    e.camera,
                    e.start,
                    e.end,
                    e.peak_score,
                    e.score,
                    e.explanation,
                    e.descriptions,
                    full.snapshot if full is not None else None,
                    e.severity,
                    e.clip,
                )
            )
            n += 1
    finally:
        store.close()
    return n


def _qt_app() -> Any:
    os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")
    from PySide6 import QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["llmvad-console"])
    import pyqtgraph as pg

    pg.setConfigOptions(antialias=True, background="w", foreground="k")
    return app


def _quit_on_signals(app: Any, window: Any) -> Any:
    """Close the window on SIGINT/SIGTERM: a timer lets Python run its signal handlers under Qt."""
    from PySide6 import QtCore

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: window.close())
    ticker = QtCore.QTimer()
    ticker.timeout.connect(lambda: None)
    ticker.start(200)
    return ticker


def open_window(
    feed: ConsoleFeed,
    *,
    span_s: float,
    history: Path | None,
    hours: float,
    title: str,
    threshold: float | None = None,
) -> tuple[Any, Any]:
    """The QApplication and a shown console window (history loading in a background thread)."""
    from monitor.console.window import ConsoleWindow

    app = _qt_app()
    clips = None if history is None else clip_dir(history)
    window = ConsoleWindow(feed, threshold=threshold, span_s=span_s, title=title, clip_dir=clips)
    if history is not None:

        def load() -> None:
            try:
                n = load_history(feed, history, hours)
                log.info("console: loaded %d scores and events from %s", n, history)
            except (OSError, FileNotFoundError, Exception) as exc:  # the console works without history
                log.warning("console: no history from %s: %s", history, exc)

        threading.Thread(target=load, name="console-history", daemon=True).start()
    window.show()
    return app, window


def run_subscriber(
    address: Any,
    prefix: str,
    *,
    span_s: float,
    history: Path | None,
    hours: float,
    ca_file: str | None = None,
    threshold: float | None = None,
) -> int:
    """``monitor console``: the window fed by an MQTT subscriber thread. Returns when it is closed."""
    from monitor.console.subscriber import MqttFeeder

    feed = ConsoleFeed()
    feeder = MqttFeeder(address, prefix, feed, ca_file=ca_file)
    app, window = open_window(
        feed,
        threshold=threshold,
        span_s=span_s,
        history=history,
        hours=hours,
        title=f"LLM anomaly monitor — {address} / {prefix}",
    )
    ticker = _quit_on_signals(app, window)
    feeder.start()
    try:
        app.exec()
    finally:
        ticker.stop()
        feeder.stop()
    return 0


def run_with_pipeline(
    run_pipeline: Callable[[asyncio.Event], Any],
    feed: ConsoleFeed,
    *,
    span_s: float,
    history: Path | None,
    hours: float,
) -> Any:
    """``monitor run --console``: Qt owns the main thread, the pipeline runs on an event loop in another.

    Closing the window (or a signal) stops the pipeline; the pipeline stopping by itself (the time limit, a
    failure) closes the window; its files ending leaves the window open for browsing. Returns what
    ``run_pipeline`` returned (or raised).
    """
    app, window = open_window(feed, span_s=span_s, history=history, hours=hours, title="LLM anomaly monitor — live")
    ticker = _quit_on_signals(app, window)
    outcome: dict[str, Any] = {}
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> None:
        holder["loop"], holder["stop"] = asyncio.get_running_loop(), asyncio.Event()
        ready.set()
        outcome["result"] = await run_pipeline(holder["stop"])

    def thread() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            outcome["error"] = exc
            ready.set()

    pipeline_thread = threading.Thread(target=thread, name="pipeline", daemon=True)
    pipeline_thread.start()
    ready.wait(10)

    from PySide6 import QtCore

    def close_when_stopped() -> None:
        result = outcome.get("result")
        if not pipeline_thread.is_alive() and ("error" in outcome or getattr(result, "stopped", False)):
            window.close()

    watcher = QtCore.QTimer()
    watcher.timeout.connect(close_when_stopped)
    watcher.start(200)
    try:
        app.exec()
    finally:
        ticker.stop()
        watcher.stop()
        if "loop" in holder and pipeline_thread.is_alive():
            holder["loop"].call_soon_threadsafe(holder["stop"].set)
        pipeline_thread.join(10)
        if pipeline_thread.is_alive():  # the models may still be loading: the run ends once they have
            log.info("waiting for the pipeline to stop (the models may still be loading)")
            pipeline_thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")
