"""The console window: cameras, live score plots, events with snapshots. Everything here runs on the Qt thread."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

from monitor.console.feed import (
    ConsoleFeed,
    DescriptionView,
    EventView,
    FeedItem,
    LinkState,
    RuleSetting,
    ScorePoint,
    StatusView,
)
from monitor.console.series import ScoreSeries
from pipeline.records import GENERAL_RULE

SEVERITY_RGB = {0: (225, 170, 30), 1: (240, 110, 20), 2: (220, 30, 30)}
"""Event colours by severity: 0 worth noting (amber), 1 suspicious (orange), 2 dangerous (red)."""
SEVERITY_COLOURS = {k: "#{:02x}{:02x}{:02x}".format(*rgb) for k, rgb in SEVERITY_RGB.items()}
SEVERITY_LABELS = {0: "noting", 1: "suspicious", 2: "DANGEROUS"}
EVENT_ALPHA, OPEN_EVENT_ALPHA = 60, 110
REGIONS_PER_CAMERA = 64
RULE_COLOURS = ((40, 110, 220), (230, 140, 20), (40, 160, 70), (150, 60, 190), (20, 170, 180), (120, 120, 120))
"""Lines of a camera's rules, in the order they appear (the general rule's usually first: blue)."""
EVENTS_PER_TICK = 20
FUTURE_S = 600.0
"""A score from further ahead of this machine's clock than this is not drawn (counted as malformed)."""


def figure(value: float, spec: str) -> str:
    """A number for a table cell: as ``spec`` says, or in scientific notation when it would not fit."""
    return format(value, spec) if abs(value) < 1e9 else f"{value:.3g}"


@dataclass
class RuleLine:
    """One rule's scores on a camera's plot, its line and its threshold (as the monitor says it is)."""

    series: ScoreSeries
    curve: Any
    threshold: pg.InfiniteLine
    known: float | None = None
    """The threshold in force, once the monitor said it."""
    enabled: bool = True


