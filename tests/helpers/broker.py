"""A Mosquitto broker of the test's own, on a free loopback port (so it can be stopped and restarted)."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

PORTS = range(20_000, 32_000)
"""Below the kernel's ephemeral range (32768-60999 on Linux by default), from which every client socket's
port comes: a port found free here is not taken by some connection before the service binds it."""
_given: set[int] = set()


def free_port() -> int:
    """A loopback port nobody listens on, never given twice by this process (no find-then-bind race with
    the ephemeral ports of clients; a service that still finds it taken is started on another, see
    :meth:`Broker.start`)."""
    rng = random.Random()
    for _ in range(1000):
        port = rng.choice(PORTS)
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError("no free loopback port")


class Broker:
    """``mosquitto -c CONF`` with persistence in ``workdir`` (sessions survive a restart)."""

    def __init__(self, workdir: Path, *, extra: str = "", anonymous: bool = True) -> None:
        self.binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(self.binary).exists():
            pytest.fail("mosquitto is not installed: run scripts/setup.sh (apt-get install mosquitto)")
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.settings = (
            f"allow_anonymous {'true' if anonymous else 'false'}\n"
            f"persistence true\npersistence_location {workdir}/\n"
            f"log_dest file {workdir}/mosquitto.log\n" + ("user root\n" if os.geteuid() == 0 else "") + extra
            # as root, mosquitto would switch to the "mosquitto" user, who cannot write the test's folder
        )
        self._listen_on(free_port())
        self._ever_started = False
        self.proc: subprocess.Popen[bytes] | None = None

    def _listen_on(self, port: int) -> None:
        self.port = port
        self.conf.write_text(f"listener {port} 127.0.0.1\n" + self.settings)

    def start(self) -> Broker:
        """Start it: again on the same port after :meth:`stop`; the first time on another free port if its
        own was taken meanwhile."""
        for _ in range(5):
            if self._started():
                self._ever_started = True
                return self
            why = self._why()
            if self._ever_started or "in use" not in why:
                pytest.fail(f"mosquitto did not start: {why}")
            self._listen_on(free_port())
        pytest.fail(f"mosquitto did not start: {self._why()}")

    def _why(self) -> str:
        err = self.proc.stderr.read().decode() if self.proc is not None and self.proc.stderr else ""
        log = (self.workdir / "mosquitto.log").read_text() if (self.workdir / "mosquitto.log").exists() else ""
        return f"{err} {log[-2000:]}"

    def _started(self) -> bool:
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                time.sleep(0.05)
        pytest.fail("mosquitto did not start listening")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None
