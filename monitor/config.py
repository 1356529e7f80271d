"""Typed configuration: ``config.toml`` validated once, at start-up, into frozen objects."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.queues import Backpressure

LIVE_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp"})

DEFAULT_DESCRIBE_PROMPT = (
    "You are watching a frame from a fixed security camera. In one or two short sentences, describe the "
    "people, vehicles and objects you see and what they are doing. Mention anything unusual, dangerous "
    "or violent. Be factual; do not speculate."
)
DEFAULT_JUDGE_SYSTEM = (
    "Security camera event reports, each rated for whether it shows an anomaly (crime, violence, an "
    "accident, fire, vandalism, theft, or another dangerous or unusual event)."
)
JUDGE_EXAMPLES_BASIC = """Report: A woman walks her dog along the sidewalk.
Anomaly: no

Report: A man breaks the car window with a rock and takes a bag from the seat.
Anomaly: yes

Report: Customers wait in line at the counter and pay for their items.
Anomaly: no

Report: Two men punch and kick each other in the parking lot until one falls down.
Anomaly: yes

Report: A car drives slowly down the street and parks.
Anomaly: no

Report: Flames and thick smoke come out of the building's windows.
Anomaly: yes

"""
JUDGE_EXAMPLES_MORE = """Report: A man in a red shirt walks into the store and looks at the shelves.
Anomaly: no

Report: A police car drives past the building with its lights on.
Anomaly: no

Report: A man points a gun at the cashier and takes money from the register.
Anomaly: yes

Report: Two cars collide at the crossing and one of them overturns.
Anomaly: yes

Report: People sit on a bench and talk while children play nearby.
Anomaly: no

Report: A man climbs over the fence at night and tries to open the back door with a tool.
Anomaly: yes

"""
JUDGE_TARGET = "{context}Report: {descriptions}\nAnomaly:"
DEFAULT_JUDGE_PROMPT = JUDGE_EXAMPLES_MORE + JUDGE_EXAMPLES_BASIC + JUDGE_TARGET
"""The judge prompt: 12 examples (docs/judge.md), then the window's report."""
DEFAULT_EXPLAIN_PROMPT = (
    "{context}Camera observations, oldest first:\n{descriptions}\n\n"
    "In one short sentence, say what is anomalous here and why it matters."
)


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Device = Literal["auto", "cuda", "cpu"]
DType = Literal["auto", "bfloat16", "float16", "float32"]


class ModelConfig(_Section):
    """The vision-language model that describes frames (and, by default, judges them)."""

    id: str = Field("google/gemma-3-4b-it", min_length=1, title="Hub id or local directory")
    revision: str | None = Field(None, title="Hub revision (branch, tag or commit)")
    device: Device = Field("auto", title="auto picks CUDA when available")
    dtype: DType = Field("auto", title="auto: bfloat16 on CUDA, float32 on CPU")
    attn_implementation: Literal["sdpa", "eager"] = "sdpa"
    max_batch: int = Field(8, ge=1, le=256, title="Most requests served by one model call")
    max_wait_ms: float = Field(50.0, ge=0, le=10_000, title="Longest wait to fill a batch")
    max_new_tokens: int = Field(64, ge=1, le=1024, title="Longest frame description, in tokens")
    image_max_side: int = Field(896, ge=32, le=4096, title="Frames are scaled down to at most this many pixels")
    prompt: str = Field(DEFAULT_DESCRIBE_PROMPT, min_length=1, title="Frame description prompt")


class JudgeConfig(_Section):
    """The language model that scores windows of descriptions."""

    model: str | None = Field(None, title="Text-only judge model (hub id or directory); unset: the VLM itself")
    revision: str | None = None
    device: Device | None = Field(None, title="Defaults to the model's device")
    dtype: DType | None = Field(None, title="Defaults to the model's dtype")
    system: str = Field(DEFAULT_JUDGE_SYSTEM, title="Instructions placed before the prompt")
    prompt: str = Field(DEFAULT_JUDGE_PROMPT, title="Judge prompt; {descriptions} and {context} are filled in")
    answers: tuple[str, ...] = Field(
        ("no", "yes"),
        min_length=2,
        title="Answer words (one token each), lowest anomaly first; the score is their probability-weighted "
        "rank in [0, 1] (with two answers: p(yes))",
    )
    chat_template: Literal["auto", "always", "never"] = Field(
        "auto", title="Wrap prompts in the tokenizer's chat template (auto: when it has one)"
    )
    explain_prompt: str = Field(DEFAULT_EXPLAIN_PROMPT, title="Prompt for the explanation of an alert")
    explain_max_new_tokens: int = Field(48, ge=1, le=512)
    cache_size: int = Field(512, ge=0, le=1_000_000, title="Windows whose score is remembered (0: off)")
    smoothing: float = Field(
        0.5, gt=0, le=1, title="Causal moving average of each camera's window scores: weight of the newest (1: off)"
    )
    calibration: Path | None = Field(
        None, title="A calibration file written by `monitor calibrate-judge` for this judge model"
    )

    @field_validator("prompt", "explain_prompt")
    @classmethod
    def _has_descriptions(cls, value: str) -> str:
        if "{descriptions}" not in value:
            raise ValueError("must contain the placeholder {descriptions}")
        _check_placeholders(value)
        return value

    @field_validator("answers")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("answers must be distinct")
        return value


