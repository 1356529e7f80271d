from __future__ import annotations

from pathlib import Path

import pytest

from monitor.cli import main
from monitor.config import AppConfig, ConfigError, load, validate
from monitor.options import sources_as_cameras
from pipeline.queues import Backpressure

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_config_is_valid() -> None:
    cfg = load(ROOT / "config.toml")
    assert cfg.model.id == "google/gemma-3-4b-it"
    assert cfg.windows.size == 1 and cfg.windows.stride == 1  # what the calibration was fitted for
    assert cfg.sampling.every_n_frames == 10
    (cam,) = cfg.cameras
    assert Path(cam.url).is_absolute()  # made relative to the config file's folder
    assert cam.realtime and cam.loop and cam.queue_policy is Backpressure.DROP_OLDEST


def test_defaults_and_frozen() -> None:
    cfg = AppConfig()
    with pytest.raises(Exception, match="frozen"):
        cfg.model.max_batch = 3  # type: ignore[misc]


def problems(data: dict, env: dict[str, str] | None = None) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        validate(data, source="t.toml", env=env or {})
    return list(info.value.problems)


def test_unknown_key_names_its_path() -> None:
    (p,) = problems({"cameras": [{"name": "a", "url": "x.mp4", "fsp": 2}]})
    assert p == ("cameras.0.fsp", "unknown key")


def test_wrong_type_names_key_and_value() -> None:
    ((key, msg),) = problems({"model": {"max_batch": "lots"}})
    assert key == "model.max_batch"
    assert "'lots'" in msg


def test_cross_field_validation() -> None:
    ((key, msg),) = problems({"windows": {"size": 2, "stride": 3}})
    assert key == "windows" and "stride" in msg
    ((key, msg),) = problems({"alerting": {"threshold": 0.3, "hysteresis": 0.4}})
    assert key == "alerting" and "hysteresis" in msg
    ((key, msg),) = problems({"cameras": [{"name": "a", "url": "1"}, {"name": "a", "url": "2"}]})
    assert key == "cameras" and "repeated: a" in msg
    ((key, _),) = problems({"cameras": [{"name": "bad name", "url": "1"}]})
    assert key == "cameras.0.name"
    ((key, msg),) = problems({"judge": {"prompt": "no placeholder"}})
    assert key == "judge.prompt" and "{descriptions}" in msg
    ((key, msg),) = problems({"judge": {"prompt": "{descriptions} {oops}"}})
    assert "oops" in msg


def test_env_substitution_for_secrets() -> None:
    data = {"cameras": [{"name": "a", "url": "rtsp://u:${CAM_PW}@h/s"}]}
    cfg = validate(data, env={"CAM_PW": "s3cret"})
    assert cfg.cameras[0].url == "rtsp://u:s3cret@h/s"
    assert cfg.cameras[0].is_live and cfg.cameras[0].queue_policy is Backpressure.DROP_OLDEST
    assert problems(data) == [("cameras.0.url", "environment variable CAM_PW is not set")]


def test_per_camera_sampling_overrides() -> None:
    cfg = validate(
        {
            "sampling": {"every_n_frames": 5},
            "cameras": [
                {"name": "file", "url": "a.mp4"},
                {"name": "cam", "url": "rtsp://h/s", "sampling": {"fps": 2.0}},
                {"name": "k", "url": "b.mp4", "sampling": {"every_n_frames": 3, "motion_gate": True}},
            ],
        },
        env={},
    )
    f, c, k = (cam.sampling for cam in cfg.cameras)
    assert (f.every_n_frames, f.fps, f.motion_gate) == (5, None, False)  # files: gate off by default
    assert (c.fps, c.motion_gate) == (2.0, True)  # live: gate on by default
    assert (k.every_n_frames, k.fps, k.motion_gate) == (3, None, True)
    assert cfg.cameras[0].queue_policy is Backpressure.WAIT


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nid=1")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load(bad)


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(ROOT / "config.toml")]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "c.toml"
    bad.write_text('[alerting]\nthreshold = "high"\n')
    assert main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {bad}: alerting.threshold: expected a number, not a text (got 'high')"]
    assert main(["check-config", str(tmp_path / "nope.toml")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_sources_become_cameras() -> None:
    cams = sources_as_cameras(AppConfig(), ["/v/a b.mp4", "/w/a b.mp4", "rtsp://user:pw@cam.local:554/live/main"])
    assert [c.name for c in cams] == ["a-b", "a-b-2", "main"]
    assert [c.is_live for c in cams] == [False, False, True]
    assert not any(c.loop or c.realtime for c in cams)
