"""Rules: what matters on a camera, said in words ("someone climbs the fence"), each a yes/no question
about every window, with its own threshold, escalation, cooldown, severity and events."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field, field_validator

from pipeline.alerts import AlertSettings
from pipeline.inference import ChatPrompt
from pipeline.judge import fill, sanitize
from pipeline.prompts import RULE_PROMPT, RULE_SYSTEM
from pipeline.settings import Settings

DEFAULT_RULE = "anomaly"
"""The general anomaly question (the judge's prompt and calibration, ``[alerting]``): every camera's first rule."""

RULE_ANSWERS = ("no", "yes")


class RuleSettings(Settings):
    """One rule (``[[rules]]`` for every camera, ``[[cameras.rules]]`` for one; a camera's rule replaces a
    global one of the same name)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$", title="Short name: topics, entities, events")
    question: str = Field(min_length=3, max_length=300, title="A yes/no question about what the camera saw")
    threshold: float = Field(0.5, gt=0, le=1, title="An event starts when p(yes) is at least this ...")
    consecutive: int = Field(1, ge=1, le=100, title="... in this many windows in a row")
    cooldown_s: float = Field(30.0, ge=0, title="No new event of this rule this long after one ended")
    severity: int = Field(1, ge=0, le=2, title="Its events' level: 0 worth noting, 1 suspicious, 2 dangerous")

    @field_validator("name")
    @classmethod
    def _not_default(cls, value: str) -> str:
        if value == DEFAULT_RULE:
            raise ValueError(f"{DEFAULT_RULE!r} is the general anomaly rule; set it up in [alerting] and [judge]")
        return value

    @field_validator("question")
    @classmethod
    def _clean(cls, value: str) -> str:
        return sanitize(value, 300)

    def alerting(self, base: AlertSettings) -> AlertSettings:
        """The camera's alert settings with this rule's threshold, escalation and cooldown."""
        return base.model_copy(
            update={
                "threshold": self.threshold,
                "hysteresis": min(base.hysteresis, self.threshold / 2),
                "min_duration_s": 0.0,
                "consecutive": self.consecutive,
                "cooldown_s": self.cooldown_s,
            }
        )


def check_rules(rules: Sequence[RuleSettings]) -> tuple[RuleSettings, ...]:
    """Rules with distinct names (ValueError naming a repeated one)."""
    seen: set[str] = set()
    for r in rules:
        if r.name in seen:
            raise ValueError(f"rule {r.name!r} is defined twice")
        seen.add(r.name)
    return tuple(rules)


def merge_rules(global_rules: Sequence[object], own: Sequence[object]) -> list[object]:
    """A camera's rules: the global ones, each replaced by the camera's rule of the same name, then the
    camera's others (raw tables or settings; validation comes after)."""

    def name(r: object) -> object:
        return r.name if isinstance(r, RuleSettings) else r.get("name") if isinstance(r, dict) else None

    mine = {name(r): r for r in own}
    merged = [mine.pop(name(r), r) for r in global_rules]
    return [*merged, *(r for r in own if name(r) in mine)]


def rule_prompt(rule: RuleSettings, descriptions: Sequence[str], context: str | None = None) -> ChatPrompt:
    """The question of one rule about a window. The window's report comes first and is marked fixed, so
    every rule asked about the same window shares that prefix (computed once, in one batch)."""
    before, after = RULE_PROMPT.split("{question}")
    head = fill(before, descriptions, context)
    return ChatPrompt(RULE_SYSTEM, head + rule.question + after, len(head))
