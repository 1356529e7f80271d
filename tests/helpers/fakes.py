"""A fake model for unit tests of scheduling logic (the integration tests use real Gemma 3)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from pipeline.engines.batching import BatchingEngine, Prepared
from pipeline.inference import (
    ChatPrompt,
    DescribeRequest,
    DescribeResult,
    EmbedRequest,
    EmbedResult,
    ExplainRequest,
    ExplainResult,
    ModelInfo,
    ModelRequest,
    ScoreRequest,
    ScoreResult,
)
from pipeline.records import Image


class _Input(Prepared):
    __slots__ = ("request",)

    def __init__(self, request: ModelRequest) -> None:
        self.request = request


class FakeModel:
    """Describes an image by its mean brightness; scores 1 when the prompt holds "ALARM", else 0.

    Every request it serves is kept in ``requests`` and every batch in ``batches`` (kind, size).
    """

    info = ModelInfo("fake", "fake", images=True, hidden_states=True, num_layers=4, hidden_size=2, embeddings=True)

    def __init__(self, *, delay_s: float = 0.0, per_item_s: float = 0.0, fail_on: str | None = None) -> None:
        self.delay_s = delay_s
        self.per_item_s = per_item_s
        self.fail_on = fail_on
        self.batches: list[tuple[str, int]] = []
        self.requests: list[ModelRequest] = []
        self.threads: set[str] = set()
        self.prepare_threads: set[str] = set()
        self._lock = threading.Lock()

    def prepare(self, request: ModelRequest) -> Prepared:
        with self._lock:
            self.prepare_threads.add(threading.current_thread().name)
        return _Input(request)

    def _work(self, kind: str, batch: Sequence[Prepared], cancel: threading.Event | None = None) -> list[ModelRequest]:
        requests = [p.request for p in batch if isinstance(p, _Input)]
        with self._lock:
            self.batches.append((kind, len(requests)))
            self.requests.extend(requests)
            self.threads.add(threading.current_thread().name)
        (cancel or threading.Event()).wait(self.delay_s + self.per_item_s * len(requests))  # generation stops
        return requests

    def describe_image(self, image: Image, prompt: str) -> str:
        return f"brightness {int(image.mean()) // 8}"

    def describe(
        self, batch: Sequence[Prepared], max_new_tokens: int, cancel: threading.Event | None = None
    ) -> list[DescribeResult]:
        out = []
        for r in self._work("describe", batch, cancel):
            assert isinstance(r, DescribeRequest)
            if self.fail_on and self.fail_on in r.prompt:
                raise RuntimeError("fake failure")
            out.append(DescribeResult(self.describe_image(r.image, r.prompt)))
        return out

    def embed(self, batch: Sequence[Prepared]) -> list[EmbedResult]:
        """The mean colour of each third of the image, unit length: alike for frames that look alike."""
        out = []
        for r in self._work("embed", batch):
            assert isinstance(r, EmbedRequest)
            parts = np.array_split(r.image.astype(np.float32), 3, axis=1)
            v = np.concatenate([p.mean(axis=(0, 1)) for p in parts]) + 1.0
            out.append(EmbedResult((v / np.linalg.norm(v)).astype(np.float32)))
        return out

    def score(self, batch: Sequence[Prepared], answers: Sequence[str], pool_layers: Sequence[int]) -> list[ScoreResult]:
        out = []
        for r in self._work("score", batch):
            assert isinstance(r, ScoreRequest)
            hot = "ALARM" in r.prompt.user
            probs = np.full(len(answers), 1e-3)
            probs[-1 if hot else 0] = 1.0
            pooled = {k: np.array([float(hot), len(r.prompt.user)], np.float32) for k in pool_layers}
            out.append(ScoreResult(probs / probs.sum(), pooled))
        return out

    def explain(
        self, batch: Sequence[Prepared], max_new_tokens: int, cancel: threading.Event | None = None
    ) -> list[ExplainResult]:
        return [ExplainResult("something alarming happened") for _ in self._work("explain", batch, cancel)]

    def prompts(self, kind: type[ScoreRequest] | type[ExplainRequest]) -> list[ChatPrompt]:
        """The prompts of the score or explain requests served so far."""
        return [r.prompt for r in self.requests if isinstance(r, kind)]

    def describe_prompts(self) -> list[str]:
        return [r.prompt for r in self.requests if isinstance(r, DescribeRequest)]


def fake_engine(fake: FakeModel, cfg: object | None = None) -> BatchingEngine:
    """The batching engine over a fake model, batching as ``cfg.model`` says (or the defaults)."""
    model = getattr(cfg, "model", None)
    if model is None:
        return BatchingEngine(fake)
    return BatchingEngine(fake, max_batch=model.max_batch, max_wait_ms=model.max_wait_ms)


class AlarmAfter(FakeModel):
    """Describes frames showing the moving square's bright band (tests.helpers.media clips) as ALARM."""

    def describe_image(self, image: Image, prompt: str) -> str:
        return ("ALARM " if image[30:50].max() == 255 else "") + super().describe_image(image, prompt)
