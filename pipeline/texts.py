"""Texts that go into prompts: making model- and user-written text safe, and filling templates.

Shared by the judge, rules and summaries.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

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


def fixed_part(template: str) -> int:
    """Where a template's first placeholder starts: the text before it is the same for every window."""
    return min(i for i in (template.find("{context}"), template.find("{descriptions}"), len(template)) if i >= 0)
