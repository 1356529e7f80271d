"""MQTT topics and payloads, in the conventions Frigate and Home Assistant users know."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pipeline.records import CameraStatus, EventChange, WindowScore
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

    def score(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/score"

    def anomaly(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/anomaly"

    def snapshot(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/snapshot"

    def status(self, camera: str) -> str:
        return f"{self.prefix}/{camera}/status"

    @property
    def ha_status(self) -> str:
        return f"{self.discovery_prefix}/status"

    def discovery(self, camera: str, version: str) -> list[OutMessage]:
        """Home Assistant discovery: one device per camera with an anomaly binary sensor and a score sensor."""
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
        return [
            OutMessage(f"{self.discovery_prefix}/binary_sensor/{node}/anomaly/config", _json(anomaly), 1, True),
            OutMessage(f"{self.discovery_prefix}/sensor/{node}/score/config", _json(score), 1, True),
        ]

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
        if change.type == "new":
            out.append(OutMessage(self.anomaly(cam), ON, 1, True))
        elif change.type == "end":
            out.append(OutMessage(self.anomaly(cam), OFF, 1, True))
        return out

    def score_message(self, ws: WindowScore) -> OutMessage:
        body = record_dict(ws)
        del body["kind"]
        return OutMessage(self.score(ws.camera), _json(body), 0, False)

    def status_message(self, st: CameraStatus) -> OutMessage:
        body = record_dict(st)
        del body["kind"]
        return OutMessage(self.status(st.camera), _json(body), 0, False)
