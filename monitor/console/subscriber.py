"""The console's MQTT subscriber: its own thread and event loop, so the Qt thread never waits on the network."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import aiomqtt

from monitor.console.feed import ConsoleFeed, LinkState, MqttDecoder
from pipeline.backoff import backoff_delay

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """``mqtt://[user:pass@]host[:port]`` (``mqtts://`` for TLS)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """Parse a broker URL; ValueError says what is wrong (without echoing a password)."""
        parts = urlsplit(url if "://" in url else f"mqtt://{url}")
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"broker URL must start with mqtt:// or mqtts://, not {parts.scheme}://")
        try:
            port = parts.port
        except ValueError:
            raise ValueError("broker URL has an invalid port") from None
        if not parts.hostname:
            raise ValueError("broker URL has no host")
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname,
            port=port or (8883 if tls else 1883),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
        )

    def __str__(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


class MqttFeeder:
    """Subscribes to ``<prefix>/#`` from a background thread and pushes decoded items into the feed.

    Reconnects by itself with capped, jittered backoff, after a lost broker and after any unexpected error
    alike (logged with its traceback); every connect and loss is pushed as a :class:`LinkState` so the
    window can show it.
    """

    def __init__(
        self,
        address: BrokerAddress,
        prefix: str,
        feed: ConsoleFeed,
        *,
        ca_file: str | None = None,
        reconnect_max_s: float = 10.0,
    ) -> None:
        self.address = address
        self.prefix = prefix
        self.feed = feed
        self.decoder = MqttDecoder(prefix, feed)
        self.ca_file = ca_file
        self.reconnect_max_s = reconnect_max_s
        self.messages = 0
        self.failures = 0
        """Unexpected errors of the subscriber loop (each logged and shown, then reconnected)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="console-mqtt", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._started.wait(5)

    def stop(self, timeout: float = 3.0) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._started.set()
        listen = asyncio.create_task(self._listen())
        await self._stop.wait()
        listen.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listen

    def _client(self) -> aiomqtt.Client:
        a = self.address
        tls = aiomqtt.TLSParameters(ca_certs=self.ca_file, cert_reqs=ssl.CERT_REQUIRED) if a.tls else None
        return aiomqtt.Client(
            a.host,
            a.port,
            username=a.username,
            password=a.password,
            tls_params=tls,
            timeout=10.0,
            max_queued_incoming_messages=10_000,
        )

    async def _listen(self) -> None:
        rng = random.Random()
        attempt = 0
        down_logged = False
        while True:
            try:
                async with self._client() as client:
                    await client.subscribe(f"{self.prefix}/#", qos=1)
                    attempt, down_logged = 0, False
                    log.info("console: connected to %s", self.address)
                    self.feed.push(LinkState(True, f"connected to {self.address}"))
                    async for message in client.messages:
                        self.messages += 1
                        payload = message.payload
                        if not isinstance(payload, bytes | bytearray):
                            payload = str(payload).encode()
                        for item in self.decoder.decode(str(message.topic), bytes(payload)):
                            self.feed.push(item)
            except (aiomqtt.MqttError, OSError, ssl.SSLError) as exc:
                if not down_logged:
                    log.warning("console: broker %s unavailable (%s); reconnecting", self.address, exc)
                    down_logged = True
                self.feed.push(LinkState(False, f"disconnected from {self.address}: {exc}"))
            except Exception as exc:  # a bug must not silence the console: say so, show it, start over
                self.failures += 1
                log.error("console: the MQTT subscriber failed: %r; reconnecting", exc, exc_info=exc)
                self.feed.push(LinkState(False, f"subscriber error: {exc!r}; reconnecting"))
            await asyncio.sleep(backoff_delay(attempt, 0.5, self.reconnect_max_s, rng))
            attempt += 1
