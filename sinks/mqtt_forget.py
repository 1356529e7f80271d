"""What an instance left retained on the broker, found and cleared (``monitor forget-instance``).

An instance renamed (the default name hashes its cameras) or retired leaves its retained messages behind:
Home Assistant keeps showing its devices, unavailable. They are found by what the broker still holds: the
discovery configurations whose availability is that instance's, the retained state of the cameras no
other instance has taken over since, and the instance's availability.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field

from sinks.mqtt_client import forget_topics, mqtt_client
from sinks.mqtt_settings import MqttSettings
from sinks.mqtt_topics import ONLINE, Topics

QUIET_S = 0.5
"""Retained messages come at once after a subscribe: this long without one, all have come."""


class InstanceOnline(Exception):
    """The instance to forget is running (its availability says online)."""


@dataclass(slots=True)
class Leftovers:
    """An instance's retained messages on the broker."""

    instance: str
    discovery: list[str] = field(default_factory=list)
    """Home Assistant discovery configurations (each an entity)."""
    cameras: dict[str, list[str]] = field(default_factory=dict)
    """Per camera of the instance's, its retained state and settings topics."""
    availability: str | None = None
    others: dict[str, str] = field(default_factory=dict)
    """The other instances the broker knows of, with their availability."""

    @property
    def topics(self) -> list[str]:
        """Every topic to clear, the availability last (Home Assistant sees the entities go first)."""
        cams = [t for topics in self.cameras.values() for t in topics]
        return [*self.discovery, *cams, *([self.availability] if self.availability else [])]


async def retained(cfg: MqttSettings, filters: list[str], *, listen_s: float = 5.0) -> dict[str, bytes]:
    """The retained messages under ``filters``, by topic (until QUIET_S passes without one, at most
    ``listen_s``)."""
    found: dict[str, bytes] = {}
    async with mqtt_client(cfg, f"llmvad-forget-{uuid.uuid4().hex[:8]}") as client:
        for f in filters:
            await client.subscribe(f, qos=1)
        end = time.monotonic() + listen_s
        messages = aiter(client.messages)
        while (left := end - time.monotonic()) > 0:
            try:
                msg = await asyncio.wait_for(anext(messages), min(QUIET_S, left))
            except TimeoutError:
                break
            if msg.retain and isinstance(msg.payload, bytes | bytearray) and msg.payload:
                found[msg.topic.value] = bytes(msg.payload)
    return found


def leftovers(held: dict[str, bytes], topics: Topics) -> Leftovers:
    """What of ``held`` (retained messages by topic) belongs to ``topics.instance`` alone."""
    mine = topics.available
    found = Leftovers(topics.instance, availability=mine if mine in held else None)
    instances = f"{topics.prefix}/instances/"
    found.others = {
        t.removeprefix(instances).removesuffix("/available"): p.decode(errors="replace")
        for t, p in held.items()
        if t.startswith(instances) and t.endswith("/available") and t != mine
    }
    owner: dict[str, set[str]] = {}  # camera -> the availability topics of its discovery configurations
    node_of = f"{topics.prefix}_"
    for topic, payload in held.items():
        parts = topic.split("/")
        if not (topic.startswith(f"{topics.discovery_prefix}/") and len(parts) >= 4 and parts[-1] == "config"):
            continue
        try:
            config = json.loads(payload)
        except ValueError:
            continue
        available = config.get("availability_topic") if isinstance(config, dict) else None
        node = parts[-3]
        if node.startswith(node_of):
            owner.setdefault(node.removeprefix(node_of), set()).add(str(available))
        if available == mine:
            found.discovery.append(topic)
    for camera in sorted(c for c, avail in owner.items() if avail == {mine}):
        under = f"{topics.prefix}/{camera}/"
        found.cameras[camera] = sorted(t for t in held if t.startswith(under))
    found.discovery.sort()
    return found


async def forget_instance(cfg: MqttSettings, instance: str, *, dry_run: bool = False) -> Leftovers:
    """Find ``instance``'s retained messages and, unless ``dry_run``, clear them. InstanceOnline when the
    instance runs; aiomqtt.MqttError when the broker cannot be reached."""
    topics = Topics(cfg.topic_prefix, cfg.discovery_prefix, instance)
    held = await retained(cfg, [f"{topics.discovery_prefix}/+/+/+/config", f"{topics.prefix}/#"])
    if held.get(topics.available) == ONLINE:
        raise InstanceOnline(f"instance {instance!r} is online (its monitor runs): stop it first")
    found = leftovers(held, topics)
    if found.topics and not dry_run:
        async with mqtt_client(cfg, f"llmvad-forget-{uuid.uuid4().hex[:8]}") as client:
            await forget_topics(client, found.topics)
    return found
