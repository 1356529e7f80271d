"""A real GStreamer RTSP server for tests (tests/helpers/rtsp_server.py under the system Python, which has
gi), that can be stopped and started again on the same port."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers.broker import free_port

SERVER = Path(__file__).parent / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"


class RtspServer:
    """Runs tests/helpers/rtsp_server.py under the system Python; can be stopped and started again."""

    def __init__(self, clip: Path) -> None:
        self.clip = clip
        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None

    def url(self, userinfo: str = "") -> str:
        return f"rtsp://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}/test"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(SERVER), str(self.port), "test", str(self.clip)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != "READY":
            err = self.proc.stderr.read() if self.proc.stderr else ""
            pytest.fail(
                f"the GStreamer RTSP server did not start ({line!r}): {err[-1500:]}\nInstall Debian's "
                "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad"
            )

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None
