"""The monitor's connection to its MQTT broker: login, reconnects, the durable outbox and its delivery."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, TypeVar

import aiomqtt
from paho.mqtt.reasoncodes import ReasonCode

from pipeline.backoff import backoff_delay
from pipeline.stats import counter, gauge
from sinks.base import RECOVERED_AFTER_S
from sinks.mqtt_client import forget_topics, mqtt_client
from sinks.mqtt_settings import MqttSettings
from sinks.mqtt_topics import OFFLINE, ONLINE
from sinks.outbox import Outbox, OutMessage

log = logging.getLogger(__name__)
T = TypeVar("T")

DELIVERY_WINDOW = 64
"""Messages published before waiting for their acknowledgements (order is kept by the broker)."""
MEMORY_MESSAGES = 20_000
"""Alert messages kept in memory while the outbox cannot be written (a full disk); beyond, the oldest go."""
CANCEL_WAIT_S = 1.0
"""How long a close waits for the connection task to end once cancelled."""
TAKEN_OVER_S = 5.0
TAKEN_OVER_TIMES = 3
"""A connection lost within TAKEN_OVER_S of being made, TAKEN_OVER_TIMES times in a row: another client
(a second monitor with the same instance name) takes the session over."""
OUTBOX_ERRORS = (sqlite3.Error, OSError)
"""What a write to the outbox raises when it cannot keep a message (a full disk, a broken file)."""


def _is_auth_failure(exc: BaseException) -> bool:
    rc = getattr(exc, "rc", None)
    if isinstance(rc, ReasonCode):
        return rc.value in (0x86, 0x87, 4, 5) or "authori" in str(rc).lower() or "password" in str(rc).lower()
    return rc in (4, 5)


class MessageListener(Protocol):
    """Something that wants the messages of some topics (commands, Home Assistant's status)."""

    @property
    def subscriptions(self) -> Sequence[str]:
        """Topic filters to subscribe to on every connect."""
        ...

    async def on_message(self, topic: str, payload: bytes) -> None:
        """One message of those topics (on the event loop; it must not raise)."""
        ...


@dataclass(slots=True)
class MqttStats:
    """Figures of the broker connection."""

    delivered: int = counter("MQTT alert messages acknowledged by the broker", metric="alerts_delivered")
    pending: int = gauge("MQTT alert messages waiting in the outbox", metric="alerts_pending")
    dropped: int = counter("Score and status messages dropped while disconnected", metric="mqtt_state_dropped")
    outages: int = counter("Times the broker could not be reached", metric="mqtt_outages")
    failures: int = counter(
        "Unexpected errors of the delivery loop (each logged, then reconnected)", metric="mqtt_failures"
    )
    connected: bool = gauge("1 while connected to the broker", metric="mqtt_connected", default=False)
    takeovers: int = counter(
        "Connections lost right after they were made, again and again: another client with this client id",
        metric="mqtt_session_takeovers",
    )
    outbox_failing: bool = gauge(
        "1 while the outbox cannot be written (a full disk): alerts are kept in memory", metric="outbox_failing"
    )
    unsaved: int = gauge(
        "Alert messages kept in memory because the outbox could not keep them", metric="alerts_unsaved"
    )
    lost: int = counter(
        "Alert messages lost: more than memory holds came while the outbox failed", metric="alerts_lost"
    )


class MqttConnection:
    """One client session with the broker, as an async resource that owns its connection task.

    The task never ends by itself: a lost broker, a refused login and an unexpected error (say, of the
    outbox database) are each logged once per outage and followed by a reconnect with capped, jittered
    backoff. On every connect it says ``online`` (retained; ``offline`` is its last will and its word on a
    clean close), sends what ``greeting`` returns, subscribes for its listeners and then delivers:

    * :meth:`persist` and :meth:`enqueue` put messages in the :class:`Outbox` (SQLite) first; they are
      published with their QoS in order and removed once the broker acknowledges them, so nothing is lost
      while the broker is away or when the process is killed.
    * :meth:`publish_state` sends a message now, or drops it (counted) while disconnected.
    """

    def __init__(self, cfg: MqttSettings, *, client_id: str, available: str, flush_timeout_s: float = 1.5) -> None:
        self.cfg = cfg
        self.client_id = client_id
        self.available = available
        self.flush_timeout_s = flush_timeout_s
        self.stats = MqttStats()
        self.connected = asyncio.Event()
        self.greeting: Callable[[], Sequence[OutMessage]] = list
        """What to send (directly, not through the outbox) after every connect, e.g. discovery."""
        self._listeners: list[MessageListener] = []
        self._client: aiomqtt.Client | None = None
        self._outbox: Outbox | None = None
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mqtt-outbox")
        self._memory: deque[OutMessage] = deque()
        """Alert messages the outbox could not keep, oldest first; newer than every row of the outbox."""
        self._in_flight: list[OutMessage] = []
        """Of those, the ones being published now."""
        self._memory_lock = threading.Lock()
        self._unsaved_in_outage = 0
        self._last_failure = 0.0
        self._quick_losses = 0
        self._taken_over_said = False
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._stopping = False
        """Set as the connection task is cancelled: whatever it catches then is the end, not an outage."""
        self.retained: set[str] = set()
        """The topics this connection has published retained messages to: what a forgetting close clears."""
        self._rng = random.Random()

    @property
    def where(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"

    def listen(self, listener: MessageListener) -> None:
        """Hand the messages of ``listener.subscriptions`` to it (subscribed from the next connect on)."""
        self._listeners.append(listener)

    async def _in_db(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    async def open(self) -> None:
        """Open the outbox and start connecting (in the background)."""
        self._outbox = await self._in_db(Outbox, self.cfg.outbox)
        left = await self._in_db(len, self._outbox)
        if left:
            log.info("MQTT outbox %s holds %d undelivered messages from an earlier run", self.cfg.outbox, left)
        self.stats.pending = left
        self._task = asyncio.create_task(self._connection(), name="mqtt-connection")

    def persist(self, messages: Sequence[OutMessage]) -> None:
        """Write messages to the outbox now, on the caller's thread (a few milliseconds); if it cannot keep
        them, they are kept in memory and go out all the same (:meth:`_keep`)."""
        self._note(messages)
        self._keep(messages)
        self._added(len(messages))

    async def enqueue(self, messages: Sequence[OutMessage]) -> None:
        """Write messages to the outbox (from its own thread); they go out in order, once each."""
        self._note(messages)
        await self._in_db(self._keep, messages)
        self._added(len(messages))

    def _note(self, messages: Sequence[OutMessage]) -> None:
        self.retained.update(m.topic for m in messages if m.retain and m.payload)

    def _added(self, n: int) -> None:
        self.stats.pending += n
        self._drained.clear()
        self._wake.set()

    def _keep(self, messages: Sequence[OutMessage]) -> None:
        """Into the outbox, after whatever waits in memory; into memory when the outbox cannot be written
        (order kept: memory holds only messages newer than the outbox's). The first failure of an outage
        is logged, and the recovery with how many messages were kept in memory meanwhile."""
        assert self._outbox is not None, "connection not opened"
        with self._memory_lock:
            backlog = [*self._in_flight, *self._memory]
            try:
                self._outbox.add([*backlog, *messages])
            except OUTBOX_ERRORS as exc:
                self._last_failure = time.monotonic()
                if not self.stats.outbox_failing:
                    self.stats.outbox_failing = True
                    log.error(
                        "MQTT outbox %s cannot be written (%s): alerts are kept in memory (up to %d messages) "
                        "and sent all the same, and written once it can be",
                        self.cfg.outbox,
                        exc,
                        MEMORY_MESSAGES,
                    )
                self._memory.extend(messages)
                self._unsaved_in_outage += len(messages)
                while len(self._memory) > MEMORY_MESSAGES:
                    self._memory.popleft()
                    self.stats.lost += 1
                self.stats.unsaved = len(self._memory) + len(self._in_flight)
                return
            if backlog:  # written now; those being published may come a second time (QoS 1: at least once)
                self._memory.clear()
                self._in_flight = []
                self.stats.unsaved = 0
            if self.stats.outbox_failing and time.monotonic() - self._last_failure >= RECOVERED_AFTER_S:
                self.stats.outbox_failing = False
                log.warning(
                    "MQTT outbox %s is written again; %d alert messages were kept in memory meanwhile (%d lost)",
                    self.cfg.outbox,
                    self._unsaved_in_outage,
                    self.stats.lost,
                )
                self._unsaved_in_outage = 0

    async def publish_state(self, msg: OutMessage) -> None:
        """Send a message now if connected, else drop it (counted)."""
        self._note([msg])
        client = self._client
        if client is None or not self.connected.is_set():
            self.stats.dropped += 1
            return
        try:
            await client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain, timeout=5.0)
        except aiomqtt.MqttError:
            self.stats.dropped += 1

    async def send(self, messages: Sequence[OutMessage]) -> None:
        """Publish messages directly while connected (what is resent on every connect anyway)."""
        self._note(messages)
        client = self._client
        if client is not None and self.connected.is_set():
            for msg in messages:
                await client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)

    async def close(self, *, forget: bool = False) -> None:
        """Deliver what can be delivered within ``flush_timeout_s``, say offline, disconnect (once).
        ``forget``: instead of offline, clear every retained message this connection published and its
        availability, so nothing of this instance stays on the broker (Home Assistant drops its entities)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.connected.is_set() and self.stats.pending:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._drained.wait(), self.flush_timeout_s)
            client = self._client
            if client is not None and self.connected.is_set():
                with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                    if forget:
                        await forget_topics(client, [*sorted(self.retained), self.available])
                        log.info("MQTT: cleared the %d retained messages of this instance", len(self.retained) + 1)
                    else:
                        await client.publish(self.available, OFFLINE, qos=1, retain=True, timeout=1.0)
        finally:
            if self._task is not None:
                self._stopping = True
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=CANCEL_WAIT_S)
                if not self._task.done():
                    log.error("MQTT: the connection to %s did not stop when told; left behind", self.where)
            if self._outbox is not None:
                if self._memory or self._in_flight:  # a last try to write what only memory holds
                    await self._in_db(self._keep, [])
                    if self._memory:
                        log.error(
                            "MQTT: %d alert messages could not be written to %s and are lost",
                            len(self._memory),
                            self.cfg.outbox,
                        )
                outbox, self._outbox = self._outbox, None
                await self._in_db(outbox.close)
            self._db.shutdown(wait=False)
            if self.stats.pending:
                log.warning(
                    "MQTT: %d alert messages stay in %s for the next start", self.stats.pending, self.cfg.outbox
                )

    # -- internals ---------------------------------------------------------------------------------

    def _client_for(self) -> aiomqtt.Client:
        client = mqtt_client(self.cfg, self.client_id, will=aiomqtt.Will(self.available, OFFLINE, qos=1, retain=True))
        client.pending_calls_threshold = 4 * DELIVERY_WINDOW  # we keep a window of publishes in flight
        return client

    async def _connection(self) -> None:
        """Connect, deliver and listen; on any failure log once per outage and reconnect with backoff."""
        attempt = 0
        outage = False
        while True:
            connected_at: float | None = None
            try:
                async with self._client_for() as client:
                    self._client = client
                    await client.publish(self.available, ONLINE, qos=1, retain=True)
                    greeting = self.greeting()
                    self._note(greeting)
                    for msg in greeting:
                        await client.publish(msg.topic, msg.payload, qos=msg.qos, retain=msg.retain)
                    for topic in {t for listener in self._listeners for t in listener.subscriptions}:
                        await client.subscribe(topic, qos=1)
                    self.connected.set()
                    self.stats.connected = True
                    connected_at = time.monotonic()
                    if outage and not self._taken_over_said:
                        log.info(
                            "MQTT: reconnected to %s; delivering %d queued messages", self.where, self.stats.pending
                        )
                    attempt, outage = 0, False
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._deliver(client), name="mqtt-deliver")
                        tg.create_task(self._listen(client), name="mqtt-listen")
            except* aiomqtt.MqttError as group:
                if not self._stopping and not self._taken_over(connected_at) and not outage:
                    self._outage(group.exceptions[0])
                outage = True
            except* (OSError, ssl.SSLError) as group:
                if not outage and not self._stopping:
                    self.stats.outages += 1
                    log.warning(
                        "MQTT broker %s unavailable (%s); alerts are kept in the outbox",
                        self.where,
                        group.exceptions[0],
                    )
                outage = True
            except* Exception as other:  # a bug or a broken outbox: say so at once, then start over
                self.stats.failures += 1
                error = other.exceptions[0]
                log.error("MQTT delivery to %s failed: %r; restarting it", self.where, error, exc_info=error)
                outage = True
            finally:
                self._client = None
                self.connected.clear()
                self.stats.connected = False
                if connected_at is None:  # a failed connect: the broker is away, not taken by another client
                    self._quick_losses = 0
                    self._taken_over_said = False
            if self._stopping:
                # closed: what was caught above is the connection the cancellation cut (a TaskGroup of
                # Python 3.11 hands up its MqttError instead of the cancellation); not an outage, the end
                return
            await asyncio.sleep(
                backoff_delay(attempt, self.cfg.reconnect_initial_s, self.cfg.reconnect_max_s, self._rng)
            )
            attempt += 1

    def _taken_over(self, connected_at: float | None) -> bool:
        """Whether the session looks taken over by another client with this client id: lost right after
        it was made, again and again. Said once, plainly; those losses are then not logged as outages."""
        if connected_at is None:  # not even connected: an outage of the broker
            return False
        if time.monotonic() - connected_at > TAKEN_OVER_S:
            self._quick_losses = 0
            self._taken_over_said = False
            return False
        self._quick_losses += 1
        if self._quick_losses >= TAKEN_OVER_TIMES:
            self.stats.takeovers += 1
            if not self._taken_over_said:
                self._taken_over_said = True
                log.error(
                    "MQTT: another client uses this monitor's client id %r on %s: each connection is taken "
                    "over right after it is made. Give each monitor its own name (--instance NAME, or "
                    "instance / [mqtt] client_id in the configuration).",
                    self.client_id,
                    self.where,
                )
        return self._taken_over_said

    def _outage(self, exc: BaseException) -> None:
        self.stats.outages += 1
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
                "MQTT broker %s unavailable (%s); alerts are kept in the outbox and sent on reconnect", self.where, exc
            )

    async def _listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            if not isinstance(payload, bytes | bytearray):
                payload = str(payload).encode() if payload is not None else b""
            for listener in self._listeners:
                if any(message.topic.matches(t) for t in listener.subscriptions):
                    await listener.on_message(message.topic.value, bytes(payload))

    async def _deliver(self, client: aiomqtt.Client) -> None:
        assert self._outbox is not None
        outbox = self._outbox
        while True:
            self._wake.clear()
            rows = await self._in_db(outbox.peek, DELIVERY_WINDOW)
            if not rows and self._memory:
                await self._deliver_memory(client)
                continue
            if not rows:
                if not self._wake.is_set():  # nothing was added while we looked
                    self.stats.pending = 0
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
            await self._in_db(outbox.remove, [i for i, _ in rows[:ok]])
            self.stats.delivered += ok
            self.stats.pending = await self._in_db(len, outbox) + len(self._memory)
            failures = [r for r in results if isinstance(r, BaseException)]
            if failures:
                raise failures[0]

    async def _deliver_memory(self, client: aiomqtt.Client) -> None:
        """Publish what only memory holds (the outbox could not keep it), in order, like the outbox's."""
        with self._memory_lock:
            batch = [self._memory.popleft() for _ in range(min(DELIVERY_WINDOW, len(self._memory)))]
            self._in_flight = batch
        results = await asyncio.gather(
            *(client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain, timeout=10.0) for m in batch),
            return_exceptions=True,
        )
        ok = next((k for k, r in enumerate(results) if r is not None), len(results))
        with self._memory_lock:
            if self._in_flight is batch:  # not written to the outbox meanwhile
                self._memory.extendleft(reversed(batch[ok:]))  # to go again, first
                self._in_flight = []
            self.stats.unsaved = len(self._memory) + len(self._in_flight)
        self.stats.delivered += ok
        self.stats.pending = max(0, self.stats.pending - ok)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise failures[0]
