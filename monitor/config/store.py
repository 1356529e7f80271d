"""``[store]``: the event history's settings and whether it is kept."""

from __future__ import annotations

from pydantic import Field

from sinks.store_sink import StoreSettings


class StoreConfig(StoreSettings):
    """The event history (SQLite, WAL)."""

    enabled: bool = Field(True, title="Keep descriptions, scores and events")
