"""Two model clients as one: frames described by one (a GPU server, say), windows judged by the other."""

from __future__ import annotations

import asyncio
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
        self._describer = describer
        self._judge = judge
        self._stack = contextlib.AsyncExitStack()

    @property
    def describer(self) -> ModelInfo | None:
        return self._describer.describer

    @property
    def judge(self) -> ModelInfo:
        return self._judge.judge

    @property
    def stats(self) -> EngineStats:
        """Descriptions and embeddings from the describer's figures, scores and explanations from the
        judge's; the totals summed."""
        described, judged = self._describer.stats, self._judge.stats
        out = EngineStats()
        for f in fields(EngineStats):
            value = getattr(out, f.name)
            if isinstance(value, dict):
                for kind in RequestKind:
                    source = described if kind in (RequestKind.DESCRIBE, RequestKind.EMBED) else judged
                    value[kind] = getattr(source, f.name)[kind]
            else:
                setattr(out, f.name, getattr(described, f.name) + getattr(judged, f.name))
        return out

    @property
    def failure(self) -> BaseException | None:
        return self._describer.failure or self._judge.failure

    async def failed(self) -> BaseException:
        """Wait until either client fails for good; its error."""
        waits = [asyncio.ensure_future(self._describer.failed()), asyncio.ensure_future(self._judge.failed())]
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        return next(iter(done)).result()

    async def describe(self, request: DescribeRequest) -> DescribeResult:
        return await self._describer.describe(request)

    async def embed(self, request: EmbedRequest) -> EmbedResult:
        return await self._describer.embed(request)

    async def score(self, request: ScoreRequest) -> ScoreResult:
        return await self._judge.score(request)

    async def explain(self, request: ExplainRequest) -> ExplainResult:
        return await self._judge.explain(request)

    async def __aenter__(self) -> SplitClient:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self._describer)
            await stack.enter_async_context(self._judge)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()
