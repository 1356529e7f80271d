"""Summaries of a period: the model writes a few sentences over its events and descriptions, in stages
(map, then merge) when the period does not fit one prompt."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pydantic import Field

from pipeline.inference import ChatPrompt, ExplainRequest, ModelClient
from pipeline.prompts import DEFAULT_SUMMARY_MERGE_PROMPT, DEFAULT_SUMMARY_PROMPT, DEFAULT_SUMMARY_SYSTEM
from pipeline.settings import Settings
from pipeline.texts import sanitize


class SummarySettings(Settings):
    """How periods are summarised (``[summaries]``)."""

    chunk_chars: int = Field(
        3000,
        ge=1000,
        le=200_000,
        title="Longest log given to the model at once (characters); longer periods "
        "are summarised in parts whose summaries are then merged",
    )
    max_descriptions: int = Field(
        300, ge=10, le=100_000, title="Most descriptions of a period given to the model (evenly spread; events all)"
    )
    max_new_tokens: int = Field(120, ge=8, le=2048, title="Longest summary of one part, in tokens")
    max_stages: int = Field(
        6, ge=1, le=32, title="Most merge stages before the parts' summaries are joined as they are"
    )
    system: str = Field(DEFAULT_SUMMARY_SYSTEM, title="Instructions placed before the summary prompts")
    prompt: str = Field(DEFAULT_SUMMARY_PROMPT, title="Summary of a log; {period} and {log} are filled in")
    merge_prompt: str = Field(
        DEFAULT_SUMMARY_MERGE_PROMPT, title="Summary of the parts' summaries; {period} and {log} are filled in"
    )


@dataclass(frozen=True, slots=True)
class LogLine:
    """One thing that happened: an event or what a camera showed."""

    wall_time: float
    camera: str
    text: str
    event: bool = False

    def render(self) -> str:
        clock = datetime.fromtimestamp(self.wall_time).strftime("%H:%M:%S")
        mark = "EVENT " if self.event else ""
        return f"{clock} {self.camera}: {mark}{sanitize(self.text, 400)}"


def condense(lines: Sequence[LogLine]) -> list[LogLine]:
    """Time order, with a camera's repeated description (an unchanged scene) kept once."""
    out: list[LogLine] = []
    last: dict[str, str] = {}
    for line in sorted(lines, key=lambda x: x.wall_time):
        if not line.event and last.get(line.camera) == line.text:
            continue
        if not line.event:
            last[line.camera] = line.text
        out.append(line)
    return out


def chunks(texts: Sequence[str], limit: int) -> list[list[str]]:
    """Consecutive texts in groups of at most ``limit`` characters (a longer text is a group alone)."""
    groups: list[list[str]] = []
    size = 0
    for t in texts:
        if not groups or size + len(t) + 1 > limit:
            groups.append([])
            size = 0
        groups[-1].append(t)
        size += len(t) + 1
    return groups


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_LOG_PREFIX = re.compile(r"\b\d\d:\d\d:\d\d [^\s:]+: (EVENT )?")
"""A log line's clock and camera, which a small model copies from its prompt."""


def first_sentences(text: str, limit: int = 5) -> str:
    """The model's first paragraph, at most ``limit`` sentences, each said once (small models repeat)."""
    paragraph = _LOG_PREFIX.sub("", text.strip().split("\n\n", 1)[0])
    out: list[str] = []
    for sentence in _SENTENCE_END.split(sanitize(paragraph, 2000)):
        if sentence and sentence not in out:
            out.append(sentence)
    return " ".join(out[:limit]) or "(the model wrote nothing)"


def _fill(template: str, period: str, log: Sequence[str]) -> str:
    return template.replace("{period}", period).replace("{log}", "\n".join(log))


class Summarizer:
    """Writes a few sentences over a period's log through a model client's ``explain`` (free text):
    the log is cut into parts that fit ``chunk_chars``, each part is summarised (in one batch), and the
    summaries are merged the same way, stage by stage, until one prompt holds them all."""

    def __init__(self, models: ModelClient, settings: SummarySettings) -> None:
        self.models = models
        self.settings = settings
        self.requests = 0
        """Model calls made (for tests and the command's report)."""
        self.stages = 0

    async def _write(self, template: str, period: str, log: Sequence[str]) -> str:
        self.requests += 1
        prompt = ChatPrompt(self.settings.system, _fill(template, period, log))
        result = await self.models.explain(ExplainRequest(prompt, self.settings.max_new_tokens))
        return first_sentences(result.text)

    async def summarize(self, period: str, lines: Sequence[LogLine]) -> str:
        """The model's summary of ``lines`` (already condensed); a fixed sentence when nothing happened."""
        if not lines:
            return "Nothing was recorded in this period."
        s = self.settings
        texts = [line.render() for line in lines]
        template = s.prompt
        self.stages = 0
        while True:
            self.stages += 1
            parts = chunks(texts, s.chunk_chars)
            if len(parts) == 1:
                return await self._write(template, period, parts[0])
            if self.stages >= s.max_stages:
                return " ".join(texts)
            texts = list(await asyncio.gather(*(self._write(template, period, p) for p in parts)))
            texts = [f"Part {i + 1}: {t}" for i, t in enumerate(texts)]
            template = s.merge_prompt
