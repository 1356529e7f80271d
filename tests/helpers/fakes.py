"""A fake model backend for unit tests of scheduling logic (the integration tests use real Gemma 3)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from pipeline.backend import ChatPrompt, JudgeOutput
from pipeline.records import Image


class FakeBackend:
    """Describes an image by its mean brightness; scores by the digit found in the prompt's last line."""

    def __init__(self, *, delay_s: float = 0.0, per_item_s: float = 0.0, fail_on: str | None = None) -> None:
        self.delay_s = delay_s
        self.per_item_s = per_item_s
        self.fail_on = fail_on
        self.batches: list[tuple[str, int]] = []
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return "fake"

    @property
    def supports_images(self) -> bool:
        return True

    @property
    def fingerprint(self) -> str:
        return "fake"

    def _work(self, kind: str, n: int) -> None:
        with self._lock:
            self.batches.append((kind, n))
            self.threads.add(threading.current_thread().name)
        time.sleep(self.delay_s + self.per_item_s * n)

    def describe(self, images: Sequence[Image], prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        self._work("describe", len(images))
        out = []
        for img, prompt in zip(images, prompts, strict=True):
            if self.fail_on and self.fail_on in prompt:
                raise RuntimeError("fake failure")
            out.append(f"brightness {int(img.mean()) // 8}")
        return out

    def answer_probs(self, prompts: Sequence[ChatPrompt], answers: Sequence[str]) -> npt.NDArray[np.float64]:
        self._work("score", len(prompts))
        probs = np.full((len(prompts), len(answers)), 1e-3)
        for i, p in enumerate(prompts):
            hot = "ALARM" in p.user
            probs[i, -1 if hot else 0] = 1.0
        return np.asarray(probs / probs.sum(axis=1, keepdims=True), dtype=np.float64)

    def judge_pass(
        self, prompts: Sequence[ChatPrompt], answers: Sequence[str], pool_layers: Sequence[int] = ()
    ) -> JudgeOutput:
        probs = self.answer_probs(prompts, answers)
        pooled = {
            k: np.array([[float("ALARM" in p.user), len(p.user)] for p in prompts], np.float32) for k in pool_layers
        }
        return JudgeOutput(probs, pooled)

    def generate(self, prompts: Sequence[ChatPrompt], max_new_tokens: int) -> list[str]:
        self._work("generate", len(prompts))
        return ["something alarming happened"] * len(prompts)