def _check_placeholders(template: str) -> None:
    unknown = set(re.findall(r"{([^{}]*)}", template)) - {"descriptions", "context"}
    if unknown:
        raise ValueError(f"unknown placeholder(s) {sorted(unknown)}; use {{descriptions}} and {{context}}")


class SamplingConfig(_Section):
    """Which frames reach the model."""

    every_n_frames: int = Field(10, ge=1, le=10_000, title="Describe every Kth decoded frame (LLMVAD's K)")
    fps: float | None = Field(None, gt=0, le=120, title="Target sampling rate; replaces every_n_frames when set")
    motion_gate: bool | None = Field(None, title="Skip unchanged scenes; unset: on for live cameras, off for files")
    motion_threshold: float = Field(
        0.02, ge=0, le=1, title="Share (0-1) of a 64-px grey thumbnail that must change for a fresh description"
    )
    motion_max_reuse_s: float = Field(60.0, gt=0, title="Describe anew at least this often, even if nothing moved")


class CameraConfig(_Section):
    """One source: a live camera (RTSP, HTTP/HLS) or a video file."""

    name: Name
    url: str = Field(min_length=1, title="rtsp://, http(s):// or a file path")
    live: bool | None = Field(None, title="Live source (drop oldest, reconnect); unset: guessed from the URL")
    realtime: bool = Field(False, title="Pace a file at its own frame rate, like a camera")
    loop: bool = Field(False, title="Start a file again at its end")
    every_n_frames: int | None = Field(None, ge=1, le=10_000)
    fps: float | None = Field(None, gt=0, le=120)
    motion_gate: bool | None = None
    prompt: str | None = Field(None, min_length=1, title="Overrides model.prompt for this camera")
    judge_prompt: str | None = Field(None, title="Overrides judge.prompt for this camera")
    context: str | None = Field(None, title='What the camera shows, e.g. "a parking lot"; given to the judge')
    queue_size: int = Field(8, ge=1, le=10_000, title="Frames held between decoding and the model")
    backpressure: Backpressure | None = Field(None, title="wait, drop_oldest or drop_latest; unset: by source kind")
    open_timeout_s: float = Field(10.0, gt=0, le=600)
    read_timeout_s: float = Field(10.0, gt=0, le=600)
    reconnect_initial_s: float = Field(1.0, gt=0, le=600)
    reconnect_max_s: float = Field(30.0, gt=0, le=3600)
    rtsp_transport: Literal["tcp", "udp"] = "tcp"

    @field_validator("judge_prompt")
    @classmethod
    def _judge_prompt(cls, value: str | None) -> str | None:
        if value is not None:
            if "{descriptions}" not in value:
                raise ValueError("must contain the placeholder {descriptions}")
            _check_placeholders(value)
        return value

    @model_validator(mode="after")
    def _backoff(self) -> CameraConfig:
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must not be below reconnect_initial_s")
        return self

    @property
    def is_live(self) -> bool:
        """Whether this source is a live stream (explicit, or by its URL scheme)."""
        if self.live is not None:
            return self.live
        return urlsplit(self.url).scheme.lower() in LIVE_SCHEMES

    @property
    def queue_policy(self) -> Backpressure:
        """The frame queue policy: drop the oldest frame for live and paced sources, wait for files."""
        if self.backpressure is not None:
            return self.backpressure
        return Backpressure.DROP_OLDEST if self.is_live or self.realtime else Backpressure.WAIT


class WindowConfig(_Section):
    """Sliding windows of descriptions that the judge scores."""

    size: int = Field(3, ge=1, le=64, title="Descriptions per window (LLMVAD: 3)")
    stride: int = Field(2, ge=1, le=64, title="New descriptions between windows (LLMVAD: 2)")

    @model_validator(mode="after")
    def _stride(self) -> WindowConfig:
        if self.stride > self.size:
            raise ValueError(f"stride ({self.stride}) must not exceed size ({self.size}): descriptions would be lost")
        return self


