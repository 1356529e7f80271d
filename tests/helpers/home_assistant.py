"""A real Home Assistant (from PyPI, in its own venv under .tools/, made by scripts/test_setup.sh) for tests:
its MQTT integration on a test broker, a user, and its REST API."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.broker import free_port

ROOT = Path(__file__).resolve().parent.parent.parent
HASS = Path(os.environ.get("LLMVAD_HASS", ROOT / ".tools" / "ha-venv" / "bin" / "hass"))
USER, PASSWORD = "tester", "tester-pass"
CLIENT_ID = "http://127.0.0.1/"


class HomeAssistant:
    """``hass -c DIR --skip-pip`` on a free port, its MQTT integration pointed at ``broker_port``."""

    def __init__(self, workdir: Path, broker_port: int, discovery_prefix: str) -> None:
        if not HASS.exists():
            pytest.fail(f"Home Assistant is not installed at {HASS}: run scripts/test_setup.sh")
        self.dir = workdir
        self.port = free_port()
        self.broker_port = broker_port
        self.discovery_prefix = discovery_prefix
        self.proc: subprocess.Popen[bytes] | None = None
        self.token = ""

    @property
    def log(self) -> str:
        path = self.dir / "home-assistant.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _configure(self) -> None:
        storage = self.dir / ".storage"
        storage.mkdir(parents=True, exist_ok=True)
        (self.dir / "configuration.yaml").write_text(
            "homeassistant:\n  name: test\n  latitude: 0\n  longitude: 0\n  elevation: 0\n"
            "  unit_system: metric\n  time_zone: UTC\n  currency: EUR\n  country: DE\n"
            f"http:\n  server_host: 127.0.0.1\n  server_port: {self.port}\n"
            "api:\nauth:\nlogger:\n  default: warning\n  logs:\n    homeassistant.components.mqtt: debug\n"
        )
        entry = {
            "entry_id": "llmvadtestmqtt",
            "version": 1,
            "minor_version": 1,
            "domain": "mqtt",
            "title": "test broker",
            "data": {
                "broker": "127.0.0.1",
                "port": self.broker_port,
                "discovery": True,
                "discovery_prefix": self.discovery_prefix,
            },
            "options": {},
            "pref_disable_new_entities": False,
            "pref_disable_polling": False,
            "source": "user",
            "unique_id": None,
            "disabled_by": None,
        }
        entries = {"version": 1, "minor_version": 1, "key": "core.config_entries", "data": {"entries": [entry]}}
        (storage / "core.config_entries").write_text(json.dumps(entries))
        onboarding = {
            "version": 4,
            "minor_version": 1,
            "key": "onboarding",
            "data": {"done": ["user", "core_config", "analytics", "integration"]},
        }
        (storage / "onboarding").write_text(json.dumps(onboarding))
        subprocess.run(
            [str(HASS), "--script", "auth", "-c", str(self.dir), "add", USER, PASSWORD],
            check=True,
            capture_output=True,
            timeout=300,
        )

    def start(self, timeout: float = 300.0) -> HomeAssistant:
        self._configure()
        self.proc = subprocess.Popen(
            [str(HASS), "-c", str(self.dir), "--skip-pip", "--log-file", str(self.dir / "home-assistant.log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                pytest.fail(f"Home Assistant exited: {err[-2000:]}\n{self.log[-3000:]}")
            try:
                self.token = self._login()
                self.api("GET", "/api/")
                return self
            except (OSError, urllib.error.URLError, KeyError, ValueError):
                time.sleep(1.0)
        pytest.fail(f"Home Assistant did not start within {timeout:.0f} s:\n{self.log[-3000:]}")

    def _post(self, path: str, data: dict[str, Any], *, form: bool) -> Any:
        body = urllib.parse.urlencode(data).encode() if form else json.dumps(data).encode()
        kind = "application/x-www-form-urlencoded" if form else "application/json"
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", body, {"Content-Type": kind})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def _login(self) -> str:
        """A user's access token through Home Assistant's own login flow."""
        flow = self._post(
            "/auth/login_flow",
            {"client_id": CLIENT_ID, "handler": ["homeassistant", None], "redirect_uri": CLIENT_ID},
            form=False,
        )
        done = self._post(
            f"/auth/login_flow/{flow['flow_id']}",
            {"client_id": CLIENT_ID, "username": USER, "password": PASSWORD},
            form=False,
        )
        tokens = self._post(
            "/auth/token",
            {"grant_type": "authorization_code", "code": done["result"], "client_id": CLIENT_ID},
            form=True,
        )
        return str(tokens["access_token"])

    def api(self, method: str, path: str, data: dict[str, Any] | None = None) -> Any:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            None if data is None else json.dumps(data).encode(),
            {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            method=method,
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def states(self) -> dict[str, dict[str, Any]]:
        return {s["entity_id"]: s for s in self.api("GET", "/api/states")}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
