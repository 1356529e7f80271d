"""The inference interface: what the stages ask of models, as typed requests and results.

Stages (:class:`pipeline.camera.CameraPipeline`, :class:`pipeline.judge.Judge`) and the offline commands
depend on :class:`ModelClient` only. Implementations live in :mod:`pipeline.engines`: the batching engine
over in-process transformers models, the client of an OpenAI-compatible server, and a split client that
sends descriptions to one and judging to another.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import numpy as np
import numpy.typing as npt

from pipeline.records import Image
from pipeline.stats import counter


@dataclass(frozen=True, slots=True)
class ChatPrompt:
    """A system instruction and a user turn; engines apply the model's chat template (or plain text).

    The first ``fixed`` characters of ``user`` are shared with other requests (the judge's instructions
    and examples, the same for every window; or a window's report, the same for each rule asked about
    it): an engine may compute them once and reuse their cache.
    """

    system: str
    user: str
    fixed: int = 0


class RequestKind(StrEnum):
    """Kinds of model work, in priority order: scores are one cheap forward pass and gate alerts."""

    SCORE = "score"
    EMBED = "embed"
    DESCRIBE = "describe"
    EXPLAIN = "explain"


@dataclass(frozen=True, slots=True, eq=False)
class DescribeRequest:
    """Describe one frame: greedy decoding of up to ``max_new_tokens``."""

    image: Image
    prompt: str
    max_new_tokens: int

    kind = RequestKind.DESCRIBE

    @property
    def batch_key(self) -> tuple[int, ...]:
        """Requests with equal keys may share a batch."""
        return (self.max_new_tokens,)


@dataclass(frozen=True, slots=True, eq=False)
class EmbedRequest:
    """The vision tower's pooled embedding of one frame (for the semantic gate): no text, no decoding."""

    image: Image

    kind = RequestKind.EMBED

    @property
    def batch_key(self) -> tuple[()]:
        return ()


@dataclass(frozen=True, slots=True)
class ScoreRequest:
    """The next-token distribution over ``answers`` after ``prompt`` (one forward pass), and the judge's
    hidden states of ``pool_layers`` mean-pooled over the window's text: the prompt's tail after its fixed
    head or, with ``pool_head``, the whole prompt (the head's share is computed once with its cache)."""

    prompt: ChatPrompt
    answers: tuple[str, ...]
    pool_layers: tuple[int, ...] = ()
    pool_head: bool = False

    kind = RequestKind.SCORE

    @property
    def batch_key(self) -> tuple[tuple[str, ...], tuple[int, ...]]:
        return (self.answers, self.pool_layers)


@dataclass(frozen=True, slots=True)
class ExplainRequest:
    """Free text after ``prompt`` (greedy), used only for alert explanations."""

    prompt: ChatPrompt
    max_new_tokens: int

    kind = RequestKind.EXPLAIN

    @property
    def batch_key(self) -> tuple[int, ...]:
        return (self.max_new_tokens,)


ModelRequest = DescribeRequest | EmbedRequest | ScoreRequest | ExplainRequest


@dataclass(frozen=True, slots=True)
class DescribeResult:
    text: str


@dataclass(frozen=True, slots=True, eq=False)
class EmbedResult:
    """A unit-length vector: frames that look alike to the model have a cosine similarity near 1."""

    vector: npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True, eq=False)
class ScoreResult:
    """``probs``: one probability per answer, renormalised over the answers; ``pooled``: ``{layer: (hidden,)}``."""

    probs: npt.NDArray[np.float64]
    pooled: Mapping[int, npt.NDArray[np.float32]] = field(default_factory=dict)
    exact: bool = True
    """False when the model gave no probabilities and ``probs`` is its one-token answer (0 or 1)."""


@dataclass(frozen=True, slots=True)
class ExplainResult:
    text: str


