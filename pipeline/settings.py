"""The base of every settings model: frozen, unknown keys refused.

Each stage defines its settings next to its code (``SamplingSettings`` in :mod:`pipeline.sampling`,
``AlertSettings`` in :mod:`pipeline.alerts`, ...); the application's configuration is assembled from
them (``monitor.config``), so a rule is written once and a knob is added in one place.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict


def state_dir() -> Path:
    """Where state goes when the configuration does not say: ``$LLMVAD_STATE_DIR``, else
    ``$XDG_STATE_HOME/llmvad``, else ``~/.local/state/llmvad`` (never the source tree)."""
    if os.environ.get("LLMVAD_STATE_DIR"):
        return Path(os.environ["LLMVAD_STATE_DIR"]).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base).expanduser() / "llmvad"


class Settings(BaseModel):
    """A frozen pydantic model that refuses unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")
