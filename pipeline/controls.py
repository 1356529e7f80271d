"""What an operator can change on a running camera: pause it, move its threshold, ask for a description now."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

CommandKind = Literal["enabled", "threshold", "describe"]

COMMANDS: tuple[CommandKind, ...] = ("enabled", "threshold", "describe")


@dataclass(frozen=True, slots=True)
class Command:
    """One operator command for one camera (``value``: a bool for ``enabled``, a float for ``threshold``)."""

    camera: str
    kind: CommandKind
    value: bool | float | None = None


def parse_command(camera: str, kind: str, payload: bytes) -> Command:
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
        return Command(camera, "enabled", text.upper() == "ON")
    if kind == "threshold":
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"expected a number in (0, 1], got {text!r}") from None
        if not math.isfinite(value) or not 0 < value <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {text!r}")
        return Command(camera, "threshold", value)
    if kind == "describe":
        if text.upper() not in ("", "PRESS", "ON"):
            raise ValueError(f"expected PRESS, got {text!r}")
        return Command(camera, "describe")
    raise ValueError(f"unknown command {kind!r}")


@dataclass(slots=True)
class CameraControls:
    """The operator's settings in force on one camera; the camera's stage reads them on every frame."""

    enabled: bool = True
    threshold: float | None = None
    """The alert threshold set by an operator, or None for the configured one."""
    describe_now: bool = False
    """Describe and judge the next frame whatever the gates say (cleared once taken)."""

    def take_describe_now(self) -> bool:
        """Whether a description was asked for, clearing the request."""
        asked, self.describe_now = self.describe_now, False
        return asked
