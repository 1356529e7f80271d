"""The base of every settings model: frozen, unknown keys refused.

Each stage defines its settings next to its code (``SamplingSettings`` in :mod:`pipeline.sampling`,
``AlertSettings`` in :mod:`pipeline.alerts`, ...); the application's configuration is assembled from
them (``monitor.config``), so a rule is written once and a knob is added in one place.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


def state_dir() -> Path:
    """Where state goes when the configuration does not say: ``$LLMVAD_STATE_DIR``, else
    ``$XDG_STATE_HOME/llmvad``, else ``~/.local/state/llmvad`` (never the source tree)."""
    if os.environ.get("LLMVAD_STATE_DIR"):
        return Path(os.environ["LLMVAD_STATE_DIR"]).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base).expanduser() / "llmvad"


class Settings(BaseModel):
    """A frozen pydantic model that refuses unknown keys, and texts where a number or a switch goes
    (``max_batch = "8"``, ``enabled = "yes"``: what a configuration means should not be guessed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _scalars_as_such(cls, value: Any, info: ValidationInfo) -> Any:
        kinds = _scalar_kinds(cls.model_fields[info.field_name].annotation) if info.field_name else set()
        if value is None or str in kinds:
            return value
        if bool in kinds and not kinds & {int, float} and not isinstance(value, bool):
            raise ValueError("expected true or false")
        if isinstance(value, str) and kinds & {int, float}:
            raise ValueError("expected a number, not a text")
        return value


def _scalar_kinds(annotation: Any) -> set[type]:
    """The plain types among those a field takes (``int | None`` -> {int, NoneType})."""
    args = get_args(annotation)
    if get_origin(annotation) in (Union, UnionType) or (args and get_origin(annotation) is Annotated):
        return {t for a in args for t in _scalar_kinds(a)}
    return {annotation} if isinstance(annotation, type) else set()
