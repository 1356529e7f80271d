"""What operators and automations ask of the monitor over MQTT: commands and requests, parsed and handed
to a handler (the live monitor)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pipeline.controls import Command, parse_command
from pipeline.stats import counter
from sinks.mqtt_topics import Topics

log = logging.getLogger(__name__)


class CommandHandler(Protocol):
    """Carries out what comes in; each method returns the reason it refused, or None."""

    def command(self, command: Command) -> str | None:
        """An operator's command for one camera or one of its rules."""
        ...

    def summarize(self, payload: bytes) -> str | None:
        """A request for a summary of a period (its answer goes out later, as a record)."""
        ...


@dataclass(slots=True)
class CommandStats:
    """Figures of the command listener."""

    applied: int = counter("Operator commands and requests carried out", metric="commands_applied")
    rejected: int = counter("Malformed or refused operator commands and requests", metric="commands_rejected")


class CommandListener:
    """Listens on the command topics of ``cameras`` (``<prefix>/<camera>/{enabled,threshold,describe}/set``,
    ``<prefix>/<camera>/rules/<rule>/{enabled,threshold}/set``) and on ``<prefix>/summarize/set``, and hands
    what it parses to ``handler``. A bad or refused one is counted and logged once per topic."""

    def __init__(self, topics: Topics, cameras: Sequence[str], handler: CommandHandler) -> None:
        self.topics = topics
        self.cameras = frozenset(cameras)
        self.handler = handler
        self.stats = CommandStats()
        self._warned: set[str] = set()

    @property
    def subscriptions(self) -> list[str]:
        return [self.topics.summarize, *(t for c in sorted(self.cameras) for t in self.topics.command_subscriptions(c))]

    async def on_message(self, topic: str, payload: bytes) -> None:
        if topic == self.topics.summarize:
            self._outcome(topic, self.handler.summarize(payload))
            return
        where = self.topics.parse_command_topic(topic)
        if where is None or where[0] not in self.cameras:
            return
        camera, kind, rule = where
        try:
            command = parse_command(camera, kind, payload, rule)
        except ValueError as exc:
            self._outcome(topic, str(exc))
            return
        self._outcome(topic, self.handler.command(command))

    def _outcome(self, topic: str, refused: str | None) -> None:
        if refused is None:
            self.stats.applied += 1
            return
        self.stats.rejected += 1
        if topic not in self._warned:
            self._warned.add(topic)
            log.warning("MQTT: ignored a command on %s: %s (further ones there are only counted)", topic, refused)
