"""Judge prompts and scores: a window of descriptions -> an anomaly score in [0, 1]."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol

import numpy as np
import numpy.typing as npt
from pydantic import AfterValidator, Field, field_validator

from pipeline.inference import ChatPrompt, ExplainRequest, ModelClient, ScoreRequest
from pipeline.prompts import DEFAULT_EXPLAIN_PROMPT, DEFAULT_JUDGE_PROMPT, DEFAULT_JUDGE_SYSTEM
from pipeline.settings import Settings
from pipeline.stats import counter
from pipeline.texts import check_template, fill, fixed_part, sanitize

if TYPE_CHECKING:
    from pipeline.rules import Rule


def _distinct(value: tuple[str, ...]) -> tuple[str, ...]:
    if len(set(value)) != len(value):
        raise ValueError("answers must be distinct")
    return value


Answers = Annotated[tuple[str, ...], AfterValidator(_distinct)]
"""A prompt's answer words, distinct, lowest first."""


class JudgeSettings(Settings):
    """How a window is judged and explained (the prompt part of ``[judge]``, overridable per camera)."""

    system: str = Field(DEFAULT_JUDGE_SYSTEM, title="Instructions placed before the prompt")
    prompt: str = Field(DEFAULT_JUDGE_PROMPT, title="Judge prompt; {descriptions} and {context} are filled in")
    answers: Answers = Field(
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

    @property
    def prompt_hash(self) -> str:
        """Identifies the scoring prompt (a calibration fits only the prompt it was fitted with)."""
        return prompt_hash(self.system, self.prompt, self.answers)


def prompt_hash(system: str, prompt: str, answers: Sequence[str]) -> str:
    """Identifies a scoring prompt: a calibration applies only to the prompt it was fitted with."""
    return hashlib.sha256(json.dumps([system, prompt, list(answers)]).encode()).hexdigest()[:16]


def judge_prompt(settings: JudgeSettings, descriptions: Sequence[str], context: str | None = None) -> ChatPrompt:
    """The scoring prompt for one window; the template's text before its first placeholder is marked fixed."""
    return template_prompt(settings.system, settings.prompt, descriptions, context)


def template_prompt(system: str, template: str, descriptions: Sequence[str], context: str | None = None) -> ChatPrompt:
    """A window's prompt from a template; its text before the first placeholder is marked fixed."""
    return ChatPrompt(system, fill(template, descriptions, context), fixed_part(template))


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
    prompt = ChatPrompt("", fill(template, descriptions, context), fixed_part(template))
    return ScoreRequest(prompt, ("no", "yes"), tuple(layers), pool_head=True)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The judge's score of one window; ``exact`` is False when the model gave no probabilities and the
    score is its one-token answer (0 or 1)."""

    score: float
    exact: bool = True


@dataclass(slots=True)
class JudgeStats:
    """Figures of the judge stage."""

    cache_hits: int = counter("Window questions answered from the judge's cache", metric="judge_cache_hits")


class Judge:
    """Scores windows for rules and writes explanations through a :class:`~pipeline.inference.ModelClient`.

    Scores are remembered per prompt (an LRU of ``cache_size``), and a window that is already being
    scored is not sent twice: a static scene costs one forward pass, however many windows repeat it.
    A rule's calibration applies when it was fitted for the rule's prompt; its probe reads the hidden
    states of a second, short prompt sent with the first (the client batches them).
    """

    def __init__(
        self,
        models: ModelClient,
        *,
        cache_size: int = 512,
        calibrations: Mapping[Path, Calibration] | None = None,
    ) -> None:
        """``calibrations``: the loaded calibration files, by the path a rule names (``Rule.calibration``)."""
        self.models = models
        self.calibrations = dict(calibrations or {})
        self.cache_size = cache_size
        self.stats = JudgeStats()
        self._cache: OrderedDict[tuple[ChatPrompt, tuple[str, ...]], asyncio.Future[Verdict]] = OrderedDict()

    def calibration_for(self, rule: Rule) -> Calibration | None:
        """The rule's calibration, if it is loaded and was fitted for the rule's prompt."""
        cal = None if rule.calibration is None else self.calibrations.get(rule.calibration)
        return cal if cal is not None and cal.prompt in ("", rule.prompt_hash) else None

    async def score(self, rule: Rule, descriptions: Sequence[str], context: str | None = None) -> Verdict:
        """The rule's score in [0, 1] for one window (one forward pass, two with a calibration, or a cache hit)."""
        cal = self.calibration_for(rule)
        probe = None if cal is None else (cal, probe_request(cal.probe_prompt, cal.layers, descriptions, context))
        return await self.score_prompt(rule.ask(descriptions, context), rule.answer_set, probe)

    async def score_prompt(
        self, prompt: ChatPrompt, answers: tuple[str, ...], probe: tuple[Calibration, ScoreRequest] | None = None
    ) -> Verdict:
        """The probability-weighted rank of ``answers`` after ``prompt`` (a rule's question, the anomaly
        prompt), calibrated by the probe's pass when given; identical prompts are scored once."""
        key = (prompt, answers)
        known = self._cache.get(key)
        if known is not None:
            self._cache.move_to_end(key)
            self.stats.cache_hits += 1
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
