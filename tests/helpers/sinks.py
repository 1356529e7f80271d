"""A sink that keeps everything it receives, for assertions."""

from __future__ import annotations

from pipeline.records import CameraStatus, Description, EventChange, Record, WindowScore


class CollectingSink:
    name = "collect"

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.opened = self.closed = False

    async def open(self) -> None:
        self.opened = True

    async def handle(self, record: Record) -> None:
        self.records.append(record)

    async def close(self) -> None:
        self.closed = True

    def of(self, kind: type) -> list:
        return [r for r in self.records if isinstance(r, kind)]

    @property
    def descriptions(self) -> list[Description]:
        return self.of(Description)

    @property
    def scores(self) -> list[WindowScore]:
        return self.of(WindowScore)

    @property
    def events(self) -> list[EventChange]:
        return self.of(EventChange)

    @property
    def statuses(self) -> list[CameraStatus]:
        return self.of(CameraStatus)