class AlertConfig(_Section):
    """How window scores become events."""

    threshold: float = Field(0.7, gt=0, le=1, title="An event starts when a window scores at least this")
    hysteresis: float = Field(0.1, ge=0, lt=1, title="It ends when the score falls below threshold - hysteresis")
    min_duration_s: float = Field(0.0, ge=0, title="The score must stay high this long before an event starts")
    cooldown_s: float = Field(30.0, ge=0, title="No new event on a camera this long after its last one ended")
    snapshot_quality: int = Field(85, ge=10, le=100, title="JPEG quality of event snapshots")

    @model_validator(mode="after")
    def _hysteresis(self) -> AlertConfig:
        if self.hysteresis >= self.threshold:
            raise ValueError(f"hysteresis ({self.hysteresis}) must be below threshold ({self.threshold})")
        return self


class OutputConfig(_Section):
    """Where results go."""

    dir: Path = Field(Path("runs/latest"), title="Folder for JSON lines and snapshots")
    jsonl: bool = Field(True, title="Write results.jsonl: one line per description, score and event change")
    log_descriptions: bool = Field(False, title="Log every description at INFO (scores and events always are)")
    status_interval_s: float = Field(5.0, gt=0, le=3600, title="How often camera status is reported")
    sink_queue_size: int = Field(1000, ge=1, le=1_000_000, title="Records buffered per sink before dropping")


TopicPart = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")]


