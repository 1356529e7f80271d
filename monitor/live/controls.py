"""The operators' settings per camera (enabled, threshold), applied to the running stages and kept in a file."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

from pipeline.controls import CameraControls, Command
from pipeline.records import ControlState

log = logging.getLogger(__name__)


class ControlStore:
    """One :class:`CameraControls` per camera, shared with the camera stages; ``enabled`` and ``threshold``
    are written to ``path`` after every change so they survive a restart.

    A file that cannot be read is reported once and ignored (the cameras start with their configuration).
    """

    def __init__(self, path: Path, cameras: Sequence[str], thresholds: dict[str, float]) -> None:
        self.path = path
        self.configured = dict(thresholds)
        self.cameras = {name: CameraControls() for name in cameras}
        for name, saved in self._load().items():
            controls = self.cameras.get(name)
            if controls is None or not isinstance(saved, dict):
                continue
            if isinstance(saved.get("enabled"), bool):
                controls.enabled = saved["enabled"]
            t = saved.get("threshold")
            if isinstance(t, float | int) and not isinstance(t, bool) and math.isfinite(t) and 0 < t <= 1:
                controls.threshold = float(t)
        off = [n for n, c in self.cameras.items() if not c.enabled]
        if off:
            log.info("cameras switched off by an operator (%s): %s", path, ", ".join(off))

    def _load(self) -> dict[str, object]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("operator settings %s cannot be read (%s); using the configuration", self.path, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def _save(self) -> None:
        data = {
            name: {"enabled": c.enabled, "threshold": c.threshold}
            for name, c in self.cameras.items()
            if not c.enabled or c.threshold is not None
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
            tmp.replace(self.path)
        except OSError as exc:
            log.error("operator settings not saved to %s: %s (they hold until the monitor stops)", self.path, exc)

    def state(self, camera: str) -> ControlState:
        """The settings in force on ``camera``."""
        c = self.cameras[camera]
        threshold = c.threshold if c.threshold is not None else self.configured[camera]
        return ControlState(camera=camera, enabled=c.enabled, threshold=threshold, wall_time=time.time())

    def apply(self, command: Command) -> ControlState | None:
        """Carry out a command; the new state to publish, or None for a camera this monitor does not run."""
        c = self.cameras.get(command.camera)
        if c is None:
            return None
        if command.kind == "describe":
            c.describe_now = True
            log.info("camera %r: a description was asked for", command.camera)
            return self.state(command.camera)
        if command.kind == "enabled":
            c.enabled = bool(command.value)
            log.info("camera %r switched %s by an operator", command.camera, "on" if c.enabled else "off")
        else:
            assert isinstance(command.value, float)
            c.threshold = None if command.value == self.configured[command.camera] else command.value
            log.info("camera %r: threshold set to %g by an operator", command.camera, command.value)
        self._save()
        return self.state(command.camera)
