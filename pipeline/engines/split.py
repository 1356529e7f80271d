"""Two model clients as one: frames described by one (a GPU server, say), windows judged by the other."""

from __future__ import annotations

import contextlib
from dataclasses import fields

from pipeline.inference import (
    DescribeRequest,
    DescribeResult,
    EmbedRequest,
    EmbedResult,
    EngineStats,
    ExplainRequest,
    ExplainResult,
    ModelClient,
    ModelInfo,
    RequestKind,
    ScoreRequest,
    ScoreResult,
)


class SplitClient:
    """A :class:`~pipeline.inference.ModelClient` that sends descriptions to ``describer`` and scores and
    explanations to ``judge``; entering it enters both."""

    def __init__(self, describer: ModelClient, judge: ModelClient) -> None:
        self._d = describer
        self._j = judge
        self._stack = contextlib.AsyncExitStack()

    @property
    def describer(self) -> ModelInfo | None:
        return self._d.describer

    @property
    def judge(self) -> ModelInfo:
        return self._j.judge

    @property
    def stats(self) -> EngineStats:
        """Descriptions from the describer's figures, scores and explanations from the judge's."""
        out = EngineStats()
        for f in fields(EngineStats):
            value = getattr(out, f.name)
            if isinstance(value, dict):
                for kind in RequestKind:
                    source = self._d if kind is RequestKind.DESCRIBE else self._j
                    value[kind] = getattr(source.stats, f.name)[kind]
        out.errors = self._d.stats.errors + self._j.stats.errors
        out.prepare_s = self._d.stats.prepare_s + self._j.stats.prepare_s
        out.prepare_on_model_thread_s = (
            self._d.stats.prepare_on_model_thread_s + self._j.stats.prepare_on_model_thread_s
        )
        return out

    @property
    def failure(self) -> BaseException | None:
        return self._d.failure or self._j.failure

    async def describe(self, request: DescribeRequest) -> DescribeResult:
        return await self._d.describe(request)

    async def embed(self, request: EmbedRequest) -> EmbedResult:
        return await self._d.embed(request)

    async def score(self, request: ScoreRequest) -> ScoreResult:
        return await self._j.score(request)

    async def explain(self, request: ExplainRequest) -> ExplainResult:
        return await self._j.explain(request)

    async def __aenter__(self) -> SplitClient:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self._d)
            await stack.enter_async_context(self._j)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()
