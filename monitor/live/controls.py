"""The operators' settings of every camera, kept in a file so they survive a restart."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from pipeline.camera import CameraSettings
from pipeline.controls import CameraControls, Command
from pipeline.records import GENERAL_RULE, ControlState

log = logging.getLogger(__name__)


class ControlStore:
    """One :class:`~pipeline.controls.CameraControls` per camera (the owner of its settings in force, shared
    with its stage); what operators changed is written to ``path`` after every change.

    A file that cannot be read is reported once and ignored (the cameras start with their configuration);
    a saved value that no longer fits the configuration (a rule removed) is reported and dropped.
    """

    def __init__(
        self, path: Path, cameras: tuple[CameraSettings, ...], *, publish: Callable[[ControlState], None]
    ) -> None:
        self.path = path
        self.cameras = {c.name: CameraControls(c.name, c.rules, publish=publish) for c in cameras}
        for name, saved in self._load().items():
            controls = self.cameras.get(name)
            if controls is None or not isinstance(saved, dict):
                continue
            for problem in controls.restore(_upgrade(saved)):
                log.warning("camera %r: an operator's setting in %s no longer applies: %s", name, path, problem)
        off = [n for n, c in self.cameras.items() if not c.enabled]
        if off:
            log.info("cameras switched off by an operator (%s): %s", path, ", ".join(off))

    def _load(self) -> dict[str, object]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, RecursionError) as exc:
            log.warning("operator settings %s cannot be read (%s); using the configuration", self.path, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def _save(self) -> None:
        data = {name: changes for name, c in self.cameras.items() if (changes := c.changes())}
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
            tmp.replace(self.path)
        except OSError as exc:
            log.error("operator settings not saved to %s: %s (they hold until the monitor stops)", self.path, exc)

    def publish_all(self) -> None:
        """Publish every camera's settings in force (at start)."""
        for c in self.cameras.values():
            if c.publish is not None:
                c.publish(c.state())

    def apply(self, command: Command) -> str | None:
        """Carry out a command; the reason it is refused, if it is (a camera this monitor does not run is
        refused too)."""
        c = self.cameras.get(command.camera)
        if c is None:
            return f"no camera {command.camera!r} here"
        try:
            c.apply(command)
        except ValueError as exc:
            return str(exc)
        if command.kind != "describe":
            self._save()
        return None


def _upgrade(saved: Mapping[str, object]) -> dict[str, object]:
    """A camera's saved settings in today's form (files of earlier versions kept one ``threshold``: the
    general rule's)."""
    out = dict(saved)
    threshold = out.pop("threshold", None)
    if threshold is not None and "rules" not in out:
        out["rules"] = {GENERAL_RULE: {"threshold": threshold}}
    return out
