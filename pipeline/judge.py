"""Judge prompts and scores: a window of descriptions -> an anomaly score in [0, 1]."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from pydantic import Field, field_validator

from pipeline.inference import ChatPrompt, ExplainRequest, ModelClient, ScoreRequest
from pipeline.prompts import DEFAULT_EXPLAIN_PROMPT, DEFAULT_JUDGE_PROMPT, DEFAULT_JUDGE_SYSTEM
from pipeline.settings import Settings

MAX_DESCRIPTION_CHARS = 600
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")
_SPACE = re.compile(r"\s+")
PLACEHOLDERS = frozenset({"descriptions", "context"})


def check_template(template: str) -> str:
    """A prompt template must hold ``{descriptions}`` and no placeholder but it and ``{context}``."""
    if "{descriptions}" not in template:
        raise ValueError("must contain the placeholder {descriptions}")
    unknown = set(re.findall(r"{([^{}]*)}", template)) - PLACEHOLDERS
    if unknown:
        raise ValueError(f"unknown placeholder(s) {sorted(unknown)}; use {{descriptions}} and {{context}}")
    return template


class JudgeSettings(Settings):
    """How a window is judged and explained (the prompt part of ``[judge]``, overridable per camera)."""

    system: str = Field(DEFAULT_JUDGE_SYSTEM, title="Instructions placed before the prompt")
    prompt: str = Field(DEFAULT_JUDGE_PROMPT, title="Judge prompt; {descriptions} and {context} are filled in")
    answers: tuple[str, ...] = Field(
        ("no", "yes"),
        min_length=2,
        title="Answer words (one token each), lowest anomaly first; the score is their probability-weighted "
        "rank in [0, 1] (with two answers: p(yes))",
    )
    explain_prompt: str = Field(DEFAULT_EXPLAIN_PROMPT, title="Prompt for the explanation of an alert")
    explain_max_new_tokens: int = Field(48, ge=1, le=512)
    smoothing: float = Field(
        0.5, gt=0, le=1, title="Causal moving average of each camera's window scores: weight of the newest (1: off)"
    )

    @field_validator("prompt", "explain_prompt")
    @classmethod
    def _templates(cls, value: str) -> str:
        return check_template(value)

    @field_validator("answers")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("answers must be distinct")
        return value

    @property
    def prompt_hash(self) -> str:
        """Identifies the scoring prompt (a calibration fits only the prompt it was fitted with)."""
        return hashlib.sha256(json.dumps([self.system, self.prompt, list(self.answers)]).encode()).hexdigest()[:16]


def sanitize(text: str, max_chars: int = MAX_DESCRIPTION_CHARS) -> str:
    """Make a model- or user-written text safe to embed in a prompt.

    Control and invisible characters go, whitespace collapses to single spaces, angle brackets become
    look-alikes so no text can open or close a chat turn (``<end_of_turn>``), and the length is capped.
    """
    text = _CONTROL.sub(" ", text)
    text = text.replace("<", "‹").replace(">", "›")
    text = _SPACE.sub(" ", text).strip()
    if len(text) > max_chars:
        text = text[: max_chars - 1].rstrip() + "…"
    return text or "(nothing described)"


def format_descriptions(descriptions: Sequence[str]) -> str:
    """The descriptions as one report, oldest first: sanitised sentences joined by spaces."""
    sentences = []
    for d in descriptions:
        s = sanitize(d)
        sentences.append(s if s.endswith((".", "!", "?", "…")) else s + ".")
    return " ".join(sentences)


def fill(template: str, descriptions: Sequence[str], context: str | None) -> str:
    """Fill ``{descriptions}`` and ``{context}`` without ``str.format`` (texts may contain braces)."""
    ctx = f"Camera: {sanitize(context, 300)}\n" if context else ""
    return template.replace("{context}", ctx).replace("{descriptions}", format_descriptions(descriptions))


def _fixed_part(template: str) -> int:
    """Where a template's first placeholder starts: the text before it is the same for every window."""
    return min(i for i in (template.find("{context}"), template.find("{descriptions}"), len(template)) if i >= 0)


def judge_prompt(settings: JudgeSettings, descriptions: Sequence[str], context: str | None = None) -> ChatPrompt:
    """The scoring prompt for one window; the template's text before its first placeholder is marked fixed."""
    return ChatPrompt(settings.system, fill(settings.prompt, descriptions, context), _fixed_part(settings.prompt))


def explain_prompt(settings: JudgeSettings, descriptions: Sequence[str], context: str | None = None) -> ChatPrompt:
    """The prompt asking why a window is anomalous."""
    return ChatPrompt(settings.system, fill(settings.explain_prompt, descriptions, context))


