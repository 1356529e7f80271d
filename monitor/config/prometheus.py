"""``[prometheus]``: the metrics endpoint."""

from __future__ import annotations

from pydantic import Field

from pipeline.settings import Settings


class PrometheusConfig(Settings):
    """The Prometheus endpoint."""

    port: int | None = Field(None, ge=1, le=65535, title="Serve /metrics on this port; unset: off")
    address: str = Field("127.0.0.1", min_length=1, title="Address to listen on (0.0.0.0 for all)")
