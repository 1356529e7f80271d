"""The base of every settings model: frozen, unknown keys refused.

Each stage defines its settings next to its code (``SamplingSettings`` in :mod:`pipeline.sampling`,
``AlertSettings`` in :mod:`pipeline.alerts`, ...); the application's configuration is assembled from
them (``monitor.config``), so a rule is written once and a knob is added in one place.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Settings(BaseModel):
    """A frozen pydantic model that refuses unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")
