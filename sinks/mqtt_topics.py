"""MQTT topics and payloads, in the conventions Frigate and Home Assistant users know."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.controls import CAMERA_COMMANDS, RULE_COMMANDS
from pipeline.records import GENERAL_RULE, Answer, CameraStatus, ControlState, Description, EventChange, WindowScore
from sinks.outbox import OutMessage
from sinks.serialize import event_dict, record_dict

ONLINE, OFFLINE = b"online", b"offline"
ON, OFF = b"ON", b"OFF"


def _json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


GENERAL_ALIASES = {"score": "score", "state": "anomaly", "threshold": "threshold"}
"""The general rule's topics of earlier versions, still published (and obeyed): ``<prefix>/<camera>/<alias>``."""
GENERAL_ENTITY_KEYS = {"state": "anomaly", "score": "score", "threshold": "threshold"}
"""The general rule's Home Assistant entities keep the keys (unique ids) they had before rules existed."""


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic the monitor publishes and obeys under ``prefix``.

    Each rule of a camera has ``<prefix>/<camera>/rules/<rule>/{score,state,enabled,threshold}`` (and
    ``.../enabled/set``, ``.../threshold/set``); the general rule's score, state and threshold also keep
    their earlier topics ``<prefix>/<camera>/{score,anomaly,threshold}``.
    """

    prefix: str = "llmvad"
    discovery_prefix: str = "homeassistant"
    instance: str = ""

    @property
    def available(self) -> str:
        """This monitor instance's availability: each instance has its own, so a stopped one marks only
        its own cameras unavailable."""
        return f"{self.prefix}/instances/{self.instance}/available" if self.instance else f"{self.prefix}/available"

    @property
    def events(self) -> str:
        return f"{self.prefix}/events"

    def rule(self, camera: str, rule: str, what: str) -> str:
        """A rule's ``score``, ``state`` (ON while one of its events is open, retained), ``enabled`` or
        ``threshold`` (in force, retained)."""
        return f"{self.prefix}/{camera}/rules/{rule}/{what}"

    def rule_topics(self, camera: str, rule: str, what: str) -> list[str]:
        """Where a rule's ``what`` goes: its own topic and, for the general rule, the earlier one too."""
        alias = GENERAL_ALIASES.get(what) if rule == GENERAL_RULE else None
        return [self.rule(camera, rule, what), *([f"{self.prefix}/{camera}/{alias}"] if alias else [])]

    def snapshot(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/snapshot"

    def status(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/status"

    def description(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/description"

    def event(self, camera: str) -> str:
        """The camera's ``new`` and ``end`` events (of every rule), for Home Assistant's ``event`` entity."""
        return f"{self.prefix}/{camera}/event"

    def severity(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/severity"

    def enabled(self, camera: str) -> str:
        """Whether the camera runs at all (ON/OFF, retained)."""
        return f"{self.prefix}/{camera}/enabled"

    def command(self, camera: str, kind: str, rule: str | None = None) -> str:
        """Where operators publish to change a setting: the camera's (``enabled``, ``describe``) or a rule's
        (``enabled``, ``threshold``)."""
        return f"{self.rule(camera, rule, kind) if rule is not None else f'{self.prefix}/{camera}/{kind}'}/set"

    def command_subscriptions(self, camera: str) -> list[str]:
        """What a monitor obeying commands subscribes to for one camera."""
        return [f"{self.prefix}/{camera}/+/set", f"{self.prefix}/{camera}/rules/+/+/set"]

    def parse_command_topic(self, topic: str) -> tuple[str, str, str | None] | None:
        """(camera, command, rule or None) of a command topic, or None. The camera's own ``threshold`` is
        the general rule's (the topic of earlier versions)."""
        head, _, rest = topic.partition("/")
        parts = rest.split("/")
        if head != self.prefix or not parts or parts[-1] != "set":
            return None
        if len(parts) == 3 and parts[1] in CAMERA_COMMANDS:
            return parts[0], parts[1], GENERAL_RULE if parts[1] == "threshold" else None
        if len(parts) == 5 and parts[1] == "rules" and parts[3] in RULE_COMMANDS and parts[2]:
            return parts[0], parts[3], parts[2]
        return None

    @property
    def summarize(self) -> str:
        """Where a summary of a period is asked for (JSON: since, until, camera, id)."""
        return f"{self.prefix}/summarize/set"

    @property
    def summary(self) -> str:
        """Where the answer comes."""
        return f"{self.prefix}/summary"

    def answer_message(self, answer: Answer) -> OutMessage:
        """The answer to a request, on the topic of what was asked (``summary``: ``<prefix>/summary``)."""
        return OutMessage(f"{self.prefix}/{answer.kind}", _json(dict(answer.body)), 1, False)

    @property
    def ha_status(self) -> str:
        return f"{self.discovery_prefix}/status"

    def discovery(self, camera: str, version: str, rules: Sequence[str], *, commands: bool = True) -> list[OutMessage]:
        """Home Assistant discovery: one device per camera with description and severity sensors, an event
        entity, the snapshot as a camera; for every rule (the general one first) a binary sensor, a score
        sensor and, when the monitor obeys commands, a switch (enabled) and a number (threshold); and for
        the camera a switch (enabled) and a button (describe now)."""
        node = f"{self.prefix}_{camera}"
        device = {
            "identifiers": [node],
            "name": f"{camera} anomaly monitor",
            "manufacturer": "llmvad",
            "model": "LLM video anomaly monitor",
            "sw_version": version,
        }
        common = {
            "availability_topic": self.available,
            "payload_available": ONLINE.decode(),
            "payload_not_available": OFFLINE.decode(),
            "device": device,
            "origin": {"name": "llmvad-monitor", "sw_version": version},
        }
        entities: dict[tuple[str, str], dict[str, Any]] = {}
        for rule in rules:
            entities.update(self._rule_entities(camera, rule, commands=commands))
        entities.update(
            {
                ("sensor", "description"): {
                    "name": "Description",
                    "state_topic": self.description(camera),
                    "value_template": "{{ value_json.text[:250] }}",  # a state holds 255 characters at most
                    "json_attributes_topic": self.description(camera),
                    "icon": "mdi:text-box-outline",
                },
                ("sensor", "severity"): {
                    "name": "Event severity",
                    "state_topic": self.severity(camera),
                    "value_template": "{{ value_json.level }}",
                    "json_attributes_topic": self.severity(camera),
                    "icon": "mdi:alert-decagram",
                },
                ("event", "event"): {
                    "name": "Event",
                    "state_topic": self.event(camera),
                    "event_types": ["new", "end"],
                    "icon": "mdi:alarm-light-outline",
                },
                ("camera", "snapshot"): {"name": "Event snapshot", "topic": self.snapshot(camera)},
            }
        )
        if commands:
            entities[("switch", "enabled")] = {
                "name": "Enabled",
                "command_topic": self.command(camera, "enabled"),
                "state_topic": self.enabled(camera),
                "payload_on": ON.decode(),
                "payload_off": OFF.decode(),
                "icon": "mdi:cctv",
            }
            entities[("button", "describe")] = {
                "name": "Describe now",
                "command_topic": self.command(camera, "describe"),
                "payload_press": "PRESS",
                "icon": "mdi:eye-refresh-outline",
            }
        return [
            OutMessage(
                f"{self.discovery_prefix}/{component}/{node}/{key}/config",
                _json({**common, "unique_id": f"{node}_{key}", **body}),
                1,
                True,
            )
            for (component, key), body in entities.items()
        ]

    def _rule_entities(self, camera: str, rule: str, *, commands: bool) -> dict[tuple[str, str], dict[str, Any]]:
        """One rule's Home Assistant entities, keyed by (component, key)."""

        def key(what: str) -> str:
            if rule == GENERAL_RULE and what in GENERAL_ENTITY_KEYS:
                return GENERAL_ENTITY_KEYS[what]
            return f"rule_{rule}" if what == "state" else f"rule_{rule}_{what}"

        title = rule.replace("_", " ").replace("-", " ").capitalize()
        score = self.rule(camera, rule, "score")
        out: dict[tuple[str, str], dict[str, Any]] = {
            ("binary_sensor", key("state")): {
                "name": title,
                "state_topic": self.rule(camera, rule, "state"),
                "payload_on": ON.decode(),
                "payload_off": OFF.decode(),
                "device_class": "problem",
            },
            ("sensor", key("score")): {
                "name": f"{title} score",
                "state_topic": score,
                "value_template": "{{ value_json.score }}",
                "json_attributes_topic": score,
                "json_attributes_template": "{{ {'descriptions': value_json.descriptions} | tojson }}",
                "state_class": "measurement",
                "suggested_display_precision": 2,
                "icon": "mdi:gauge",
            },
        }
        if commands:
            out[("switch", key("enabled"))] = {
                "name": f"{title} rule",
                "command_topic": self.command(camera, "enabled", rule),
                "state_topic": self.rule(camera, rule, "enabled"),
                "payload_on": ON.decode(),
                "payload_off": OFF.decode(),
                "icon": "mdi:playlist-check",
            }
            out[("number", key("threshold"))] = {
                "name": f"{title} threshold",
                "command_topic": self.command(camera, "threshold", rule),
                "state_topic": self.rule(camera, rule, "threshold"),
                "min": 0.01,
                "max": 1.0,
                "step": 0.01,
                "mode": "box",
                "icon": "mdi:tune-vertical",
            }
        return out

    def alert_messages(self, change: EventChange, snapshot_max_bytes: int) -> list[OutMessage]:
        """What an event change sends, in order: snapshot, event, anomaly state (all QoS 1)."""
        ev, cam = change.after, change.camera
        out = []
        new_snapshot = ev.snapshot is not None and (change.before is None or change.before.snapshot != ev.snapshot)
        if new_snapshot and ev.snapshot is not None and len(ev.snapshot) <= snapshot_max_bytes:
            out.append(OutMessage(self.snapshot(cam), ev.snapshot, 1, True))
        payload = {
            "type": change.type,
            "before": None if change.before is None else event_dict(change.before),
            "after": event_dict(ev),
        }
        out.append(OutMessage(self.events, _json(payload), 1, False))
        if change.type != "end" and (change.before is None or change.before.severity != ev.severity):
            severity = {"level": ev.severity, "event": ev.id, "score": round(ev.peak_score, 6)}
            out.append(OutMessage(self.severity(cam), _json(severity), 1, True))
        if change.type in ("new", "end"):
            fired = {
                "event_type": change.type,
                "id": ev.id,
                "rule": ev.rule,
                "severity": ev.severity,
                "score": round(ev.peak_score, 6),
                "explanation": ev.explanation,
            }
            out.append(OutMessage(self.event(cam), _json(fired), 1, False))
            state = ON if change.type == "new" else OFF
            out.extend(OutMessage(t, state, 1, True) for t in self.rule_topics(cam, ev.rule, "state"))
        return out

    def control_messages(self, st: ControlState) -> list[OutMessage]:
        """The settings in force, retained: the camera's ``enabled`` and each rule's ``enabled`` and ``threshold``."""
        out = [OutMessage(self.enabled(st.camera), ON if st.enabled else OFF, 1, True)]
        for r in st.rules:
            out.extend(
                OutMessage(t, ON if r.enabled else OFF, 1, True) for t in self.rule_topics(st.camera, r.name, "enabled")
            )
            value = f"{r.threshold:g}".encode()
            out.extend(OutMessage(t, value, 1, True) for t in self.rule_topics(st.camera, r.name, "threshold"))
        return out

    def description_message(self, d: Description) -> OutMessage:
        body = {"text": d.text, "frame_index": d.frame_index, "wall_time": d.wall_time}
        return OutMessage(self.description(d.camera), _json(body), 0, True)

    def score_messages(self, ws: WindowScore) -> list[OutMessage]:
        body = record_dict(ws)
        del body["kind"]
        payload = _json(body)
        return [OutMessage(t, payload, 0, False) for t in self.rule_topics(ws.camera, ws.rule, "score")]

    def status_message(self, st: CameraStatus) -> OutMessage:
        body = record_dict(st)
        del body["kind"]
        return OutMessage(self.status(st.camera), _json(body), 0, False)