ModelResult = DescribeResult | EmbedResult | ScoreResult | ExplainResult


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What a model is and can do, as far as the stages care."""

    name: str
    """A short, secret-free name for logs."""
    fingerprint: str
    """A short hash of the weights (a judge calibration applies to one model only)."""
    images: bool
    """Whether it describes images (a vision-language model)."""
    hidden_states: bool
    """Whether score requests can ask for pooled hidden states (in-process models)."""
    num_layers: int = 0
    hidden_size: int = 0
    embeddings: bool = False
    """Whether embed requests work (the vision tower of an in-process VLM)."""


class ModelClient(Protocol):
    """What the stages ask of models: describe frames, score windows, explain events.

    ``describer`` is None when the client cannot describe frames (a judge-only client); ``judge`` is the
    model that scores and explains. Requests from many cameras may be in flight at once; the
    implementation batches or forwards them. Use it as an async context manager (it starts and stops
    the machinery behind it).
    """

    @property
    def describer(self) -> ModelInfo | None: ...

    @property
    def judge(self) -> ModelInfo: ...

    @property
    def stats(self) -> EngineStats: ...

    @property
    def failure(self) -> BaseException | None:
        """The error that stopped the client for good (its requests then fail with :class:`ModelFailed`)."""
        ...

    async def failed(self) -> BaseException:
        """Wait until the client fails for good (never, for one that cannot); the error."""
        ...

    async def describe(self, request: DescribeRequest) -> DescribeResult: ...

    async def embed(self, request: EmbedRequest) -> EmbedResult: ...

    async def score(self, request: ScoreRequest) -> ScoreResult: ...

    async def explain(self, request: ExplainRequest) -> ExplainResult: ...

    async def __aenter__(self) -> ModelClient: ...

    async def __aexit__(self, *exc: object) -> None: ...


class ModelLoadError(Exception):
    """A model could not be loaded; ``hint`` says what to do about it."""

    def __init__(self, model: str, reason: str, hint: str) -> None:
        self.model = model
        self.reason = reason
        self.hint = hint
        super().__init__(f"cannot load model {model!r}: {reason}. {hint}")


class ModelClosed(Exception):
    """The model client was stopped (the run ends); the request was not served."""


class ModelFailed(Exception):
    """The model client failed for good (a dead engine); the request was not served."""


class ModelUnavailable(Exception):
    """The model (a server) did not answer in time: down, overloaded or too slow; the request was not served."""


class ModelRequestError(Exception):
    """The model refused a request (an answer that retrying will not change)."""


LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def _histogram(bounds: tuple[float, ...]) -> dict[RequestKind, list[int]]:
    return {k: [0] * (len(bounds) + 1) for k in RequestKind}


@dataclass
class EngineStats:
    """What an engine has done; written by its thread, read from any thread.

    ``latency`` and ``batch_sizes`` count batches per bucket of :data:`LATENCY_BUCKETS_S` and
    :data:`BATCH_BUCKETS` (the last slot is everything above). ``prepare_s`` is time spent preparing
    inputs (image processing, tokenisation) and ``prepare_on_model_thread_s`` the part of it that ran on
    the model's own thread.
    """

    batches: dict[RequestKind, int] = field(default_factory=lambda: dict.fromkeys(RequestKind, 0))
    items: dict[RequestKind, int] = field(default_factory=lambda: dict.fromkeys(RequestKind, 0))
    busy_s: dict[RequestKind, float] = field(default_factory=lambda: dict.fromkeys(RequestKind, 0.0))
    latency: dict[RequestKind, list[int]] = field(default_factory=lambda: _histogram(LATENCY_BUCKETS_S))
    batch_sizes: dict[RequestKind, list[int]] = field(default_factory=lambda: _histogram(BATCH_BUCKETS))
    errors: int = counter("Model requests that failed", metric="model_errors")
    retries: int = counter("Failed batches tried again in halves", metric="model_retries")
    restarts: int = counter("Times the model thread died and was restarted", metric="model_restarts")
    outages: int = counter("Times a model server stopped answering", metric="model_server_outages")
    prepare_s: float = counter("Seconds spent preparing inputs", metric="model_prepare_seconds")
    prepare_on_model_thread_s: float = counter(
        "Of those, seconds on the model's own thread", metric="model_prepare_on_model_thread_seconds"
    )

    def record(self, kind: RequestKind, size: int, seconds: float) -> None:
        self.batches[kind] += 1
        self.items[kind] += size
        self.busy_s[kind] += seconds
        self.latency[kind][bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self.batch_sizes[kind][bisect.bisect_left(BATCH_BUCKETS, size)] += 1