def expected_score(probs: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Probability-weighted rank of the answers, scaled to [0, 1]: answers are ordered lowest anomaly first."""
    probs = np.atleast_2d(probs)
    k = probs.shape[1]
    values = np.linspace(0.0, 1.0, k)
    total = probs.sum(axis=1)
    return np.asarray(np.clip((probs @ values) / np.where(total > 0, total, 1.0), 0.0, 1.0), dtype=np.float64)


class Smoother:
    """Causal exponential moving average of one camera's window scores: ``alpha`` weighs the newest
    (1 = no smoothing). A live monitor cannot look ahead, so nothing centred."""

    def __init__(self, alpha: float) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.alpha = alpha
        self.value: float | None = None

    def update(self, score: float) -> float:
        self.value = score if self.value is None else self.alpha * score + (1 - self.alpha) * self.value
        return self.value


class Calibration(Protocol):
    """A fitted correction of the prompted score from the judge's hidden states of a probe prompt
    (:class:`pipeline.calibration.JudgeCalibration`)."""

    @property
    def layers(self) -> tuple[int, ...]: ...

    @property
    def probe_prompt(self) -> str:
        """The template of the text whose hidden states the probe reads."""
        ...

    @property
    def prompt(self) -> str:
        """The :attr:`JudgeSettings.prompt_hash` it was fitted with."""
        ...

    def features(self, pooled: Mapping[int, npt.NDArray[np.floating[Any]]]) -> Any: ...

    def score(self, features: npt.NDArray[np.floating[Any]], prompted: npt.NDArray[np.float64]) -> Any: ...


def probe_request(
    template: str, layers: Sequence[int], descriptions: Sequence[str], context: str | None = None
) -> ScoreRequest:
    """A calibration's probe pass over one window: hidden states of ``layers`` pooled over the whole text
    (nothing shared with the judge prompt; its instructions, the same for every window, marked fixed)."""
    prompt = ChatPrompt("", fill(template, descriptions, context), _fixed_part(template))
    return ScoreRequest(prompt, ("no", "yes"), tuple(layers), pool_head=True)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The judge's score of one window; ``exact`` is False when the model gave no probabilities and the
    score is its one-token answer (0 or 1)."""

    score: float
    exact: bool = True


class Judge:
    """Scores windows and writes explanations through a :class:`~pipeline.inference.ModelClient`.

    Scores are remembered per prompt (an LRU of ``cache_size``), and a window that is already being
    scored is not sent twice: a static scene costs one forward pass, however many windows repeat it.
    The calibration applies to windows judged with the prompt it was fitted for; its probe reads the hidden
    states of a second, short prompt sent with the first (the client batches them).
    """

    def __init__(self, models: ModelClient, *, cache_size: int = 512, calibration: Calibration | None = None) -> None:
        self.models = models
        self.calibration = calibration
        self.cache_size = cache_size
        self.hits = 0
        self._cache: OrderedDict[tuple[ChatPrompt, tuple[str, ...]], asyncio.Future[Verdict]] = OrderedDict()

    def _calibration_for(self, settings: JudgeSettings) -> Calibration | None:
        cal = self.calibration
        return cal if cal is not None and cal.prompt in ("", settings.prompt_hash) else None

    async def score(self, settings: JudgeSettings, descriptions: Sequence[str], context: str | None = None) -> Verdict:
        """Anomaly score in [0, 1] of one window (one forward pass, two with a calibration, or a cache hit)."""
        prompt = judge_prompt(settings, descriptions, context)
        cal = self._calibration_for(settings)
        probe = None if cal is None else (cal, probe_request(cal.probe_prompt, cal.layers, descriptions, context))
        return await self.score_prompt(prompt, settings.answers, probe)

    async def score_prompt(
        self, prompt: ChatPrompt, answers: tuple[str, ...], probe: tuple[Calibration, ScoreRequest] | None = None
    ) -> Verdict:
        """The probability-weighted rank of ``answers`` after ``prompt`` (a rule's question, the anomaly
        prompt), calibrated by the probe's pass when given; identical prompts are scored once."""
        key = (prompt, answers)
        known = self._cache.get(key)
        if known is not None:
            self._cache.move_to_end(key)
            self.hits += 1
            return await asyncio.shield(known)
        fut: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        if self.cache_size:
            self._cache[key] = fut
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        try:
            asked = self.models.score(ScoreRequest(prompt, answers, ()))
            if probe is None:
                result = await asked
                value = float(expected_score(result.probs)[0])
            else:
                cal, request = probe
                result, seen = await asyncio.gather(asked, self.models.score(request))
                prompted = expected_score(result.probs)
                value = float(cal.score(np.asarray(cal.features(seen.pooled))[None, :], prompted)[0])
        except BaseException as exc:
            if self._cache.get(key) is fut:
                del self._cache[key]
            if isinstance(exc, asyncio.CancelledError):
                fut.cancel()
            else:
                fut.set_exception(exc)
                fut.exception()  # retrieved here; other waiters get it too
            raise
        verdict = Verdict(value, result.exact)
        fut.set_result(verdict)
        return verdict

    async def explain(self, settings: JudgeSettings, descriptions: Sequence[str], context: str | None = None) -> str:
        """A short generated explanation of why a window is anomalous."""
        prompt = explain_prompt(settings, descriptions, context)
        result = await self.models.explain(ExplainRequest(prompt, settings.explain_max_new_tokens))
        return sanitize(result.text, 500)
