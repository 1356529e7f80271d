from __future__ import annotations

import logging
from pathlib import Path

import pytest

from monitor.env import hf_token, load_env_file, secrets_to_hide
from monitor.logs import setup_logging
from pipeline.redaction import RedactingFilter, redact_text, redact_url


def test_redact_url() -> None:
    assert redact_url("rtsp://admin:hunter2@10.0.0.5:554/s1") == "rtsp://admin:***@10.0.0.5:554/s1"
    assert redact_url("rtsp://token@cam/s") == "rtsp://***@cam/s"
    assert redact_url("/videos/a.mp4") == "/videos/a.mp4"
    assert redact_url("http://cam.local/live.m3u8") == "http://cam.local/live.m3u8"


def test_redact_text_masks_urls_and_known_secrets() -> None:
    text = "open rtsp://u:p4ss@h/x failed; token hf_abcdefgh used; short 'ab' kept"
    assert redact_text(text, ["hf_abcdefgh", "ab"]) == ("open rtsp://u:***@h/x failed; token *** used; short 'ab' kept")


@pytest.fixture
def restore_logging() -> object:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_filter_scrubs_messages_args_and_tracebacks(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("DEBUG", ["hf_SECRET123"])
    log = logging.getLogger("test.redaction")
    log.info("loading with %s from %s", "hf_SECRET123", "rtsp://a:b3c@h/s")
    try:
        raise RuntimeError("cannot open rtsp://a:b3c@h/s with hf_SECRET123")
    except RuntimeError:
        log.exception("failed")
    err = capsys.readouterr().err
    assert "hf_SECRET123" not in err and "b3c" not in err
    assert "loading with *** from rtsp://a:***@h/s" in err and "RuntimeError: cannot open rtsp://a:***@h/s" in err
    assert isinstance(logging.getLogger().handlers[0].filters[0], RedactingFilter)


def test_token_from_env_or_dotenv(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    dotenv = tmp_path / ".env"
    dotenv.write_text("HUGGINGFACE_API_KEY=hf_fromfile\nOTHER=1\n")
    assert load_env_file(dotenv, env)
    assert hf_token(env) == "hf_fromfile"
    env["HF_TOKEN"] = "hf_fromenv"
    assert hf_token(env) == "hf_fromenv"
    env2 = {"HUGGINGFACE_API_KEY": "hf_set"}
    load_env_file(dotenv, env2)
    assert env2["HUGGINGFACE_API_KEY"] == "hf_set"  # the environment wins over the file
    assert not load_env_file(tmp_path / "missing", env2)
    assert sorted(secrets_to_hide(["rtsp://u:p%40ss@h/s", "/a.mp4"], {"HF_TOKEN": "hf_x1234"})) == [
        "hf_x1234",
        "p%40ss",
        "p@ss",
    ]