class TlsConfig(_Section):
    """TLS towards the broker."""

    ca_file: Path | None = Field(None, title="CA certificate(s) to trust (PEM); unset: the system's")
    cert_file: Path | None = Field(None, title="Client certificate (PEM), for brokers that require one")
    key_file: Path | None = Field(None, title="Client private key (PEM)")
    insecure: bool = Field(False, title="Skip certificate and host name checks (testing only)")

    @model_validator(mode="after")
    def _pairs(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class MqttConfig(_Section):
    """Alerts and state over MQTT (Frigate / Home Assistant conventions)."""

    enabled: bool = Field(False, title="Publish to an MQTT broker")
    host: str = Field("127.0.0.1", min_length=1, max_length=253)
    port: int = Field(1883, ge=1, le=65535)
    client_id: str = Field("llmvad-monitor", min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    topic_prefix: TopicPart = Field("llmvad", title="All topics start with this")
    username: str | None = Field(None, min_length=1, max_length=1024)
    password: str | None = Field(None, max_length=1024, title="Use ${ENV_VAR} rather than writing it here")
    tls: TlsConfig | None = Field(None, title="Set (even empty: [mqtt.tls]) to connect with TLS")
    keepalive_s: int = Field(30, ge=5, le=3600)
    discovery: bool = Field(True, title="Home Assistant MQTT discovery")
    discovery_prefix: TopicPart = "homeassistant"
    outbox: Path = Field(Path("state/mqtt-outbox.sqlite"), title="Alerts wait here until the broker has them")
    reconnect_initial_s: float = Field(1.0, gt=0, le=600)
    reconnect_max_s: float = Field(30.0, gt=0, le=3600)
    snapshot_max_bytes: int = Field(4_000_000, ge=1024, le=256_000_000, title="Larger snapshots are not sent")

    @model_validator(mode="after")
    def _checks(self) -> MqttConfig:
        if self.password is not None and self.username is None:
            raise ValueError("password given without username")
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must not be below reconnect_initial_s")
        return self


class StoreConfig(_Section):
    """The event history (SQLite, WAL)."""

    enabled: bool = Field(True, title="Keep descriptions, scores and events")
    path: Path = Field(Path("state/events.sqlite"))
    max_age_days: float = Field(30.0, gt=0, le=36_500, title="Older rows are deleted")
    max_size_mb: float = Field(2048.0, gt=0, le=10_000_000, title="Oldest rows go first beyond this size")
    descriptions: bool = Field(True, title="Also keep every description (not only scores and events)")


class MetricsConfig(_Section):
    """The Prometheus endpoint."""

    port: int | None = Field(None, ge=1, le=65535, title="Serve /metrics on this port; unset: off")
    address: str = Field("127.0.0.1", min_length=1, title="Address to listen on (0.0.0.0 for all)")


class AppConfig(_Section):
    """The whole configuration."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    model: ModelConfig = ModelConfig()
    judge: JudgeConfig = JudgeConfig()
    sampling: SamplingConfig = SamplingConfig()
    windows: WindowConfig = WindowConfig()
    alerting: AlertConfig = AlertConfig()
    outputs: OutputConfig = OutputConfig()
    mqtt: MqttConfig = MqttConfig()
    store: StoreConfig = StoreConfig()
    metrics: MetricsConfig = MetricsConfig()
    cameras: tuple[CameraConfig, ...] = ()

    @field_validator("cameras")
    @classmethod
    def _unique_names(cls, value: tuple[CameraConfig, ...]) -> tuple[CameraConfig, ...]:
        names = [c.name for c in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"camera names must be unique; repeated: {', '.join(dupes)}")
        return value

    def sampling_for(self, camera: CameraConfig) -> SamplingConfig:
        """The sampling settings of one camera: its overrides on top of ``[sampling]``."""
        base = self.sampling
        fps = camera.fps if camera.fps is not None else (None if camera.every_n_frames else base.fps)
        gate = camera.motion_gate if camera.motion_gate is not None else base.motion_gate
        return base.model_copy(
            update={
                "every_n_frames": camera.every_n_frames or base.every_n_frames,
                "fps": fps,
                "motion_gate": camera.is_live if gate is None else gate,
            }
        )


class ConfigError(Exception):
    """The configuration is unusable; ``problems`` holds ``(key path, message)`` pairs."""

    def __init__(self, source: str, problems: Sequence[tuple[str, str]]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{source}: {key}: {msg}" if key else f"{source}: {msg}" for key, msg in problems))


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _substitute_env(value: Any, path: str, env: Mapping[str, str], problems: list[tuple[str, str]]) -> Any:
    """Replace ``${NAME}`` in strings by environment variables (for secrets such as camera passwords)."""
    if isinstance(value, str):

        def repl(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                problems.append((path, f"environment variable {name} is not set"))
                return ""
            return env[name]

        return _ENV_REF.sub(repl, value)
    if isinstance(value, dict):
        return {k: _substitute_env(v, f"{path}.{k}" if path else k, env, problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute_env(v, f"{path}.{i}", env, problems) for i, v in enumerate(value)]
    return value


def _format_loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _value_at(data: Any, loc: tuple[int | str, ...]) -> tuple[bool, Any]:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return False, None
    return True, data


def validate(data: Mapping[str, Any], *, source: str = "config", env: Mapping[str, str] | None = None) -> AppConfig:
    """Validate a parsed configuration mapping; raise :class:`ConfigError` naming every bad key."""
    problems: list[tuple[str, str]] = []
    data = _substitute_env(dict(data), "", os.environ if env is None else env, problems)
    if problems:
        raise ConfigError(source, problems)
    try:
        return AppConfig.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            found, value = _value_at(data, loc)
            if found and err["type"] != "extra_forbidden" and not isinstance(value, dict | list):
                shown = repr(value)
                msg = f"{msg} (got {shown[:80] + '...' if len(shown) > 80 else shown})"
            problems.append((_format_loc(loc), msg))
        raise ConfigError(source, problems) from None


def _resolve_paths(cfg: AppConfig, base: Path) -> AppConfig:
    """Make file paths relative to the config file's folder; check that TLS files exist."""

    def rel(p: Path) -> Path:
        return p if p.is_absolute() else base / p

    cameras = tuple(
        cam
        if cam.is_live or Path(cam.url).is_absolute()
        else cam.model_copy(update={"url": os.path.normpath(base / cam.url)})
        for cam in cfg.cameras
    )
    mqtt = cfg.mqtt.model_copy(update={"outbox": rel(cfg.mqtt.outbox)})
    if cfg.mqtt.tls is not None:
        tls = cfg.mqtt.tls
        files = {
            k: rel(v)
            for k, v in (("ca_file", tls.ca_file), ("cert_file", tls.cert_file), ("key_file", tls.key_file))
            if v is not None
        }
        missing = [(f"mqtt.tls.{k}", f"file not found: {v}") for k, v in files.items() if not v.is_file()]
        if missing and cfg.mqtt.enabled:
            raise ConfigError(str(base), missing)
        mqtt = mqtt.model_copy(update={"tls": tls.model_copy(update=files)})
    judge = cfg.judge
    if judge.calibration is not None:
        from monitor.probe import JudgeCalibration

        judge = judge.model_copy(update={"calibration": rel(judge.calibration)})
        assert judge.calibration is not None
        try:
            JudgeCalibration.load(judge.calibration)
        except ValueError as exc:
            raise ConfigError(str(base), [("judge.calibration", str(exc))]) from None
    return cfg.model_copy(
        update={
            "judge": judge,
            "cameras": cameras,
            "outputs": cfg.outputs.model_copy(update={"dir": rel(cfg.outputs.dir)}),
            "mqtt": mqtt,
            "store": cfg.store.model_copy(update={"path": rel(cfg.store.path)}),
        }
    )


def load(path: Path | str, *, env: Mapping[str, str] | None = None) -> AppConfig:
    """Read and validate a TOML configuration file; relative paths in it are relative to its folder."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(str(path), [("", "file not found")]) from None
    except OSError as exc:
        raise ConfigError(str(path), [("", f"cannot read: {exc.strerror}")]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(str(path), [("", "not UTF-8 text")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [("", f"invalid TOML: {exc}")]) from None
    cfg = validate(data, source=str(path), env=env)
    try:
        return _resolve_paths(cfg, path.resolve().parent)
    except ConfigError as exc:
        raise ConfigError(str(path), exc.problems) from None
