"""The small interface every model backend offers: describe images, score texts, explain."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from pipeline.records import Image


@dataclass(frozen=True, slots=True)
class ChatPrompt:
    """A system instruction and a user turn; backends apply their chat template (or plain text).

    The first ``fixed`` characters of ``user`` are the same for every window (the instructions and
    examples before the window's text): a backend may compute them once and reuse their cache.
    """

    system: str
    user: str
    fixed: int = 0


@dataclass(frozen=True, slots=True)
class JudgeOutput:
    """A judge pass: answer probabilities ``(n, answers)`` and, when asked for, hidden states of the
    window's text mean-pooled per layer ``{layer: (n, hidden)}``."""

    probs: npt.NDArray[np.float64]
    pooled: dict[int, npt.NDArray[np.float32]]


class ModelBackend(Protocol):
    """What the inference worker needs from a model. Every method takes a whole batch."""

    @property
    def name(self) -> str:
        """A short, secret-free name for logs."""
        ...

    @property
    def fingerprint(self) -> str:
        """A short hash that identifies the model's weights."""
        ...

    @property
    def supports_images(self) -> bool:
        """Whether :meth:`describe` works (a vision-language model)."""
        ...

    def describe(self, images: Sequence[Image], prompts: Sequence[str], max_new_tokens: int) -> list[str]:
        """One description per image, by greedy decoding."""
        ...

    def answer_probs(self, prompts: Sequence[ChatPrompt], answers: Sequence[str]) -> npt.NDArray[np.float64]:
        """Probabilities of each answer as the next token, renormalised over ``answers``: ``(n, len(answers))``.

        One forward pass, no generation.
        """
        ...

    def judge_pass(
        self, prompts: Sequence[ChatPrompt], answers: Sequence[str], pool_layers: Sequence[int] = ()
    ) -> JudgeOutput:
        """:meth:`answer_probs` plus pooled hidden states of the given layers, from the same forward pass."""
        ...

    def generate(self, prompts: Sequence[ChatPrompt], max_new_tokens: int) -> list[str]:
        """Free text for each prompt, by greedy decoding (used only for alert explanations)."""
        ...


class ModelLoadError(Exception):
    """A model could not be loaded; ``hint`` says what to do about it."""

    def __init__(self, model: str, reason: str, hint: str) -> None:
        self.model = model
        self.reason = reason
        self.hint = hint
        super().__init__(f"cannot load model {model!r}: {reason}. {hint}")
