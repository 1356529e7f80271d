"""Rules: what a camera watches for. A rule is a question asked about every window of descriptions (a
yes/no question, or a prompt with its answers), with its own threshold, escalation, cooldown, severity and
events. Every camera's first rule is the general anomaly rule: the judge's prompt and calibration
(``[judge]``) with ``[alerting]``; the others come from ``[[rules]]`` and ``[[cameras.rules]]``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, ValidationInfo, field_validator

from pipeline.alerts import AlertSettings, SeverityBands
from pipeline.inference import ChatPrompt
from pipeline.judge import Answers, JudgeSettings, prompt_hash, template_prompt
from pipeline.prompts import RULE_PROMPT, RULE_SYSTEM
from pipeline.records import GENERAL_RULE
from pipeline.settings import Settings
from pipeline.texts import check_template, fill, sanitize

__all__ = ["GENERAL_RULE", "YES_NO", "Rule", "check_rules", "general_rule", "merge_rules"]

YES_NO = ("no", "yes")
"""The answers of a yes/no question."""
INHERITED = {"hysteresis": "hysteresis", "severity_bands": "severity"}
"""Keys a question rule takes from its camera's ``[alerting]`` when it does not set them (rule key: alerting key)."""


class Rule(Settings):
    """One thing a camera watches for: how it is asked of every window and how its scores become events.

    A ``[[rules]]`` table sets ``name`` and ``question`` (or ``prompt``, ``system`` and ``answers``) and any
    of the alert keys; a camera's rules are complete (the general rule built from ``[judge]`` and
    ``[alerting]``, the others with ``[alerting]``'s hysteresis and severity bands where they set none).
    """

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", title="Short name: topics, entities, events")
    system: str | None = Field(None, title="With a prompt: the instructions placed before it")
    prompt: str | None = Field(None, title="A prompt template ({descriptions}, {context}) instead of a question")
    answers: Answers = Field(YES_NO, min_length=2, title="With a prompt: its answers, lowest first")
    question: str | None = Field(
        None, min_length=3, max_length=300, validate_default=True, title="A yes/no question about what the camera saw"
    )
    calibration: Path | None = Field(None, title="A calibration file fitted for this rule's prompt")
    threshold: float = Field(0.5, gt=0, le=1, title="An event starts when the score is at least this ...")
    consecutive: int = Field(1, ge=1, le=100, title="... in this many windows in a row ...")
    min_duration_s: float = Field(0.0, ge=0, title="... and for at least this long")
    hysteresis: float = Field(0.1, ge=0, lt=1, title="It ends below threshold - hysteresis (at most half of it)")
    cooldown_s: float = Field(30.0, ge=0, title="No new event of this rule this long after one ended")
    severity: int | None = Field(1, ge=0, le=2, title="Its events' level: 0 noting, 1 suspicious, 2 dangerous")
    severity_bands: SeverityBands = Field(
        (0.85, 0.95), title="Without a fixed severity: peak scores from which an event is level 1 and level 2"
    )

    @field_validator("prompt")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        return None if value is None else check_template(value)

    @field_validator("question")
    @classmethod
    def _question(cls, value: str | None, info: ValidationInfo) -> str | None:
        if "prompt" not in info.data:  # the prompt is wrong: its own error says so
            return value
        if value is None:
            if info.data["prompt"] is None:
                raise ValueError("a rule asks a yes/no question (or gives a prompt)")
            return None
        if info.data.get("prompt") is not None:
            raise ValueError("a rule has a question or a prompt, not both")
        return sanitize(value, 300)

    @property
    def general(self) -> bool:
        """Whether this is the general anomaly rule (the one with the legacy topics and ``[alerting]`` keys)."""
        return self.name == GENERAL_RULE

    @property
    def release(self) -> float:
        """An event ends at the first window below this: the threshold less the hysteresis, which shrinks to
        half the threshold when it would not fit below it."""
        return self.threshold - min(self.hysteresis, self.threshold / 2)

    @property
    def answer_set(self) -> tuple[str, ...]:
        """The answers scored after the rule's prompt, lowest first."""
        return self.answers if self.question is None else YES_NO

    @property
    def prompt_hash(self) -> str:
        """Identifies the rule's prompt (a calibration applies only to the prompt it was fitted for)."""
        system, prompt = (self.system or "", self.prompt or "") if self.question is None else (RULE_SYSTEM, RULE_PROMPT)
        return prompt_hash(system, prompt.replace("{question}", self.question or ""), self.answer_set)

    def severity_of(self, peak_score: float) -> int:
        """The level of an event with this peak: the rule's fixed one, else by ``severity_bands``."""
        if self.severity is not None:
            return self.severity
        low, high = self.severity_bands
        return 2 if peak_score >= high else 1 if peak_score >= low else 0

    def ask(self, descriptions: Sequence[str], context: str | None = None) -> ChatPrompt:
        """The rule's prompt about one window.

        A question comes after the window's report, which is marked fixed: every question about the same
        window shares that prefix (computed once, in one batch). A prompt's text before its first
        placeholder is marked fixed (the same for every window).
        """
        if self.question is None:
            assert self.prompt is not None  # validated
            return template_prompt(self.system or "", self.prompt, descriptions, context)
        before, after = RULE_PROMPT.split("{question}")
        head = fill(before, descriptions, context)
        return ChatPrompt(RULE_SYSTEM, head + self.question + after, len(head))

    def changed(self, **values: Any) -> Rule:
        """This rule with some keys changed, validated as the configuration would be (ValueError naming the
        key and what is wrong)."""
        try:
            return Rule.model_validate({**self.model_dump(exclude_unset=True), **values})
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"]) or "rule"
            raise ValueError(f"{key}: {err['msg'].removeprefix('Value error, ')}") from None


