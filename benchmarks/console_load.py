"""Console responsiveness under load: 16 cameras scoring once a second plus a burst of 100 events.

    QT_QPA_PLATFORM=offscreen .venv/bin/python -m benchmarks.console_load [--seconds S]

Runs the real window (offscreen) twice, fed from a producer thread: with its batched timer (the
design: drain the feed every 250 ms, one redraw per changed plot) and, for comparison, redrawing after
every single message. Each plot starts with an hour of history (3,600 points). It reports the time each
update takes on the Qt thread and how late a 20 ms heartbeat timer fires (the lag a user would feel).
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")

from PySide6 import QtCore, QtWidgets

from monitor.console.feed import ConsoleFeed, EventView, ScorePoint, StatusView
from monitor.console.window import ConsoleWindow

CAMERAS = [f"cam{i:02d}" for i in range(16)]


class Bridge(QtCore.QObject):
    """Carries single messages to the Qt thread as queued signals (the per-message comparison)."""

    item = QtCore.Signal(object)

    def push(self, item: object) -> None:
        self.item.emit(item)


def produce(feed: ConsoleFeed | Bridge, seconds: float, stop: threading.Event) -> None:
    t0 = time.time()
    k = 0
    while not stop.is_set() and time.time() - t0 < seconds:
        now = time.time()
        for c in CAMERAS:
            feed.push(ScorePoint(c, now, 0.3 + 0.2 * ((k + hash(c)) % 5) / 5, f"{c}: people walk by ({k})"))
            feed.push(StatusView(c, now, True, 10.0, 0))
        if k == int(seconds / 2):
            for i in range(100):
                feed.push(EventView(f"burst{i}", CAMERAS[i % 16], now - 5, None, 0.9, 0.9, None, ("x",), None))
        k += 1
        stop.wait(1.0)


def run(mode: str, seconds: float) -> dict[str, float]:
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    feed = ConsoleFeed()
    win = ConsoleWindow(feed, threshold=0.7, span_s=300, refresh_ms=250 if mode == "batched" else 10_000_000)
    win.show()
    now = time.time()
    for c in CAMERAS:
        for j in range(3600):
            feed.push(ScorePoint(c, now - 3600 + j, 0.2, None))
    win.pump()
    warm = QtCore.QEventLoop()  # let the first paint of the history finish before measuring
    QtCore.QTimer.singleShot(1500, warm.quit)
    warm.exec()
    win.tick_seconds.clear()
    bridge = Bridge()
    if mode == "per-message":  # the naive way: a queued signal per message, redrawn on arrival
        single = ConsoleFeed()

        def on_item(item: object) -> None:
            single.push(item)  # type: ignore[arg-type]
            win.feed = single
            win.pump()

        bridge.item.connect(on_item, QtCore.Qt.ConnectionType.QueuedConnection)
        target: ConsoleFeed | Bridge = bridge
    else:
        target = feed
    lateness: list[float] = []
    last = [time.perf_counter()]
    beat = QtCore.QTimer()
    beat.setInterval(20)

    def on_beat() -> None:
        t = time.perf_counter()
        lateness.append(max(0.0, t - last[0] - 0.020))
        last[0] = t

    beat.timeout.connect(on_beat)
    beat.start()
    stop = threading.Event()
    producer = threading.Thread(target=produce, args=(target, seconds, stop), daemon=True)
    producer.start()
    loop = QtCore.QEventLoop()
    QtCore.QTimer.singleShot(int((seconds + 0.5) * 1000), loop.quit)
    loop.exec()
    stop.set()
    producer.join()
    app.processEvents()
    beat.stop()
    ticks = sorted(win.tick_seconds)
    order = list(win.tick_seconds)
    print(
        f"  {mode}: slowest updates (ms): {[round(t * 1000, 1) for t in ticks[-3:]]} at update #"
        f"{sorted(range(len(order)), key=order.__getitem__)[-3:]} of {len(order)}; worst heartbeat #"
        f"{max(range(len(lateness)), key=lateness.__getitem__)} of {len(lateness)}"
    )
    assert win.event_list.count() == 100, win.event_list.count()
    win.close()
    return {
        "updates": len(ticks),
        "tick_p50_ms": statistics.median(ticks) * 1000,
        "tick_max_ms": ticks[-1] * 1000,
        "busy_s": sum(ticks),
        "late_p95_ms": sorted(lateness)[int(0.95 * (len(lateness) - 1))] * 1000,
        "late_max_ms": max(lateness) * 1000,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    print(f"16 cameras at 1 Hz (+ status), 3,600 points of history each, a burst of 100 events; {args.seconds:.0f} s")
    results = {mode: run(mode, args.seconds) for mode in ("batched", "per-message")}
    for mode, r in results.items():
        print(
            f"{mode:12s} updates {r['updates']:6.0f}  update p50 {r['tick_p50_ms']:6.2f} ms"
            f"  max {r['tick_max_ms']:7.2f} ms  Qt busy {r['busy_s']:6.2f} s"
            f"  heartbeat late p95 {r['late_p95_ms']:6.1f} ms  max {r['late_max_ms']:6.1f} ms"
        )
    b, p = results["batched"], results["per-message"]
    print(f"Qt-thread time per-message / batched = {p['busy_s'] / b['busy_s']:.1f}")


if __name__ == "__main__":
    main()
