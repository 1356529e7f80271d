"""A model client over any OpenAI-compatible server (vLLM, SGLang, llama.cpp, Ollama, ``transformers serve``).

Descriptions go to ``/chat/completions`` with the frame as a base64 JPEG data URL. Scores ask for one token
with its log-probabilities and read the answer set from them as the in-process judge does (spelling
variants summed, renormalised over the answers); a server that gives no log-probabilities is scored by
its one-token greedy answer (0 or 1), flagged ``exact=False`` and logged once. Prompts keep their fixed
part first, so the server's prefix cache hits.

Faults: connection errors, timeouts, 429 and 5xx are retried with capped, jittered backoff (honouring
``Retry-After``) within ``timeout_s`` per request. A server that stops answering is an outage, logged
once: requests then fail at once, but for one probe at a time on a growing interval, until it answers
again (logged too). Failed requests are counted in ``stats.errors``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import math
import os
import random
import time
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np
from pydantic import Field

from pipeline.backoff import backoff_delay
from pipeline.inference import (
    ChatPrompt,
    DescribeRequest,
    DescribeResult,
    EmbedRequest,
    EmbedResult,
    EngineStats,
    ExplainRequest,
    ExplainResult,
    ModelInfo,
    ModelLoadError,
    ModelRequest,
    ModelRequestError,
    ModelUnavailable,
    ScoreRequest,
    ScoreResult,
)
from pipeline.redaction import redact_url
from pipeline.settings import Settings
from pipeline.snapshots import encode_jpeg

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 409, 429})
"""Besides every 5xx: answers that mean "try again later"."""
FAILURES_FOR_OUTAGE = 3
"""Consecutive failed requests (timeouts, 5xx) that make an outage; a refused connection makes one at once."""
SLOW = "slow"
"""What an attempt that timed out reports (not an outage: see OpenAIClient._failed)."""
DEFAULT_CONCURRENCY = 8
"""Requests in flight at once when neither the configuration nor the server says (llama.cpp says its slots)."""
PROBE_MAX_S = 5.0
"""Longest interval between probes of a server that is down."""


class OpenAISettings(Settings):
    """An OpenAI-compatible server (``[model.openai]`` or ``[judge.openai]``)."""

    base_url: str = Field(pattern=r"^https?://\S+$", title="The API root, e.g. http://gpu-server:8000/v1")
    model: str = Field(min_length=1, title="The model name the server serves")
    api_key_env: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", title="Environment variable holding the API key (never logged)"
    )
    max_concurrency: int | None = Field(
        None,
        ge=1,
        le=1024,
        title="Requests in flight at once (the server batches them); unset: the server's slots where it says "
        "(llama.cpp), else 8",
    )
    timeout_s: float = Field(30.0, gt=0, le=600, title="Longest wait for one request, retries included")
    retries: int = Field(2, ge=0, le=10, title="Retries of a request after a connection error, 429 or 5xx")
    retry_initial_s: float = Field(0.5, gt=0, le=60)
    retry_max_s: float = Field(5.0, gt=0, le=600)
    top_logprobs: int = Field(20, ge=1, le=20, title="Log-probabilities asked for the answer token")
    jpeg_quality: int = Field(85, ge=10, le=100, title="JPEG quality of the frames sent")


def _variants(answer: str) -> set[str]:
    core = answer.strip()
    return {answer, core, " " + core, core.capitalize(), " " + core.capitalize()}


def answer_probs(top: dict[str, float], answers: Sequence[str]) -> np.ndarray | None:
    """The answers' probabilities, renormalised, from ``{token: logprob}`` of the first generated token;
    None when no answer is among them."""
    tokens = {t.replace("▁", " "): lp for t, lp in top.items()}
    mass = np.array([sum(math.exp(lp) for t, lp in tokens.items() if t in _variants(a)) for a in answers])
    total = mass.sum()
    return None if total <= 0 else np.asarray(mass / total, dtype=np.float64)


def answer_of(text: str, answers: Sequence[str]) -> np.ndarray:
    """A one-hot distribution on the answer that ``text`` starts with (the lowest answer when none)."""
    word = text.strip().split()[0].strip(".,:;!\"'").lower() if text.strip() else ""
    probs = np.zeros(len(answers), dtype=np.float64)
    index = next((i for i, a in enumerate(answers) if a.strip().lower() == word), 0)
    probs[index] = 1.0
    return probs


class OpenAIClient:
    """A :class:`~pipeline.inference.ModelClient` over one OpenAI-compatible server.

    ``describe`` and ``judge`` say which roles it plays; ``chat_judge`` sends judge prompts to
    ``/chat/completions`` (the server applies the model's chat template) rather than as plain text to
    ``/completions`` (for base models).
    """

    def __init__(
        self,
        settings: OpenAISettings,
        *,
        describe: bool = True,
        judge: bool = True,
        chat_judge: bool = True,
        api_key: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.url = settings.base_url.rstrip("/")
        self.where = redact_url(self.url)
        name = f"{settings.model} at {self.where}"
        info = ModelInfo(name, hashlib.sha256(settings.model.encode()).hexdigest()[:16], describe, False)
        self._describer = info if describe else None
        self._judge = info
        self.chat_judge = chat_judge
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._rng = rng or random.Random()
        self._stats = EngineStats()
        self._http: httpx.AsyncClient | None = None
        self.concurrency = settings.max_concurrency or DEFAULT_CONCURRENCY
        """Requests in flight at once: configured, else what the server says when entered, else the default."""
        self._slots = asyncio.Semaphore(self.concurrency)
        self._logprobs = True
        self._down_since: float | None = None
        self._down_reason = ""
        self._failed_in_row = 0
        self._failed_in_outage = 0
        self._next_probe = 0.0
        self._probes = 0
        self._probing = False

    # -- ModelClient -------------------------------------------------------------------------------

    @property
    def describer(self) -> ModelInfo | None:
        return self._describer

    @property
    def judge(self) -> ModelInfo:
        return self._judge

    @property
    def stats(self) -> EngineStats:
        return self._stats

    @property
    def failure(self) -> BaseException | None:
        return None  # a server that is down is an outage, never the end of the client

    async def failed(self) -> BaseException:
        """Never returns: a server that is down is an outage, not the end of the client."""
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    @property
    def available(self) -> bool:
        return self._down_since is None

    async def __aenter__(self) -> OpenAIClient:
        s = self.settings
        self._http = httpx.AsyncClient(headers=self._headers, timeout=s.timeout_s)
        try:
            await self.check()
            if s.max_concurrency is None:
                await self._ask_slots()
        except BaseException:
            await self._http.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def describe(self, request: DescribeRequest) -> DescribeResult:
        """The frame as a JPEG data URL in a chat message, greedy decoding."""
        jpeg = await asyncio.to_thread(encode_jpeg, request.image, self.settings.jpeg_quality)
        url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
        content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": request.prompt}]
        body = {"messages": [{"role": "user", "content": content}], "max_tokens": request.max_new_tokens}
        answer = await self._call(request, "/chat/completions", body)
        return DescribeResult(_text(answer, chat=True).strip())

    async def embed(self, request: EmbedRequest) -> EmbedResult:
        raise ModelRequestError(f"{self.where} gives no image embeddings (the semantic gate needs an in-process VLM)")

    async def score(self, request: ScoreRequest) -> ScoreResult:
        """One token with its top log-probabilities; the answer set is read from them."""
        if request.pool_layers:
            raise ModelRequestError(
                f"{self.where} gives no hidden states: a judge calibration needs an in-process judge"
            )
        path, body = self._judge_body(request.prompt, 1)
        if self._logprobs:
            k = self.settings.top_logprobs
            extra: dict[str, Any] = {"logprobs": True, "top_logprobs": k} if self.chat_judge else {"logprobs": k}
            try:
                answer = await self._call(request, path, {**body, **extra}, count_failure=False)
            except ModelRequestError as refused:  # some servers refuse the field: does it work without?
                answer = await self._call(request, path, body)
                self._no_logprobs(f"it refuses log-probabilities ({refused})")
                return ScoreResult(answer_of(_text(answer, chat=self.chat_judge), request.answers), exact=False)
            top = _top_logprobs(answer)
            probs = None if top is None else answer_probs(top, request.answers)
            if probs is not None:
                return ScoreResult(probs)
            if top is None:
                self._no_logprobs("its answers carry no log-probabilities")
            return ScoreResult(answer_of(_text(answer, chat=self.chat_judge), request.answers), exact=False)
        answer = await self._call(request, path, body)
        return ScoreResult(answer_of(_text(answer, chat=self.chat_judge), request.answers), exact=False)

    async def explain(self, request: ExplainRequest) -> ExplainResult:
        path, body = self._judge_body(request.prompt, request.max_new_tokens)
        answer = await self._call(request, path, body)
        return ExplainResult(_text(answer, chat=self.chat_judge).strip())

    # -- requests ----------------------------------------------------------------------------------

    def _judge_body(self, prompt: ChatPrompt, max_tokens: int) -> tuple[str, dict[str, Any]]:
        if self.chat_judge:
            messages = [{"role": "system", "content": prompt.system}] if prompt.system else []
            messages.append({"role": "user", "content": prompt.user})
            return "/chat/completions", {"messages": messages, "max_tokens": max_tokens}
        text = f"{prompt.system}\n\n{prompt.user}" if prompt.system else prompt.user  # the server adds BOS
        return "/completions", {"prompt": text, "max_tokens": max_tokens}

    def _no_logprobs(self, why: str) -> None:
        if self._logprobs:
            self._logprobs = False
            log.warning(
                "model server %s: %s; window scores are now its one-token answer (0 or 1), flagged exact=false",
                self.where,
                why,
            )

    async def _call(
        self, request: ModelRequest, path: str, body: dict[str, Any], *, count_failure: bool = True
    ) -> dict[str, Any]:
        """POST with retries inside ``timeout_s``; the answer's JSON. Counts the request in the stats."""
        t0 = time.monotonic()
        try:
            async with self._slots:  # the timeout starts once the request may go out
                answer = await self._post(path, {"model": self.settings.model, "temperature": 0, **body})
        except ModelRequestError:
            self._stats.errors += count_failure
            raise
        except ModelUnavailable:
            self._stats.errors += 1
            raise
        self._stats.record(request.kind, 1, time.monotonic() - t0)
        return answer

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        s = self.settings
        deadline = time.monotonic() + s.timeout_s
        attempt = 0
        while True:
            probe = self._admit()
            try:
                outcome = await self._attempt(path, body, deadline)
            finally:
                if probe:
                    self._probing = False
            if isinstance(outcome, dict):
                return outcome
            reason, retry_after, refused = outcome
            attempt += 1
            delay = retry_after
            if delay is None:
                delay = backoff_delay(attempt - 1, s.retry_initial_s, s.retry_max_s, self._rng)
            if probe or attempt > s.retries or time.monotonic() + delay >= deadline:
                if reason == SLOW:
                    reason = f"no answer within {s.timeout_s:g} s"
                    self._failed(reason, refused, slow=True)
                else:
                    self._failed(reason, refused)
                raise ModelUnavailable(f"{self.where}: {reason}")
            await asyncio.sleep(delay)

    async def _attempt(
        self, path: str, body: dict[str, Any], deadline: float
    ) -> dict[str, Any] | tuple[str, float | None, bool]:
        """One POST: the answer, or (why it failed, the server's Retry-After, whether the connection failed)."""
        left = deadline - time.monotonic()
        assert self._http is not None, "client not entered"
        try:
            if left <= 0:
                raise httpx.TimeoutException("no time left")
            resp = await self._http.post(self.url + path, json=body, timeout=left)
        except httpx.TimeoutException:
            return SLOW, 0.0, False
        except httpx.TransportError as exc:
            return _transport_reason(exc), None, True
        if resp.status_code == 200:
            self._answered()
            return _json(resp, self.where)
        if resp.status_code not in RETRYABLE_STATUS and resp.status_code < 500:
            self._answered()
            raise ModelRequestError(f"{self.where}{path} answered HTTP {resp.status_code}: {_brief(resp)}")
        return f"HTTP {resp.status_code}: {_brief(resp)}", _retry_after(resp), False

    # -- outages -----------------------------------------------------------------------------------

    def _admit(self) -> bool:
        """While the server is down, let one probe through per interval (True) and fail the rest at once."""
        if self._down_since is None:
            return False
        now = time.monotonic()
        if self._probing or now < self._next_probe:
            raise ModelUnavailable(f"{self.where} is unavailable ({self._down_reason})")
        self._probing = True
        self._probes += 1
        self._next_probe = now + backoff_delay(self._probes, 0.5, PROBE_MAX_S, self._rng)
        return True

    def _answered(self) -> None:
        self._failed_in_row = 0
        if self._down_since is not None:
            log.info(
                "model server %s answers again after %.1f s (%d requests failed meanwhile; last: %s)",
                self.where,
                time.monotonic() - self._down_since,
                self._failed_in_outage,
                self._down_reason,
            )
            self._down_since = None

    def _failed(self, reason: str, refused: bool, *, slow: bool = False) -> None:
        """A request failed. A server that refuses connections, or fails FAILURES_FOR_OUTAGE requests in a
        row, is down (one log line for the outage; its reason kept current). A slow answer is not down: a
        loaded server is still serving."""
        if self._down_since is not None:
            self._failed_in_outage += 1
            self._down_reason = reason
            return
        if slow:
            return
        self._failed_in_row += 1
        if refused or self._failed_in_row >= FAILURES_FOR_OUTAGE:
            self._down_since = time.monotonic()
            self._down_reason = reason
            self._failed_in_outage = 1
            self._probes = 0
            self._next_probe = self._down_since + 0.5
            self._stats.outages += 1
            log.warning(
                "model server %s unavailable (%s); its requests fail until it answers again (checked every "
                "%g s at most)",
                self.where,
                reason,
                PROBE_MAX_S,
            )

    async def check(self) -> None:
        """At start: the server answers and serves the model, or one clear line says what is wrong.

        A server that is not reachable yet is an outage (the monitor goes on and waits for it); a refused
        key, a wrong URL or an unknown model is a ModelLoadError.
        """
        s = self.settings
        assert self._http is not None
        hint_key = f"Set {s.api_key_env} to a key the server accepts." if s.api_key_env else "Set api_key_env."
        try:
            resp = await self._http.get(self.url + "/models", timeout=min(s.timeout_s, 10.0))
        except httpx.TimeoutException:
            self._failed(f"no answer to GET /models within {min(s.timeout_s, 10.0):g} s", True)
            return
        except httpx.TransportError as exc:
            self._failed(_transport_reason(exc), True)
            return
        name = self._judge.name
        if resp.status_code in (401, 403):
            raise ModelLoadError(name, f"{self.where} refused the API key (HTTP {resp.status_code})", hint_key)
        if resp.status_code == 404:
            raise ModelLoadError(
                name, f"{self.where}/models does not exist", "base_url must be the API root, e.g. http://host:8000/v1."
            )
        if resp.status_code != 200:
            self._failed(f"HTTP {resp.status_code} to GET /models: {_brief(resp)}", True)
            return
        try:
            served = [str(m["id"]) for m in resp.json().get("data", [])]
        except (ValueError, AttributeError, KeyError, TypeError):
            raise ModelLoadError(
                name, f"{self.where}/models is not an OpenAI-compatible answer", "Check base_url."
            ) from None
        if served and s.model not in served:
            raise ModelLoadError(
                name,
                f"{self.where} serves {', '.join(served[:5])}{' ...' if len(served) > 5 else ''}, not {s.model!r}",
                "Set model to one of them.",
            )
        log.info("model server %s serves %s", self.where, s.model)

    async def _ask_slots(self) -> None:
        """Fit the requests in flight to the server's parallel slots where it says (llama.cpp's ``/props``:
        ``total_slots``), so that requests do not queue there until they time out."""
        assert self._http is not None
        root = self.url.removesuffix("/v1")
        try:
            resp = await self._http.get(root + "/props", timeout=min(self.settings.timeout_s, 5.0))
            slots = resp.json().get("total_slots") if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            slots = None
        if isinstance(slots, int) and not isinstance(slots, bool) and slots >= 1:
            self.concurrency = min(slots, 1024)
            log.info("model server %s: %d requests at a time (its parallel slots)", self.where, self.concurrency)
        else:
            log.info(
                "model server %s: %d requests at a time (it does not say how many it serves at once; "
                "set max_concurrency)",
                self.where,
                self.concurrency,
            )
        self._slots = asyncio.Semaphore(self.concurrency)


def _transport_reason(exc: httpx.TransportError) -> str:
    """The true reason of a failed connection ("connection refused", "name or service not known"...)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, OSError) and (cause.errno or cause.strerror):
            return (os.strerror(cause.errno) if cause.errno else str(cause.strerror)).lower()
        cause = cause.__cause__ or cause.__context__
    text = str(exc) or type(exc).__name__
    return "connection refused" if "refused" in text.lower() else text.splitlines()[0][:200]


def _brief(resp: httpx.Response) -> str:
    text = resp.text.strip().replace("\n", " ")
    return (text[:200] + "...") if len(text) > 200 else text or resp.reason_phrase


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _json(resp: httpx.Response, where: str) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        raise ModelRequestError(f"{where} answered with something that is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list) or not data["choices"]:
        raise ModelRequestError(f"{where} answered without choices: {str(data)[:200]}")
    return data


def _text(answer: dict[str, Any], *, chat: bool) -> str:
    choice = answer["choices"][0]
    if chat:
        content = (choice.get("message") or {}).get("content")
        if isinstance(content, list):  # some servers answer in parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        return str(content or "")
    return str(choice.get("text") or "")


def _top_logprobs(answer: dict[str, Any]) -> dict[str, float] | None:
    """``{token: logprob}`` at the first generated token, or None when the answer carries none.

    Reads both shapes servers use: chat's ``logprobs.content[0].top_logprobs`` (a list of ``{token,
    logprob}``, which llama.cpp's server also gives for ``/completions``) and the legacy completions'
    ``logprobs.top_logprobs[0]`` (a ``{token: logprob}`` mapping).
    """
    lp = answer["choices"][0].get("logprobs")
    if not isinstance(lp, dict):
        return None
    try:
        if isinstance(lp.get("content"), list):
            return {str(e["token"]): float(e["logprob"]) for e in lp["content"][0]["top_logprobs"]}
        return {str(t): float(v) for t, v in lp["top_logprobs"][0].items()}
    except (TypeError, KeyError, IndexError, ValueError, AttributeError):
        return None