def general_rule(judge: JudgeSettings, alerting: AlertSettings, calibration: Path | None = None) -> Rule:
    """The general anomaly rule: the judge's prompt (and calibration) with the ``[alerting]`` settings."""
    return Rule(
        name=GENERAL_RULE,
        system=judge.system,
        prompt=judge.prompt,
        answers=judge.answers,
        calibration=calibration,
        threshold=alerting.threshold,
        consecutive=alerting.consecutive,
        min_duration_s=alerting.min_duration_s,
        hysteresis=alerting.hysteresis,
        cooldown_s=alerting.cooldown_s,
        severity=None,
        severity_bands=alerting.severity,
    )


def complete_rule(table: Any, alerting: Mapping[str, Any]) -> Any:
    """A question rule's table with the keys it takes from its camera's ``[alerting]`` filled in."""
    if isinstance(table, Rule):
        table = table.model_dump(exclude_unset=True)
    if not isinstance(table, dict):
        return table
    return {**{k: alerting[a] for k, a in INHERITED.items() if a in alerting}, **table}


def check_rules(rules: Sequence[Rule], *, tables: bool = False) -> tuple[Rule, ...]:
    """Rules with distinct names (ValueError naming a repeated one); ``tables``: as configured, where the
    general rule's name is taken."""
    seen: set[str] = set()
    for r in rules:
        if r.name in seen or (tables and r.general):
            if r.general:
                raise ValueError(f"{GENERAL_RULE!r} is the general anomaly rule; set it up in [alerting] and [judge]")
            raise ValueError(f"rule {r.name!r} is defined twice")
        seen.add(r.name)
    return tuple(rules)


def merge_rules(global_rules: Sequence[object], own: Sequence[object]) -> list[object]:
    """A camera's rule tables: the global ones, each replaced by the camera's rule of the same name, then the
    camera's others (raw tables or rules; validation comes after)."""

    def name(r: object) -> object:
        return r.name if isinstance(r, Rule) else r.get("name") if isinstance(r, dict) else None

    mine = {name(r): r for r in own}
    merged = [mine.pop(name(r), r) for r in global_rules]
    return [*merged, *(r for r in own if name(r) in mine)]