class CameraPanel(QtWidgets.QFrame):
    """One camera: each rule's score against wall-clock time with its threshold, events as shaded spans,
    the latest description."""

    def __init__(self, camera: str, *, capacity: int, thresholds: dict[str, float] | None = None) -> None:
        """``thresholds``: lines to draw until the monitor publishes the rules' own."""
        super().__init__()
        self.camera = camera
        self.setFrameShape(QtWidgets.QFrame.Shape.StyledPanel)
        self.title = QtWidgets.QLabel(f"<b>{camera}</b>")
        self.plot = pg.PlotWidget(axisItems={"bottom": pg.DateAxisItem(orientation="bottom")}, background="w")
        self.plot.setMinimumHeight(140)
        # take the room the grid gives (not the view's large size hint), so several rows fit on screen
        self.plot.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Ignored)
        for axis in ("left", "bottom"):
            self.plot.getAxis(axis).setTextPen("k")
        self.plot.setYRange(0, 1.05, padding=0)
        self.plot.setMouseEnabled(x=True, y=False)
        # an operator who drags or zooms the time axis stops the view from following (Live resumes it)
        self.plot.getViewBox().sigRangeChangedManually.connect(self._scrolled_away)
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.plot.getPlotItem().hideButtons()
        self.lines: dict[str, RuleLine] = {}
        """Each rule's line, in the order the rules appeared."""
        self._capacity = capacity
        self._dirty: set[str] = set()
        self.regions: OrderedDict[str, tuple[pg.LinearRegionItem, EventView]] = OrderedDict()
        self.description = QtWidgets.QLabel("…")
        self.description.setWordWrap(True)
        self.description.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.title)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.description)
        self.following = True
        self._scrolled = 0.0
        for rule, value in (thresholds or {}).items():
            self.set_rule(RuleSetting(camera, rule, threshold=value))

    def line(self, rule: str) -> RuleLine:
        """The rule's line, created the first time the rule is seen (a legend once there are two)."""
        found = self.lines.get(rule)
        if found is not None:
            return found
        rgb = RULE_COLOURS[len(self.lines) % len(RULE_COLOURS)]
        curve = self.plot.plot(pen=pg.mkPen(rgb, width=2), name=rule)
        curve.setClipToView(True)
        curve.setDownsampling(auto=True, method="peak")
        threshold = pg.InfiniteLine(
            angle=0, movable=False, pen=pg.mkPen(rgb, width=1, style=QtCore.Qt.PenStyle.DashLine)
        )
        threshold.setVisible(False)
        self.plot.addItem(threshold)
        found = self.lines[rule] = RuleLine(ScoreSeries(self._capacity), curve, threshold)
        if len(self.lines) == 2:
            self.plot.addLegend(offset=(4, 4))
            for name, existing in self.lines.items():
                self.plot.getPlotItem().legend.addItem(existing.curve, name)
        elif len(self.lines) > 2:
            self.plot.getPlotItem().legend.addItem(curve, rule)
        return found

    def thresholds(self) -> dict[str, float]:
        """The threshold in force of each rule whose threshold is known."""
        return {r: line.known for r, line in self.lines.items() if line.known is not None}

    def set_rule(self, setting: RuleSetting) -> None:
        """Draw a rule's threshold as the monitor published it (paused: no line)."""
        line = self.line(setting.rule)
        if setting.enabled is not None:
            line.enabled = setting.enabled
        if setting.threshold is not None:
            line.known = setting.threshold
            line.threshold.setValue(setting.threshold)
        line.threshold.setVisible(line.known is not None and line.enabled)

    def _scrolled_away(self, *_: object) -> None:
        self.following = False

    def newest(self) -> float | None:
        """The time of the newest point of any rule."""
        times = [last[0] for line in self.lines.values() if (last := line.series.last()) is not None]
        return max(times) if times else None

    def add_point(self, p: ScorePoint) -> None:
        self.line(p.rule).series.append(p.wall_time, p.score)
        self._dirty.add(p.rule)
        if p.description:
            self.description.setText(p.description)

    def set_description(self, text: str) -> None:
        self.description.setText(text)

    def show_event(self, ev: EventView) -> None:
        found = self.regions.get(ev.id)
        end = ev.end if ev.end is not None else max(ev.start, time.time())
        if found is None:
            region = pg.LinearRegionItem(values=(ev.start, end), movable=False, pen=pg.mkPen(None))
            region.setZValue(-10)
            self.plot.addItem(region)
            self.regions[ev.id] = (region, ev)
            while len(self.regions) > REGIONS_PER_CAMERA:
                old, _ = self.regions.popitem(last=False)[1]
                self.plot.removeItem(old)
        else:
            region = found[0]
            region.setRegion((ev.start, end))
            self.regions[ev.id] = (region, ev)
        rgb = SEVERITY_RGB.get(ev.severity, SEVERITY_RGB[2])
        region.setBrush(pg.mkBrush(*rgb, OPEN_EVENT_ALPHA if ev.end is None else EVENT_ALPHA))

    def refresh(self, now: float, span_s: float) -> None:
        """Redraw what changed: new points, open events stretched to now, and the scrolling x range, which
        moves with new data or once a second (each move repaints the whole plot)."""
        changed = bool(self._dirty)
        for rule in self._dirty:
            line = self.lines[rule]
            line.curve.setData(*line.series.arrays())
        self._dirty.clear()
        if not (changed or now - self._scrolled >= 1.0):
            return
        self._scrolled = now
        for region, ev in self.regions.values():
            if ev.end is None:
                region.setRegion((ev.start, max(ev.start, now)))
        if self.following:  # the newest data at the right edge (now, while it is live)
            newest = self.newest()
            end = now if newest is None or now - span_s / 2 < newest <= now else newest
            self.plot.setXRange(end - span_s, end, padding=0)

    def follow(self) -> None:
        self.following = True
        self._scrolled = 0.0

    def center_on(self, start: float, end: float, span_s: float) -> None:
        """Stop following and show an event in the middle of the plot."""
        self.following = False
        mid = (start + end) / 2
        half = max(span_s / 2, (end - start) * 0.75)
        self.plot.setXRange(mid - half, mid + half, padding=0)


