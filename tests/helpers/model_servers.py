"""Real OpenAI-compatible model servers that tests start on a free loopback port: llama.cpp's serving the
Gemma 3 270M GGUF, and ``transformers serve`` serving a local model."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.broker import free_port


class ModelServer:
    """A server process; ``start`` waits until ``GET /v1/models`` answers, ``stop`` kills it."""

    def __init__(self, name: str, command: list[str], port: int, log: Path) -> None:
        self.name = name
        self.command = command
        self.port = port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 120.0) -> ModelServer:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"{self.name} exited ({self.proc.returncode}): {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.base_url + "/models", timeout=2) as r:
                    json.loads(r.read())
                    return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        pytest.fail(f"{self.name} did not answer within {timeout:.0f} s: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """Kill it (SIGKILL: a server that dies, not one that says goodbye)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


LLAMA_SERVER = Path(__file__).resolve().parents[2] / ".tools" / "bin" / "llama-server"


def llama_server(
    gguf: Path, workdir: Path, *, n_ctx: int = 2048, port: int | None = None, parallel: int = 1
) -> ModelServer:
    """llama.cpp's own OpenAI-compatible server (built by scripts/test_setup.sh from the llama.cpp that the PyPI
    package llama-cpp-python vendors) on a GGUF file; the model is called ``gemma3-270m``. ``--swa-full``
    keeps Gemma 3's sliding-window layers whole, without which llama.cpp cannot reuse a cached prompt head."""
    binary = Path(os.environ.get("LLAMA_SERVER", LLAMA_SERVER))
    if not binary.is_file():
        pytest.fail(f"llama.cpp's server is missing at {binary}: run scripts/test_setup.sh")
    port = port or free_port()
    command = [
        str(binary), "-m", str(gguf), "--alias", "gemma3-270m", "--host", "127.0.0.1", "--port", str(port),
        "-c", str(n_ctx * parallel), "-t", "2", "-np", str(parallel), "--no-webui", "--swa-full",
    ]  # fmt: skip
    return ModelServer("llama.cpp server", command, port, workdir / f"llama-{port}.log")


def transformers_server(model_dir: Path, workdir: Path, *, port: int | None = None) -> ModelServer:
    """``transformers serve MODEL_DIR`` (its own OpenAI-compatible server, on the CPU)."""
    exe = shutil.which("transformers", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.fail("the transformers CLI is not installed in the venv: run scripts/test_setup.sh")
    port = port or free_port()
    command = [exe, "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    return ModelServer("transformers serve", command, port, workdir / f"transformers-{port}.log")
