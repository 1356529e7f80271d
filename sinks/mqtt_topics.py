"""MQTT topics and payloads, in the conventions Frigate and Home Assistant users know."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.controls import COMMANDS
from pipeline.records import CameraStatus, ControlState, Description, EventChange, WindowScore
from pipeline.rules import DEFAULT_RULE
from sinks.outbox import OutMessage
from sinks.serialize import event_dict, record_dict

ONLINE, OFFLINE = b"online", b"offline"
ON, OFF = b"ON", b"OFF"


def _json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic the monitor publishes under ``prefix``."""

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

    def score(self, camera: str, rule: str = DEFAULT_RULE) -> str:
        """The anomaly rule's window scores, or another rule's on ``.../rules/<rule>/score``."""
        return f"{self.prefix}/{camera}/score" if rule == DEFAULT_RULE else f"{self.prefix}/{camera}/rules/{rule}/score"

    def anomaly(self, camera: str, rule: str = DEFAULT_RULE) -> str:
        """ON while an event of the rule is open (retained); another rule's on ``.../rules/<rule>/state``."""
        if rule == DEFAULT_RULE:
            return f"{self.prefix}/{camera}/anomaly"
        return f"{self.prefix}/{camera}/rules/{rule}/state"

    def snapshot(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/snapshot"

    def status(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/status"

    def description(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/description"

    def event(self, camera: str) -> str:
        """The camera's ``new`` and ``end`` events, for Home Assistant's ``event`` entity."""
        return f"{self.prefix}/{camera}/event"

    def severity(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/severity"

    def state(self, camera: str, kind: str) -> str:
        """Where the value in force of a setting (``enabled``, ``threshold``) is kept, retained."""
        return f"{self.prefix}/{camera}/{kind}"

    def command(self, camera: str, kind: str) -> str:
        """Where operators publish to change a setting (``enabled``, ``threshold``, ``describe``)."""
        return f"{self.prefix}/{camera}/{kind}/set"

    def commands(self, camera: str) -> list[str]:
        return [self.command(camera, kind) for kind in COMMANDS]

    def parse_command_topic(self, topic: str) -> tuple[str, str] | None:
        """(camera, command) of a command topic, or None."""
        head, _, rest = topic.partition("/")
        parts = rest.split("/")
        if head != self.prefix or len(parts) != 3 or parts[2] != "set" or parts[1] not in COMMANDS:
            return None
        return parts[0], parts[1]

    @property
    def summarize(self) -> str:
        """Where a summary of a period is asked for (JSON: since, until, camera, id)."""
        return f"{self.prefix}/summarize/set"

    @property
    def summary(self) -> str:
        """Where the answer comes."""
        return f"{self.prefix}/summary"

    def summary_message(self, answer: dict[str, Any]) -> OutMessage:
        return OutMessage(self.summary, _json(answer), 1, False)

    @property
    def ha_status(self) -> str:
        return f"{self.discovery_prefix}/status"

    def discovery(
        self, camera: str, version: str, *, commands: bool = True, rules: Sequence[str] = ()
    ) -> list[OutMessage]:
        """Home Assistant discovery: one device per camera with an anomaly binary sensor, score, description
        and severity sensors, an event entity, the snapshot as a camera, a binary sensor and a score sensor
        per rule and, when the monitor obeys commands, a switch (enabled), a number (threshold) and a
        button (describe now)."""
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
        anomaly = {
            **common,
            "name": "Anomaly",
            "unique_id": f"{node}_anomaly",
            "state_topic": self.anomaly(camera),
            "payload_on": ON.decode(),
            "payload_off": OFF.decode(),
            "device_class": "problem",
        }
        score = {
            **common,
            "name": "Anomaly score",
            "unique_id": f"{node}_score",
            "state_topic": self.score(camera),
            "value_template": "{{ value_json.score }}",
            "json_attributes_topic": self.score(camera),
            "json_attributes_template": "{{ {'descriptions': value_json.descriptions} | tojson }}",
            "state_class": "measurement",
            "suggested_display_precision": 2,
            "icon": "mdi:cctv",
        }
        entities: dict[tuple[str, str], dict[str, Any]] = {
            ("binary_sensor", "anomaly"): anomaly,
            ("sensor", "score"): score,
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
        for rule in rules:
            title = rule.replace("_", " ").replace("-", " ").capitalize()
            entities[("binary_sensor", f"rule_{rule}")] = {
                "name": title,
                "state_topic": self.anomaly(camera, rule),
                "payload_on": ON.decode(),
                "payload_off": OFF.decode(),
                "device_class": "problem",
            }
            entities[("sensor", f"rule_{rule}_score")] = {
                "name": f"{title} score",
                "state_topic": self.score(camera, rule),
                "value_template": "{{ value_json.score }}",
                "state_class": "measurement",
                "suggested_display_precision": 2,
                "icon": "mdi:comment-question-outline",
            }
        if commands:
            entities[("switch", "enabled")] = {
                "name": "Enabled",
                "command_topic": self.command(camera, "enabled"),
                "state_topic": self.state(camera, "enabled"),
                "payload_on": ON.decode(),
                "payload_off": OFF.decode(),
                "icon": "mdi:cctv",
            }
            entities[("number", "threshold")] = {
                "name": "Threshold",
                "command_topic": self.command(camera, "threshold"),
                "state_topic": self.state(camera, "threshold"),
                "min": 0.01,
                "max": 1.0,
                "step": 0.01,
                "mode": "box",
                "icon": "mdi:tune-vertical",
            }
            entities[("button", "describe")] = {
                "name": "Describe now",
                "command_topic": self.command(camera, "describe"),
                "payload_press": "PRESS",
                "icon": "mdi:eye-refresh-outline",
            }
        out = []
        for (component, key), body in entities.items():
            if key not in ("anomaly", "score"):
                body = {**common, "unique_id": f"{node}_{key}", **body}
            out.append(OutMessage(f"{self.discovery_prefix}/{component}/{node}/{key}/config", _json(body), 1, True))
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
            out.append(OutMessage(self.anomaly(cam, ev.rule), ON if change.type == "new" else OFF, 1, True))
        return out

    def control_messages(self, st: ControlState) -> list[OutMessage]:
        """The settings in force, retained: ``enabled`` (ON/OFF) and ``threshold``."""
        return [
            OutMessage(self.state(st.camera, "enabled"), ON if st.enabled else OFF, 1, True),
            OutMessage(self.state(st.camera, "threshold"), f"{st.threshold:g}".encode(), 1, True),
        ]

    def description_message(self, d: Description) -> OutMessage:
        body = {"text": d.text, "frame_index": d.frame_index, "wall_time": d.wall_time}
        return OutMessage(self.description(d.camera), _json(body), 0, True)

    def score_message(self, ws: WindowScore) -> OutMessage:
        body = record_dict(ws)
        del body["kind"]
        return OutMessage(self.score(ws.camera, ws.rule), _json(body), 0, False)

    def status_message(self, st: CameraStatus) -> OutMessage:
        body = record_dict(st)
        del body["kind"]
        return OutMessage(self.status(st.camera), _json(body), 0, False)