class ConsoleWindow(QtWidgets.QMainWindow):
    """Cameras (left), their plots (middle), events and the selected event's details (right).

    A timer drains the :class:`ConsoleFeed` every ``refresh_ms`` and redraws each changed plot once, so
    message bursts never mean a redraw per message. What it creates is bounded: at most ``max_cameras``
    panels (items of further cameras are counted as rejected) and ``max_events`` events.
    """

    COLUMNS = ("Camera", "Status", "FPS", "Drops", "Last score")

    def __init__(
        self,
        feed: ConsoleFeed,
        *,
        threshold: float | None = None,
        span_s: float = 300.0,
        refresh_ms: int = 250,
        capacity: int = 4096,
        max_events: int = 1000,
        max_cameras: int = 64,
        title: str = "",
        clip_dir: Path | None = None,
    ) -> None:
        """``threshold``: the general rule's line until the monitor publishes its own; ``clip_dir``: where the
        monitor keeps event clips, when it is on this machine."""
        super().__init__()
        self.feed = feed
        self.clip_dir = clip_dir
        self.max_cameras = max_cameras
        self.threshold = threshold
        self.span_s = span_s
        self.capacity = capacity
        self.max_events = max_events
        self.setWindowTitle(title or "LLM video anomaly monitor")
        self.resize(1400, 860)
        self.panels: dict[str, CameraPanel] = {}
        self.events: dict[str, EventView] = {}
        self.items: dict[str, QtWidgets.QListWidgetItem] = {}
        self.tick_seconds: deque[float] = deque(maxlen=10_000)
        self.link = LinkState(False, "waiting for data")
        self._rows: dict[str, int] = {}
        self._status: dict[str, StatusView] = {}

        self.camera_table = QtWidgets.QTableWidget(0, len(self.COLUMNS))
        self.camera_table.setHorizontalHeaderLabels(self.COLUMNS)
        self.camera_table.verticalHeader().setVisible(False)
        self.camera_table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.camera_table.horizontalHeader().setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        self.camera_table.itemSelectionChanged.connect(self._camera_selected)
        self.camera_table.setMinimumWidth(320)
        left = QtWidgets.QDockWidget("Cameras", self)
        left.setObjectName("cameras")
        left.setWidget(self.camera_table)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.LeftDockWidgetArea, left)

        self.grid_host = QtWidgets.QWidget()
        self.grid = QtWidgets.QGridLayout(self.grid_host)
        self.scroll_area = QtWidgets.QScrollArea()
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setWidget(self.grid_host)
        self.setCentralWidget(self.scroll_area)

        self.event_list = QtWidgets.QListWidget()
        self.event_list.currentItemChanged.connect(self._event_selected)
        self.snapshot = QtWidgets.QLabel("no event selected")
        self.snapshot.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.snapshot.setMinimumSize(320, 180)
        self.explanation = QtWidgets.QLabel("")
        self.explanation.setWordWrap(True)
        self.details = QtWidgets.QPlainTextEdit()
        self.details.setReadOnly(True)
        self.clip_button = QtWidgets.QPushButton("Play clip")
        self.clip_button.setEnabled(False)
        self.clip_button.clicked.connect(self._play_clip)
        self._clip: Path | None = None
        right_host = QtWidgets.QWidget()
        right = QtWidgets.QVBoxLayout(right_host)
        right.addWidget(QtWidgets.QLabel("<b>Events</b> (newest first)"))
        right.addWidget(self.event_list, 2)
        right.addWidget(self.snapshot, 2)
        right.addWidget(self.explanation)
        right.addWidget(self.details, 1)
        right.addWidget(self.clip_button)
        dock = QtWidgets.QDockWidget("Events", self)
        dock.setObjectName("events")
        dock.setWidget(right_host)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.RightDockWidgetArea, dock)

        toolbar = self.addToolBar("View")
        toolbar.setObjectName("view")
        self.live_action = toolbar.addAction("Live")
        self.live_action.setToolTip("Follow the newest scores on every plot")
        self.live_action.triggered.connect(self.follow_live)
        self.link_label = QtWidgets.QLabel()
        self.counts_label = QtWidgets.QLabel()
        self.statusBar().addWidget(self.link_label, 1)
        self.statusBar().addPermanentWidget(self.counts_label)
        self._show_link()

        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(refresh_ms)
        self.timer.timeout.connect(self.pump)
        self.timer.start()

    # -- updates -----------------------------------------------------------------------------------

    def pump(self) -> None:
        """Apply everything that arrived since the last tick, then redraw what changed."""
        t0 = time.perf_counter()
        items = self.feed.drain()
        events = 0
        for n, item in enumerate(items):
            if isinstance(item, EventView):
                events += 1
                if events > EVENTS_PER_TICK:  # a burst is spread over a few ticks, never one long freeze
                    self.feed.requeue(items[n:])
                    break
            camera = getattr(item, "camera", None)
            if camera is not None and camera not in self.panels and len(self.panels) >= self.max_cameras:
                self.feed.reject(f"camera {camera[:64]!r}", f"more than {self.max_cameras} cameras: not shown")
                continue
            try:
                self._apply(item)
            except Exception as exc:  # one odd item must not cost the rest of the tick
                self.feed.reject(type(item).__name__, repr(exc))
        now = time.time()
        for panel in self.panels.values():
            panel.refresh(now, self.span_s)
        n = len(self.events)
        self.counts_label.setText(
            f"{n} event{'' if n == 1 else 's'} · {self.feed.malformed} malformed · {self.feed.dropped} dropped"
        )
        self.tick_seconds.append(time.perf_counter() - t0)

    def _apply(self, item: FeedItem) -> None:
        if isinstance(item, ScorePoint):
            if item.wall_time > time.time() + FUTURE_S:
                when = datetime.fromtimestamp(item.wall_time).isoformat(timespec="seconds")
                self.feed.reject(f"a score of camera {item.camera!r}", f"its time {when} is in the future")
                return
            self.panel(item.camera).add_point(item)
            if item.rule == GENERAL_RULE:
                self._set_cell(item.camera, 4, f"{item.score:.2f}")
        elif isinstance(item, RuleSetting):
            self.panel(item.camera).set_rule(item)
        elif isinstance(item, EventView):
            self._event(item)
        elif isinstance(item, StatusView):
            self._camera_status(item)
        elif isinstance(item, DescriptionView):
            self.panel(item.camera).set_description(item.text)
        elif isinstance(item, LinkState):
            self.link = item
            self._show_link()

    def panel(self, camera: str) -> CameraPanel:
        """The camera's panel, created (with its table row) the first time the camera is seen."""
        found = self.panels.get(camera)
        if found is not None:
            return found
        initial = None if self.threshold is None else {GENERAL_RULE: self.threshold}
        panel = CameraPanel(camera, capacity=self.capacity, thresholds=initial)
        self.panels[camera] = panel
        columns = 1 if len(self.panels) == 1 else 2 if len(self.panels) <= 4 else 3 if len(self.panels) <= 9 else 4
        for i, p in enumerate(self.panels.values()):  # re-flow the grid as cameras appear
            self.grid.addWidget(p, i // columns, i % columns)
        row = self.camera_table.rowCount()
        self.camera_table.insertRow(row)
        self._rows[camera] = row
        for col, text in enumerate((camera, "–", "", "", "")):
            self.camera_table.setItem(row, col, QtWidgets.QTableWidgetItem(text))
        return panel

    def _set_cell(self, camera: str, col: int, text: str) -> None:
        self.panel(camera)
        item = self.camera_table.item(self._rows[camera], col)
        if item is not None and item.text() != text:
            item.setText(text)

    def _camera_status(self, st: StatusView) -> None:
        self._status[st.camera] = st
        self._set_cell(st.camera, 1, "online" if st.connected else "offline")
        self._set_cell(st.camera, 2, figure(st.fps, ".1f"))
        self._set_cell(st.camera, 3, figure(st.dropped, "d"))
        item = self.camera_table.item(self._rows[st.camera], 1)
        if item is not None:
            item.setForeground(QtGui.QColor("darkgreen" if st.connected else "red"))

    def _event(self, ev: EventView) -> None:
        old = self.events.get(ev.id)
        if old is not None and ev.snapshot is None:
            ev = replace(ev, snapshot=old.snapshot)
        self.events[ev.id] = ev
        self.panel(ev.camera).show_event(ev)
        label = (
            f"{datetime.fromtimestamp(ev.start).strftime('%H:%M:%S')}  {ev.camera}  peak {ev.peak_score:.2f}"
            f"  {SEVERITY_LABELS.get(ev.severity, '')}{'  (open)' if ev.end is None else ''}"
        )
        item = self.items.get(ev.id)
        if item is None:
            item = QtWidgets.QListWidgetItem(label)
            item.setData(QtCore.Qt.ItemDataRole.UserRole, ev.id)
            self.event_list.insertItem(self._row_for(ev.start), item)
            self.items[ev.id] = item
            while self.event_list.count() > self.max_events:
                dropped = self.event_list.takeItem(self.event_list.count() - 1)
                gone = dropped.data(QtCore.Qt.ItemDataRole.UserRole)
                self.items.pop(gone, None)
                self.events.pop(gone, None)
        else:
            item.setText(label)
        item.setForeground(QtGui.QColor(SEVERITY_COLOURS.get(ev.severity, "black")))
        if self.event_list.currentItem() is item:
            self._show_details(ev)

    def _row_for(self, start: float) -> int:
        """Where an event starting at ``start`` goes in the list (newest first); usually row 0."""
        row = 0
        while row < self.event_list.count():
            other = self.events.get(self.event_list.item(row).data(QtCore.Qt.ItemDataRole.UserRole))
            if other is None or other.start <= start:
                break
            row += 1
        return row

    def _show_link(self) -> None:
        color = "darkgreen" if self.link.connected else "red"
        self.link_label.setText(f"<span style='color:{color}'>●</span> {self.link.detail}")

    # -- selection ---------------------------------------------------------------------------------

    def _event_selected(self, current: QtWidgets.QListWidgetItem | None, _previous: object = None) -> None:
        if current is None:
            return
        ev = self.events.get(current.data(QtCore.Qt.ItemDataRole.UserRole))
        if ev is None:
            return
        self._show_details(ev)
        panel = self.panels.get(ev.camera)
        if panel is not None:
            panel.center_on(ev.start, ev.end if ev.end is not None else time.time(), self.span_s)
            self.scroll_area.ensureWidgetVisible(panel)

    def _show_details(self, ev: EventView) -> None:
        pix = QtGui.QPixmap()
        if ev.snapshot and pix.loadFromData(ev.snapshot, "JPG"):
            self.snapshot.setPixmap(
                pix.scaled(
                    self.snapshot.width(),
                    self.snapshot.height(),
                    QtCore.Qt.AspectRatioMode.KeepAspectRatio,
                    QtCore.Qt.TransformationMode.SmoothTransformation,
                )
            )
        else:
            self.snapshot.setPixmap(QtGui.QPixmap())
            self.snapshot.setText("no snapshot")
        self.explanation.setText(
            f"<b>{ev.camera}</b>, peak {ev.peak_score:.2f}, "
            f"<span style='color:{SEVERITY_COLOURS.get(ev.severity, 'black')}'>{SEVERITY_LABELS.get(ev.severity, '')}"
            f"</span>: {ev.explanation or '<i>explanation pending…</i>'}"
        )
        self.details.setPlainText("\n".join(f"• {d}" for d in ev.descriptions))
        self._clip = self.clip_dir / ev.clip if ev.clip and self.clip_dir is not None else None
        available = self._clip is not None and self._clip.is_file()
        self.clip_button.setEnabled(available)
        self.clip_button.setText(
            "Play clip" if available else "clip on the monitor's machine" if ev.clip else "no clip (yet)"
        )
        self.clip_button.setToolTip(str(self._clip) if self._clip else "")

    def _play_clip(self) -> None:
        """Open the selected event's clip in the desktop's video player."""
        if self._clip is not None:
            QtGui.QDesktopServices.openUrl(QtCore.QUrl.fromLocalFile(str(self._clip)))

    def _camera_selected(self) -> None:
        row = self.camera_table.currentRow()
        item = self.camera_table.item(row, 0) if row >= 0 else None
        if item is not None and item.text() in self.panels:
            self.scroll_area.ensureWidgetVisible(self.panels[item.text()])

    def follow_live(self) -> None:
        for panel in self.panels.values():
            panel.follow()
        self.pump()
