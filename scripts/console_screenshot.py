"""Render docs/console.png: the console with four cameras and a selected event (offscreen, synthetic feed).

    .venv/bin/python scripts/console_screenshot.py [OUT.png]

Scores and descriptions are made up for the picture; the snapshot is a real frame of the sample footage.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from PySide6 import QtCore, QtWidgets  # noqa: E402

from benchmarks.common import PEOPLE, decode_sampled  # noqa: E402
from monitor.console.feed import ConsoleFeed, EventView, LinkState, ScorePoint, StatusView  # noqa: E402
from monitor.console.window import ConsoleWindow  # noqa: E402
from pipeline.snapshots import encode_jpeg  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "console.png"
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    frames, _ = decode_sampled(PEOPLE, 10)
    snapshot = encode_jpeg(frames[44].image)
    feed = ConsoleFeed()
    win = ConsoleWindow(feed, threshold=0.7, span_s=300)
    win.resize(1500, 900)
    now = time.time()
    talk = {
        "lobby": "A man in a black jacket stands at the table reading a sheet of paper.",
        "parking": "Two cars are parked; nobody is around.",
        "loading-dock": "A forklift moves a pallet into the warehouse.",
        "back-door": "The door is closed and the corridor is empty.",
    }
    for c, cam in enumerate(talk):
        feed.push(StatusView(cam, now, True, 10.0, [0, 0, 3, 0][c]))
        for k in range(300):
            t = now - 300 + k
            s = 0.12 + 0.05 * math.sin(k / 17 + c) + 0.03 * math.sin(k / 3.1 + 2 * c)
            if cam == "lobby" and 150 <= k <= 190:
                s = 0.55 + 0.35 * math.sin(math.pi * (k - 150) / 40)
            feed.push(ScorePoint(cam, t, max(0.0, min(1.0, s)), talk[cam]))
    feed.push(
        EventView(
            "1795630000.120-a1b2c3",
            "lobby",
            now - 142,
            now - 116,
            0.89,
            0.31,
            "A man pushes another man to the floor next to the table and keeps hitting him.",
            (
                "Two men argue next to the table.",
                "One man pushes the other, who falls to the floor.",
                "The man on the floor is being hit and kicked.",
            ),
            snapshot,
        )
    )
    feed.push(
        EventView(
            "1795629800.400-d4e5f6",
            "loading-dock",
            now - 280,
            now - 262,
            0.74,
            0.2,
            "A pallet fell off the forklift.",
            ("Boxes fall from a pallet onto the floor.",),
            None,
        )
    )
    feed.push(LinkState(True, "connected to mqtt://127.0.0.1:1883"))
    win.show()
    win.pump()
    win.event_list.setCurrentRow(0)
    for _ in range(20):
        app.processEvents()
        QtCore.QThread.msleep(20)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not win.grab().save(str(out)):
        raise SystemExit(f"could not write {out}")
    print(out)


if __name__ == "__main__":
    main()
