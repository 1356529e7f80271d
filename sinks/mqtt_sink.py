"""The MQTT sink: records into messages; alerts through the connection's durable outbox, state directly."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from pipeline.records import Answer, CameraStatus, ControlState, Description, EventChange, Record, WindowScore
from sinks.mqtt_connection import MqttConnection
from sinks.mqtt_settings import MqttSettings
from sinks.mqtt_topics import OFF, ONLINE, Topics
from sinks.outbox import OutMessage

log = logging.getLogger(__name__)

VERSION = "0.1.0"


class MqttSink:
    """Turns records into MQTT messages on ``connection``, which it opens and closes.

    * Event changes, snapshots and rule states are alerts: written to the outbox the moment they are
      emitted (:meth:`persist`), published with QoS 1 in order. The settings in force (retained) and
      answers to requests go through the outbox too.
    * Scores, descriptions and camera status are state: QoS 0, dropped (and counted) while disconnected.
    * Home Assistant discovery (when ``discovery``) goes out on every connect and whenever Home Assistant
      announces itself on its status topic; with ``commands`` it includes the switches, numbers and button
      operators use.
    """

    name = "mqtt"

    def __init__(
        self,
        connection: MqttConnection,
        topics: Topics,
        rules: Mapping[str, Sequence[str]],
        *,
        discovery: bool = True,
        commands: bool = True,
        snapshot_max_bytes: int = 4_000_000,
    ) -> None:
        """``rules``: each camera's rules, the general one first (their topics and entities)."""
        self.connection = connection
        self.topics = topics
        self.rules = {camera: tuple(names) for camera, names in rules.items()}
        self.discovery = discovery
        self.commands = commands
        self.snapshot_max_bytes = snapshot_max_bytes
        if discovery:
            connection.greeting = self._discovery
            connection.listen(self)

    @classmethod
    def from_settings(
        cls, cfg: MqttSettings, rules: Mapping[str, Sequence[str]], *, instance: str = "", flush_timeout_s: float = 1.5
    ) -> MqttSink:
        """The sink of an instance's cameras (their rules, the general one first) over a new connection."""
        topics = Topics(cfg.topic_prefix, cfg.discovery_prefix, instance)
        client_id = cfg.client_id or f"llmvad-{instance or 'monitor'}"
        connection = MqttConnection(
            cfg, client_id=client_id, available=topics.available, flush_timeout_s=flush_timeout_s
        )
        return cls(
            connection,
            topics,
            rules,
            discovery=cfg.discovery,
            commands=cfg.commands,
            snapshot_max_bytes=cfg.snapshot_max_bytes,
        )

    # -- Home Assistant's status, as a listener of the connection ------------------------------------

    @property
    def subscriptions(self) -> list[str]:
        return [self.topics.ha_status]

    async def on_message(self, topic: str, payload: bytes) -> None:
        if payload == ONLINE:
            log.info("MQTT: Home Assistant is online; sending discovery again")
            await self.connection.send(self._discovery())

    def _discovery(self) -> list[OutMessage]:
        return [
            msg
            for camera, rules in self.rules.items()
            for msg in self.topics.discovery(camera, VERSION, rules, commands=self.commands)
        ]

    # -- Sink ----------------------------------------------------------------------------------------

    async def open(self) -> None:
        await self.connection.open()
        # Known state at start: no rule of any camera has an open event.
        await self.connection.enqueue(
            [
                OutMessage(topic, OFF, 1, True)
                for camera, rules in self.rules.items()
                for rule in rules
                for topic in self.topics.rule_topics(camera, rule, "state")
            ]
        )

    def persist(self, record: EventChange) -> None:
        """Write the alert's messages to the outbox now, on the caller's thread (a few milliseconds)."""
        self.connection.persist(self.topics.alert_messages(record, self.snapshot_max_bytes))

    async def handle(self, record: Record) -> None:
        """Send a record's messages (an event change only comes here without a hub: the hub persists them)."""
        if isinstance(record, EventChange):
            await self.connection.enqueue(self.topics.alert_messages(record, self.snapshot_max_bytes))
        elif isinstance(record, WindowScore):
            for msg in self.topics.score_messages(record):
                await self.connection.publish_state(msg)
        elif isinstance(record, ControlState):
            await self.connection.enqueue(self.topics.control_messages(record))
        elif isinstance(record, Answer):
            await self.connection.enqueue([self.topics.answer_message(record)])
        elif isinstance(record, Description):
            if not record.reused:
                await self.connection.publish_state(self.topics.description_message(record))
        elif isinstance(record, CameraStatus):
            await self.connection.publish_state(self.topics.status_message(record))

    async def close(self) -> None:
        await self.connection.close(forget=self.connection.cfg.forget_on_stop)
