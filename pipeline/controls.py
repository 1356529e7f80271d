"""What an operator can change on a running camera, and the one owner of a camera's settings in force.

A camera can be switched off, and asked for a description now; each of its rules can be paused and given
another threshold. :class:`CameraControls` holds what is configured and what operators changed, validates
every change as the configuration would, pushes changed rules to whoever watches them (the camera's alert
machines) and publishes the settings in force.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pipeline.records import ControlState, RuleControl
from pipeline.rules import Rule

log = logging.getLogger(__name__)

CommandKind = Literal["enabled", "threshold", "describe"]

CAMERA_COMMANDS: tuple[CommandKind, ...] = ("enabled", "threshold", "describe")
"""Commands on a camera's own topics (its ``threshold`` is the general rule's)."""
RULE_COMMANDS: tuple[CommandKind, ...] = ("enabled", "threshold")
"""Commands on a rule's topics."""


@dataclass(frozen=True, slots=True)
class Command:
    """One operator command (``value``: a bool for ``enabled``, a float for ``threshold``). ``rule`` names
    the rule it changes; None for the camera itself (switch it, describe now)."""

    camera: str
    kind: CommandKind
    value: bool | float | None = None
    rule: str | None = None


def parse_command(camera: str, kind: str, payload: bytes, rule: str | None = None) -> Command:
    """The command a payload carries; ValueError saying what is wrong with it.

    ``enabled``: ``ON`` or ``OFF``; ``threshold``: a number in (0, 1]; ``describe``: ``PRESS`` (what a Home
    Assistant button sends), ``ON`` or nothing.
    """
    if len(payload) > 64:
        raise ValueError(f"payload of {len(payload)} bytes is too long")
    try:
        text = payload.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ValueError("payload is not ASCII text") from None
    if kind == "enabled":
        if text.upper() not in ("ON", "OFF"):
            raise ValueError(f"expected ON or OFF, got {text!r}")
        return Command(camera, "enabled", text.upper() == "ON", rule)
    if kind == "threshold":
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"expected a number in (0, 1], got {text!r}") from None
        if not math.isfinite(value) or not 0 < value <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {text!r}")
        return Command(camera, "threshold", value, rule)
    if kind == "describe" and rule is None:
        if text.upper() not in ("", "PRESS", "ON"):
            raise ValueError(f"expected PRESS, got {text!r}")
        return Command(camera, "describe")
    raise ValueError(f"unknown command {kind!r}")


class CameraControls:
    """The settings in force on one camera: its configured rules and what operators changed.

    The camera's stage reads ``enabled`` on every frame and :meth:`active` on every window, and watches
    the rules (:meth:`watch`) so a change applies from the next window. Every change goes through
    :meth:`apply`, which validates it as the configuration would (ValueError with the reason) and then
    publishes the state in force (``publish``, e.g. the monitor's sink hub: retained MQTT topics).
    """

    def __init__(
        self, camera: str, rules: Sequence[Rule], *, publish: Callable[[ControlState], None] | None = None
    ) -> None:
        if not rules:
            raise ValueError(f"camera {camera!r} has no rules")
        self.camera = camera
        self.configured = {r.name: r for r in rules}
        self.rules = dict(self.configured)
        """Each rule as in force (an operator's threshold applied), in the configured order."""
        self.paused: set[str] = set()
        self.enabled = True
        self.describe_now = False
        """Describe and judge the next frame whatever the gates say (cleared once taken)."""
        self.publish = publish
        self._watchers: list[Callable[[Rule], None]] = []

    def watch(self, on_change: Callable[[Rule], None]) -> None:
        """Call ``on_change`` with a rule whenever its settings in force change."""
        self._watchers.append(on_change)

    def active(self) -> list[Rule]:
        """The rules to ask about the next window (those not paused), the general rule first."""
        return [r for name, r in self.rules.items() if name not in self.paused]

    def take_describe_now(self) -> bool:
        """Whether a description was asked for, clearing the request."""
        asked, self.describe_now = self.describe_now, False
        return asked

    def state(self) -> ControlState:
        """The settings in force."""
        rules = tuple(RuleControl(n, n not in self.paused, r.threshold) for n, r in self.rules.items())
        return ControlState(camera=self.camera, enabled=self.enabled, rules=rules, wall_time=time.time())

    def apply(self, command: Command, *, quiet: bool = False) -> ControlState:
        """Carry out a command for this camera and publish the state in force (ValueError: refused, with
        the reason; nothing changed)."""
        if command.camera != self.camera:
            raise ValueError(f"not camera {self.camera!r}")
        if command.kind == "describe":
            self.describe_now = True
            what = "a description was asked for"
        elif command.rule is None:
            if command.kind != "enabled":
                raise ValueError(f"{command.kind} is a rule's setting")
            self.enabled = bool(command.value)
            what = f"switched {'on' if self.enabled else 'off'}"
        else:
            rule = self.rules.get(command.rule)
            if rule is None:
                known = ", ".join(self.rules)
                raise ValueError(f"camera {self.camera!r} has no rule {command.rule!r} (it has {known})")
            if command.kind == "enabled":
                (self.paused.discard if command.value else self.paused.add)(rule.name)
                what = f"rule {rule.name!r} {'resumed' if command.value else 'paused'}"
            else:
                changed = rule.changed(threshold=command.value)
                self.rules[rule.name] = changed
                for on_change in self._watchers:
                    on_change(changed)
                what = f"rule {rule.name!r}: threshold set to {changed.threshold:g}"
        if not quiet:
            log.info("camera %r: %s by an operator", self.camera, what)
        state = self.state()
        if self.publish is not None:
            self.publish(state)
        return state

    def changes(self) -> dict[str, object]:
        """What operators changed against the configuration (what is kept across restarts)."""
        out: dict[str, object] = {}
        if not self.enabled:
            out["enabled"] = False
        rules: dict[str, dict[str, object]] = {}
        for name, rule in self.rules.items():
            changed: dict[str, object] = {}
            if name in self.paused:
                changed["enabled"] = False
            if rule.threshold != self.configured[name].threshold:
                changed["threshold"] = rule.threshold
            if changed:
                rules[name] = changed
        if rules:
            out["rules"] = rules
        return out

    def restore(self, saved: Mapping[str, object]) -> list[str]:
        """Apply what operators changed in an earlier run (:meth:`changes`), without publishing; the reasons
        for whatever part of it could not be applied (a rule since removed, a value out of range)."""
        publish, self.publish = self.publish, None
        problems: list[str] = []
        commands: list[Command] = []
        enabled = saved.get("enabled")
        if isinstance(enabled, bool):
            commands.append(Command(self.camera, "enabled", enabled))
        rules = saved.get("rules")
        for name, values in rules.items() if isinstance(rules, dict) else ():
            if not isinstance(values, dict):
                continue
            if isinstance(values.get("enabled"), bool):
                commands.append(Command(self.camera, "enabled", values["enabled"], str(name)))
            t = values.get("threshold")
            if isinstance(t, float | int) and not isinstance(t, bool):
                commands.append(Command(self.camera, "threshold", float(t), str(name)))
        try:
            for command in commands:
                try:
                    self.apply(command, quiet=True)
                except ValueError as exc:
                    problems.append(str(exc).splitlines()[0])
        finally:
            self.publish = publish
        return problems
