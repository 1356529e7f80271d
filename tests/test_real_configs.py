"""The README's "Real descriptions" configurations, run as written with the test models in place of Gemma 3
4B: the server one against a real OpenAI-compatible server (``transformers serve`` with the tiny VLM), the
in-process one on the CPU."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cli import ROOT, monitor_command
from tests.helpers.media import make_clip
from tests.helpers.model_servers import ModelServer, transformers_server

pytestmark = pytest.mark.slow


def readme_config(name: str) -> str:
    """The README's TOML block marked ``# real-descriptions: NAME``."""
    blocks = re.findall(r"```toml\n(# real-descriptions: (\S+)\n.*?)```", (ROOT / "README.md").read_text(), re.S)
    found = {label: text for text, label in blocks}
    assert name in found, f"no README block '# real-descriptions: {name}' (found {sorted(found)})"
    return found[name]


def replaced(text: str, key: str, value: str) -> str:
    """``text`` with the value of ``key = ...`` replaced (the key must be there)."""
    out, n = re.subn(rf"(?m)^{re.escape(key)} = .*$", f"{key} = {json.dumps(value)}", text)
    assert n == 1, f"{key} is not in the README's configuration"
    return out


@pytest.fixture(scope="module")
def vlm_server(tiny_vlm: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    server = transformers_server(tiny_vlm, tmp_path_factory.mktemp("tserve")).start(timeout=180)
    yield server
    server.stop()


def run_config(text: str, tmp_path: Path) -> tuple[list[dict[str, object]], str]:
    """Check and run a configuration on a 6 s clip: its result lines, and what check-config said."""
    cfg = tmp_path / "real.toml"
    cfg.write_text(text + "\n[store]\nenabled = false\n[mqtt]\nenabled = false\n")
    clip = make_clip(tmp_path / "c.mp4", seconds=6, fps=10)
    out = tmp_path / "out"
    check = subprocess.run(monitor_command("check-config", cfg), capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    r = subprocess.run(
        monitor_command("run", "--config", cfg, "--source", clip, "--output", out, "--max-seconds", 300),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()], check.stdout


def test_the_server_configuration(vlm_server: ModelServer, tmp_path: Path) -> None:
    text = readme_config("server")
    text = replaced(replaced(text, "base_url", vlm_server.base_url), "model", vlm_server.command[2])
    lines, checked = run_config(text, tmp_path)
    assert (
        f"judge: {vlm_server.command[2]} on {vlm_server.base_url} (a server: the VLM itself; no calibration" in checked
    )
    described = [x for x in lines if x["kind"] == "description"]
    assert len(described) == 2 and all(x["text"] for x in described)  # fps 0.2 over 6 s: at 0 s and 5 s
    assert [x for x in lines if x["kind"] == "score"]


def test_the_in_process_configuration(tiny_vlm: Path, tmp_path: Path) -> None:
    text = readme_config("in-process")
    text = replaced(replaced(replaced(text, "id", str(tiny_vlm)), "device", "cpu"), "dtype", "float32")
    lines, checked = run_config(text, tmp_path)
    assert f"judge: the VLM itself ({tiny_vlm}) (in process); no calibration (the prompt alone)" in checked
    assert [x for x in lines if x["kind"] == "description"] and [x for x in lines if x["kind"] == "score"]
