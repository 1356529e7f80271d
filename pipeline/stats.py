"""Counters and gauges, declared once where a component keeps them and read by iterating them.

A component keeps its figures in one dataclass whose exported fields are declared with :func:`counter`
or :func:`gauge`; the Prometheus collector and the status records iterate :func:`figures` of it, so a new
counter is exported by declaring it, without touching either.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Literal

Kind = Literal["counter", "gauge"]


def counter(doc: str, *, metric: str | None = None) -> Any:
    """A dataclass field counting up from 0 (``metric``: its exported name, if not the field's)."""
    return field(default=0, metadata={"kind": "counter", "doc": doc, "metric": metric})


def gauge(doc: str, *, metric: str | None = None, default: float = 0) -> Any:
    """A dataclass field holding a current value."""
    return field(default=default, metadata={"kind": "gauge", "doc": doc, "metric": metric})


@dataclass(frozen=True, slots=True)
class Figure:
    """One exported value of a component."""

    name: str
    kind: Kind
    doc: str
    value: float


def figures(stats: object) -> Iterator[Figure]:
    """The counters and gauges of a stats dataclass, in declaration order (booleans as 0 or 1)."""
    if not is_dataclass(stats):
        raise TypeError(f"{type(stats).__name__} is not a stats dataclass")
    for f in fields(stats):
        kind = f.metadata.get("kind")
        if kind is not None:
            yield Figure(f.metadata["metric"] or f.name, kind, f.metadata["doc"], float(getattr(stats, f.name)))
