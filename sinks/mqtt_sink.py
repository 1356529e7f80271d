"""The MQTT sink: alerts through a durable outbox (QoS 1, in order), state and scores directly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import aiomqtt
from paho.mqtt.reasoncodes import ReasonCode

from pipeline.backoff import backoff_delay
from pipeline.controls import Command, parse_command
from pipeline.records import CameraStatus, ControlState, Description, EventChange, Record, WindowScore
from pipeline.rules import DEFAULT_RULE
from sinks.mqtt_settings import MqttSettings
from sinks.mqtt_topics import OFF, OFFLINE, ONLINE, Topics
from sinks.outbox import Outbox, OutMessage

log = logging.getLogger(__name__)
T = TypeVar("T")

DELIVERY_WINDOW = 64
"""Messages published before waiting for their acknowledgements (order is kept by the broker)."""
VERSION = "0.1.0"


def _is_auth_failure(exc: BaseException) -> bool:
    rc = getattr(exc, "rc", None)
    if isinstance(rc, ReasonCode):
        return rc.value in (0x86, 0x87, 4, 5) or "authori" in str(rc).lower() or "password" in str(rc).lower()
    return rc in (4, 5)


class MqttSink:
    """Publishes to an MQTT broker with aiomqtt, as an async resource that owns its connection task.

    The connection task never ends by itself: a lost broker, a refused login and an unexpected error
    (say, of the outbox database) are each logged and followed by a reconnect with backoff.

    * Event changes, snapshots and the anomaly state are alerts: written to the :class:`Outbox` first,
      published with QoS 1 in order, removed once the broker acknowledges them. Nothing is lost while
      the broker is away or when the process is killed; they go out after the reconnect or restart.
    * Scores and camera status are state: QoS 0, dropped (and counted) while disconnected.
    * Availability is retained ``online``, with ``offline`` as last will and on clean shutdown; Home
      Assistant discovery is sent on connect and whenever Home Assistant announces itself.
    * With ``on_command`` set, operators' commands on ``<prefix>/<camera>/<setting>/set`` for this
      monitor's cameras are parsed and handed to it; a malformed one is ignored, counted and logged
      (once per topic). The settings in force go out retained (through the outbox).
    * With ``on_summarize`` set, a request on ``<prefix>/summarize/set`` is handed to it; it returns the
      reason a request is refused (counted and logged like a bad command), and answers later with
      :meth:`send_summary` on ``<prefix>/summary`` (QoS 1, through the outbox, not retained).
    """

    name = "mqtt"

    def __init__(
        self,
        cfg: MqttSettings,
        cameras: Sequence[str],
        *,
        instance: str = "",
        flush_timeout_s: float = 1.5,
        rules: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """``rules``: each camera's rules besides the anomaly one (their topics and entities)."""
        self.cfg = cfg
        self.cameras = tuple(cameras)
        self.rules = {c: tuple((rules or {}).get(c, ())) for c in self.cameras}
        self.instance = instance
        self.client_id = cfg.client_id or f"llmvad-{instance or 'monitor'}"
        self.topics = Topics(cfg.topic_prefix, cfg.discovery_prefix, instance)
        self.flush_timeout_s = flush_timeout_s
        self.delivered = 0
        self.dropped = 0
        self.pending = 0
        self.outages = 0
        self.failures = 0
        """Unexpected errors in the delivery loop (each logged, the loop restarted)."""
        self.on_command: Callable[[Command], object] | None = None
        self.on_summarize: Callable[[bytes], str | None] | None = None
        self.commands_applied = 0
        self.commands_rejected = 0
        self._rejected_topics: set[str] = set()
        self.connected = asyncio.Event()
        self._client: aiomqtt.Client | None = None
        self._outbox: Outbox | None = None
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mqtt-outbox")
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._rng = random.Random()
        self._persisted: set[int] = set()

    @property
    def where(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"

    async def _in_db(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    # -- Sink --------------------------------------------------------------------------------------

    async def open(self) -> None:
        self._outbox = await self._in_db(Outbox, self.cfg.outbox)
        left = await self._in_db(len, self._outbox)
        if left:
            log.info("MQTT outbox %s holds %d undelivered messages from an earlier run", self.cfg.outbox, left)
        # Known state at start: no camera has an open event.
        await self._enqueue(
            [
                OutMessage(self.topics.anomaly(c, rule), OFF, 1, True)
                for c in self.cameras
                for rule in (DEFAULT_RULE, *self.rules[c])
            ]
        )
        self._task = asyncio.create_task(self._connection(), name="mqtt-connection")

    def persist(self, record: EventChange) -> None:
        """Write the alert's messages to the outbox now, on the caller's thread (a few milliseconds)."""
        assert self._outbox is not None, "sink not opened"
        messages = self.topics.alert_messages(record, self.cfg.snapshot_max_bytes)
        self._outbox.add(messages)
        self._persisted.add(id(record))
        self.pending += len(messages)
        self._drained.clear()
        self._wake.set()

    async def handle(self, record: Record) -> None:
        if isinstance(record, EventChange):
            if id(record) in self._persisted:
                self._persisted.discard(id(record))  # in the outbox since persist()
            else:
                await self._enqueue(self.topics.alert_messages(record, self.cfg.snapshot_max_bytes))
        elif isinstance(record, WindowScore):
            await self._publish_state(self.topics.score_message(record))
        elif isinstance(record, ControlState):
            await self._enqueue(self.topics.control_messages(record))
        elif isinstance(record, Description):
            if not record.reused:
                await self._publish_state(self.topics.description_message(record))
        elif isinstance(record, CameraStatus):
            await self._publish_state(self.topics.status_message(record))

    async def close(self) -> None:
        """Deliver what can be delivered within ``flush_timeout_s``, say offline, disconnect (once)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.connected.is_set() and self.pending:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._drained.wait(), self.flush_timeout_s)
            client = self._client
            if client is not None and self.connected.is_set():
                with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                    await client.publish(self.topics.available, OFFLINE, qos=1, retain=True, timeout=1.0)
        finally:
            if self._task is not None:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
            if self._outbox is not None:
                outbox, self._outbox = self._outbox, None
                await self._in_db(outbox.close)
            self._db.shutdown(wait=False)
            if self.pending:
                log.warning("MQTT: %d alert messages stay in %s for the next start", self.pending, self.cfg.outbox)

    # -- internals ---------------------------------------------------------------------------------

    async def _enqueue(self, messages: list[OutMessage]) -> None:
        assert self._outbox is not None, "sink not opened"
        await self._in_db(self._outbox.add, messages)
        self.pending += len(messages)
        self._drained.clear()
        self._wake.set()

    async def _publish_state(self, msg: OutMessage) -> None:
        client = self._client
        if client is None or not self.connected.is_set():
            self.dropped += 1
            return
        try:
            await client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain, timeout=5.0)
        except aiomqtt.MqttError:
            self.dropped += 1

    def _client_for(self) -> aiomqtt.Client:
        c = self.cfg
        tls_params = None
        if c.tls is not None:
            tls_params = aiomqtt.TLSParameters(
                ca_certs=str(c.tls.ca_file) if c.tls.ca_file else None,
                certfile=str(c.tls.cert_file) if c.tls.cert_file else None,
                keyfile=str(c.tls.key_file) if c.tls.key_file else None,
                cert_reqs=ssl.CERT_NONE if c.tls.insecure else ssl.CERT_REQUIRED,
            )
        client = aiomqtt.Client(
            c.host,
            c.port,
            identifier=self.client_id,
            username=c.username,
            password=c.password,
            will=aiomqtt.Will(self.topics.available, OFFLINE, qos=1, retain=True),
            tls_params=tls_params,
            tls_insecure=c.tls.insecure if c.tls is not None else None,
            keepalive=c.keepalive_s,
            timeout=10.0,
        )
        client.pending_calls_threshold = 4 * DELIVERY_WINDOW  # we keep a window of publishes in flight
        return client

    async def _connection(self) -> None:
        """Connect, deliver and listen; on any failure log once per outage and reconnect with backoff."""
        attempt = 0
        outage = False
        while True:
            try:
                async with self._client_for() as client:
                    self._client = client
                    await client.publish(self.topics.available, ONLINE, qos=1, retain=True)
                    if self.cfg.discovery:
                        await client.subscribe(self.topics.ha_status, qos=1)
                        await self._send_discovery(client)
                    if self.on_summarize is not None:
                        await client.subscribe(self.topics.summarize, qos=1)
                    if self.on_command is not None:
                        for cam in self.cameras:
                            for topic in self.topics.commands(cam):
                                await client.subscribe(topic, qos=1)
                    self.connected.set()
                    if outage:
                        log.info("MQTT: reconnected to %s; delivering %d queued messages", self.where, self.pending)
                    attempt, outage = 0, False
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._deliver(client), name="mqtt-deliver")
                        tg.create_task(self._listen(client), name="mqtt-listen")
            except* aiomqtt.MqttError as group:
                exc = group.exceptions[0]
                if not outage:
                    self.outages += 1
                    if _is_auth_failure(exc):
                        log.error(
                            "MQTT broker %s refused the login as %r: %s. Check [mqtt] username and password; "
                            "alerts are kept in the outbox until it accepts",
                            self.where,
                            self.cfg.username,
                            exc,
                        )
                    else:
                        log.warning(
                            "MQTT broker %s unavailable (%s); alerts are kept in the outbox and sent on reconnect",
                            self.where,
                            exc,
                        )
                outage = True
            except* (OSError, ssl.SSLError) as group:
                if not outage:
                    self.outages += 1
                    log.warning(
                        "MQTT broker %s unavailable (%s); alerts are kept in the outbox",
                        self.where,
                        group.exceptions[0],
                    )
                outage = True
            except* Exception as other:  # a bug or a broken outbox: say so at once, then start over
                self.failures += 1
                error = other.exceptions[0]
                log.error("MQTT delivery to %s failed: %r; restarting it", self.where, error, exc_info=error)
                outage = True
            finally:
                self._client = None
                self.connected.clear()
            await asyncio.sleep(
                backoff_delay(attempt, self.cfg.reconnect_initial_s, self.cfg.reconnect_max_s, self._rng)
            )
            attempt += 1

    async def _send_discovery(self, client: aiomqtt.Client) -> None:
        for cam in self.cameras:
            for msg in self.topics.discovery(cam, VERSION, commands=self.on_command is not None, rules=self.rules[cam]):
                await client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)

    async def _listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if message.topic.matches(self.topics.ha_status):
                if message.payload in (ONLINE, ONLINE.decode()):
                    log.info("MQTT: Home Assistant is online; sending discovery again")
                    await self._send_discovery(client)
                continue
            if message.topic.matches(self.topics.summarize):
                self._summarize(message.payload)
                continue
            self._command(message.topic.value, message.payload)

    def _rejected(self, topic: str, why: str) -> None:
        self.commands_rejected += 1
        if topic not in self._rejected_topics:
            self._rejected_topics.add(topic)
            log.warning("MQTT: ignored a command on %s: %s (further ones there are only counted)", topic, why)

    def _summarize(self, payload: object) -> None:
        if self.on_summarize is None:
            return
        why = self.on_summarize(bytes(payload)) if isinstance(payload, bytes | bytearray) else "payload is not bytes"
        if why is None:
            self.commands_applied += 1
        else:
            self._rejected(self.topics.summarize, why)

    async def send_summary(self, answer: dict[str, object]) -> None:
        """Publish an answer to a summarize request on ``<prefix>/summary``."""
        await self._enqueue([self.topics.summary_message(answer)])

    def _command(self, topic: str, payload: object) -> None:
        """Parse a command and hand it over; a bad one is counted and logged once per topic."""
        where = self.topics.parse_command_topic(topic)
        if where is None or self.on_command is None or where[0] not in self.cameras:
            return
        try:
            if not isinstance(payload, bytes | bytearray):
                raise ValueError("payload is not bytes")
            command = parse_command(where[0], where[1], bytes(payload))
        except ValueError as exc:
            self._rejected(topic, str(exc))
            return
        self.commands_applied += 1
        self.on_command(command)

    async def _deliver(self, client: aiomqtt.Client) -> None:
        assert self._outbox is not None
        outbox = self._outbox
        while True:
            self._wake.clear()
            rows = await self._in_db(outbox.peek, DELIVERY_WINDOW)
            if not rows:
                if not self._wake.is_set():  # nothing was added while we looked
                    self.pending = 0
                    self._drained.set()
                await self._wake.wait()
                continue
            results = await asyncio.gather(
                *(client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain, timeout=10.0) for _, m in rows),
                return_exceptions=True,
            )
            # Only the run of acknowledged messages before the first failure leaves the outbox: what
            # follows a failed publish goes again after it, so the broker never sees them out of order.
            ok = next((k for k, r in enumerate(results) if r is not None), len(results))
            done = [i for i, _ in rows[:ok]]
            await self._in_db(outbox.remove, done)
            self.delivered += len(done)
            self.pending = await self._in_db(len, outbox)
            failures = [r for r in results if isinstance(r, BaseException)]
            if failures:
                raise failures[0]
