"""The one door every chat call in the studio goes through: `chat`, `achat`, and `stream`.

For each call: walk an ordered fallback chain of models; retry a model on transient errors
(rate limits, timeouts, 5xx) with exponential backoff, honouring Retry-After; give each call a
timeout; answer from the disk cache when the same request was made before; record the model
that answered, tokens, latency and cost (litellm's price list) in the LLMCall table.

`stream` walks the same chain but yields the reply as it is written. A model that fails before its
first chunk falls back to the next, as `chat` does; once text has arrived the reply belongs to that
model. `ChatStream.stop()` ends it: the partial reply is kept, recorded and marked stopped. Providers
stream through litellm (`completion(stream=True)`); local models stream straight through
`embedded.stream`, whose stop event reaches a StoppingCriteria inside `generate` (litellm's
custom-provider streaming hands back only an iterator, so neither the stop nor exact token counts
could cross it).

The chain walk is written here rather than left to litellm's `fallbacks=` because the studio
shows which models failed, and why, before the one that answered.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import tenacity

from pipeline import settings
from pipeline.errors import UserFacingError
from pipeline.llm import catalog, disk_cache, embedded
from pipeline.llm.batcher import Generation


def _litellm():
    from pipeline.llm._litellm import litellm

    return litellm


def _transient_kinds(litellm) -> tuple[type[BaseException], ...]:
    return (
        litellm.RateLimitError,
        litellm.Timeout,
        litellm.APIConnectionError,
        litellm.InternalServerError,
        litellm.ServiceUnavailableError,
        litellm.BadGatewayError,
    )


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # per model, the first try included
    base_delay: float = 1.0
    max_delay: float = 30.0


@dataclass
class Attempt:
    model: str
    error: str
    retries: int = 0


@dataclass
class ChatResult:
    text: str
    model_used: str
    models_requested: list[str]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: int = 0
    cost_usd: float = 0.0
    cached: bool = False
    retries: int = 0  # transient failures of the answering model before it answered
    attempts: list[Attempt] = field(default_factory=list)  # models that failed before it
    stopped: bool = False  # a streamed reply ended by ChatStream.stop(): `text` is what had arrived
    first_token_ms: int | None = None  # streamed replies: how long until the first text arrived

    @property
    def fell_back(self) -> bool:
        return self.model_used != self.models_requested[0]


class AllModelsFailed(UserFacingError):
    def __init__(self, attempts: list[Attempt]):
        self.attempts = attempts
        lines = "; ".join(f"{a.model}: {a.error}" for a in attempts)
        super().__init__(f"No model in the chain could answer. {lines}")


@dataclass
class _Call:
    """One gateway call's plan, shared by the sync and async paths."""

    messages: list[dict]
    chain: list[str]
    usable: list[catalog.ResolvedModel]
    attempts: list[Attempt]
    params: dict  # what shapes the answer: part of the cache key
    timeout: float
    cache: bool
    retry: RetryPolicy

    def cache_key(self, model: catalog.ResolvedModel) -> str:
        return disk_cache.request_key(model.litellm_model, self.messages, self.params)

    def from_cache(self, model: catalog.ResolvedModel) -> ChatResult | None:
        if not self.cache:
            return None
        hit = disk_cache.get(_cache_folder(), self.cache_key(model))
        if hit is None:
            return None
        return ChatResult(
            text=hit["text"],
            model_used=model.name,
            models_requested=self.chain,
            prompt_tokens=hit["prompt_tokens"],
            completion_tokens=hit["completion_tokens"],
            cached=True,
            attempts=list(self.attempts),
        )

    def request(self, model: catalog.ResolvedModel) -> dict:
        return dict(
            model=model.litellm_model,
            messages=self.messages,
            timeout=self.timeout,
            num_retries=0,  # retries are ours (see retrying)
            **self.params,
            **model.call_kwargs,
        )

    def retrying(self, cls=tenacity.Retrying):
        return cls(
            stop=tenacity.stop_after_attempt(self.retry.attempts),
            wait=_backoff(self.retry),
            retry=tenacity.retry_if_exception(_is_transient),
            reraise=True,
        )

    def answered(self, model, response, started: float, retries: int) -> ChatResult:
        if isinstance(response, Generation):  # a local model's own reply, not litellm's response object
            text, prompt_tokens, completion_tokens = response.text, response.prompt_tokens, response.completion_tokens
        else:
            usage = getattr(response, "usage", None)
            text = response.choices[0].message.content or ""
            prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
            completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        result = ChatResult(
            text=text.strip(),
            model_used=model.name,
            models_requested=self.chain,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_ms=int((time.perf_counter() - started) * 1000),
            cost_usd=_cost(response, model),
            retries=retries,
            attempts=list(self.attempts),
        )
        if self.cache:
            disk_cache.put(
                _cache_folder(),
                self.cache_key(model),
                {
                    "text": result.text,
                    "prompt_tokens": result.prompt_tokens,
                    "completion_tokens": result.completion_tokens,
                },
            )
        return result

    def failed(self, model, exc: BaseException, retryer) -> None:
        self.attempts.append(Attempt(model.name, _describe(exc), _retries(retryer)))


def _cache_folder():
    return settings.cache_dir() / "llm"


def cache_enabled_by_default() -> bool:
    return os.environ.get("STUDIO_LLM_CACHE", "1") not in ("0", "false", "off")


def _plan(messages, models, temperature, max_tokens, timeout, cache, retry, extra) -> _Call:
    chain = [models] if isinstance(models, str) else [m for m in (models or []) if m and m.strip()]
    if not chain:
        raise UserFacingError("Pick at least one model.")
    resolved = [catalog.resolve(m) for m in chain]
    usable = [r for r in resolved if r.configured]
    if not usable:
        needs = ", ".join(sorted({r.missing for r in resolved}))
        raise UserFacingError(
            f"No model in the chain is configured: {needs}, or pick the embedded model ({settings.EMBEDDED_MODEL})."
        )
    skipped = [Attempt(r.name, f"not configured ({r.missing})") for r in resolved if not r.configured]
    return _Call(
        messages=messages,
        chain=chain,
        usable=usable,
        attempts=skipped,
        params={"temperature": temperature, "max_tokens": max_tokens, **extra},
        timeout=timeout,
        cache=cache_enabled_by_default() if cache is None else cache,
        retry=retry,
    )


def _backoff(policy: RetryPolicy):
    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = _retry_after_seconds(exc)
        if retry_after is None:
            retry_after = policy.base_delay * 2 ** (state.attempt_number - 1) * (1 + random.random() * 0.25)
        return min(retry_after, policy.max_delay)

    return wait


def _retry_after_seconds(exc: BaseException | None) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    try:
        value = headers.get("retry-after")
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _is_transient(exc: BaseException) -> bool:
    litellm = sys.modules.get("litellm")  # not imported yet: no provider was called, so not one of its errors
    if litellm is not None and isinstance(exc, _transient_kinds(litellm)):
        return True
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and status >= 500


def _retries(retryer) -> int:
    return max(retryer.statistics.get("attempt_number", 1) - 1, 0)


def _describe(exc: BaseException) -> str:
    """The provider's own message, short, with any key masked."""
    message = str(getattr(exc, "message", "") or exc).replace("litellm.", "").strip()
    kind = type(exc).__name__
    while message.startswith(f"{kind}: {kind}"):  # litellm repeats the class name
        message = message[len(kind) + 2 :]
    if not message.startswith(kind):
        message = f"{kind}: {message}" if message else kind
    if len(message) > 400:
        message = message[:400] + "…"
    return settings.redact(message)


def _cost(response, model: catalog.ResolvedModel) -> float:
    if model.is_local:
        return 0.0
    hidden = getattr(response, "_hidden_params", None) or {}
    if "response_cost" in hidden:  # litellm priced it (or found no price) while logging: don't pay twice
        return float(hidden["response_cost"] or 0.0)
    try:
        return float(_litellm().completion_cost(completion_response=response) or 0.0)
    except Exception:  # noqa: BLE001
        return 0.0  # a model missing from litellm's price list: cost unknown, counted as zero


def _local_completion(*, model: str, messages: list[dict], **params) -> Generation:
    return embedded.generate(
        model.removeprefix("local/"),
        messages,
        max_tokens=int(params.get("max_tokens") or 256),
        temperature=float(params.get("temperature", 0.7)),
        top_p=float(params.get("top_p", 0.9)),
        seed=params.get("seed"),
    )


async def _local_acompletion(**request) -> Generation:
    return await asyncio.to_thread(_local_completion, **request)  # CPU-bound: keep the event loop free


def _completion(model: catalog.ResolvedModel) -> Callable:
    return _local_completion if model.is_local else _litellm().completion


def _acompletion(model: catalog.ResolvedModel) -> Callable:
    return _local_acompletion if model.is_local else _litellm().acompletion


def chat(
    messages: list[dict],
    models: list[str] | str,
    *,
    temperature: float = 0.7,
    max_tokens: int = 512,
    timeout: float = 120.0,
    cache: bool | None = None,
    retry: RetryPolicy = RetryPolicy(),
    purpose: str = "",
    job_id: int | None = None,
    record: bool = True,
    **extra,
) -> ChatResult:
    """Ask the first model in `models` that can answer. Raises AllModelsFailed or UserFacingError."""
    call = _plan(messages, models, temperature, max_tokens, timeout, cache, retry, extra)
    for model in call.usable:
        result = call.from_cache(model)
        if result is None:
            started, retryer = time.perf_counter(), call.retrying()
            try:
                response = retryer(_completion(model), **call.request(model))
            except Exception as exc:  # noqa: BLE001 - every provider error moves down the chain
                call.failed(model, exc, retryer)
                continue
            result = call.answered(model, response, started, _retries(retryer))
        return _recorded(result, purpose, job_id, record)
    _record_failure(call, purpose, job_id, record)


async def achat(
    messages: list[dict],
    models: list[str] | str,
    *,
    temperature: float = 0.7,
    max_tokens: int = 512,
    timeout: float = 120.0,
    cache: bool | None = None,
    retry: RetryPolicy = RetryPolicy(),
    purpose: str = "",
    job_id: int | None = None,
    record: bool = True,
    **extra,
) -> ChatResult:
    """`chat` for asyncio callers: the same chain, retries, cache and record."""
    call = _plan(messages, models, temperature, max_tokens, timeout, cache, retry, extra)
    for model in call.usable:
        result = call.from_cache(model)
        if result is None:
            started, retryer = time.perf_counter(), call.retrying(tenacity.AsyncRetrying)
            try:
                response = await retryer(_acompletion(model), **call.request(model))
            except Exception as exc:  # noqa: BLE001
                call.failed(model, exc, retryer)
                continue
            result = call.answered(model, response, started, _retries(retryer))
        return _recorded(result, purpose, job_id, record)
    _record_failure(call, purpose, job_id, record)


def _recorded(result: ChatResult, purpose: str, job_id: int | None, record: bool) -> ChatResult:
    if record:
        _save_call(
            purpose=purpose,
            job_id=job_id,
            models_requested=result.models_requested,
            model_used=result.model_used,
            prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens,
            latency_ms=result.latency_ms,
            cost_usd=result.cost_usd,
            cached=result.cached,
            attempts=[asdict(a) for a in result.attempts],
        )
    return result


def _record_failure(call: _Call, purpose: str, job_id: int | None, record: bool):
    if record:
        _save_call(
            purpose=purpose,
            job_id=job_id,
            models_requested=call.chain,
            attempts=[asdict(a) for a in call.attempts],
            error="all models failed",
        )
    raise AllModelsFailed(call.attempts)


def _save_call(**fields) -> None:
    from pipeline.db import session_scope
    from pipeline.models import LLMCall

    with session_scope() as session:
        session.add(LLMCall(**fields))


class ChatStream:
    """A streamed reply: iterate for text chunks (str), then, last, its ChatResult (also `.result`).

    `stop()` may be called from any thread: the stream ends at the next chunk, the text so far is kept
    and recorded with `stopped=True`. Nothing is called until the iteration starts.
    """

    def __init__(self, call: _Call, purpose: str, job_id: int | None, record: bool):
        self._call = call
        self._purpose, self._job_id, self._record = purpose, job_id, record
        self._stop = threading.Event()
        self.text = ""  # what has arrived so far
        self.model: str | None = None  # the model answering, once its first chunk arrived
        self.result: ChatResult | None = None

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def __iter__(self) -> Iterator[str | ChatResult]:
        call = self._call
        for model in call.usable:
            if self._stop.is_set():
                break
            cached = call.from_cache(model)
            if cached is not None:
                self.model, self.text = model.name, cached.text
                yield cached.text
                self.result = _recorded(cached, self._purpose, self._job_id, self._record)
                yield self.result
                return
            started = time.perf_counter()
            try:
                opened = _open_local(model, call, self._stop) if model.is_local else _open_provider(model, call)
                first = next(opened.chunks, None)
            except Exception as exc:  # noqa: BLE001 - before the first chunk, every error moves down the chain
                call.attempts.append(Attempt(model.name, _describe(exc), getattr(exc, "_studio_retries", 0)))
                continue
            self.model = model.name
            first_token_ms = int((time.perf_counter() - started) * 1000)
            try:
                chunk = first
                while chunk is not None:
                    if chunk:
                        self.text += chunk
                        yield chunk
                    if self._stop.is_set():
                        break
                    chunk = next(opened.chunks, None)
            except Exception as exc:  # noqa: BLE001 - mid-reply: too late to fall back; keep what came
                self._finish(opened, model, started, first_token_ms)
                raise UserFacingError(
                    f"{model.name} stopped answering mid-reply: {_describe(exc)}. The text so far is kept."
                ) from None
            finally:
                opened.close()
            yield self._finish(opened, model, started, first_token_ms)
            return
        if self._stop.is_set():  # stopped before any model answered
            self.result = ChatResult(text="", model_used=call.chain[0], models_requested=call.chain, stopped=True,
                                     attempts=list(call.attempts))  # fmt: skip
            yield self.result
            return
        _record_failure(call, self._purpose, self._job_id, self._record)

    def _finish(self, opened: _Opened, model: catalog.ResolvedModel, started: float, first_token_ms: int) -> ChatResult:
        call = self._call
        stopped = self._stop.is_set()
        prompt_tokens, completion_tokens = opened.usage()
        if prompt_tokens is None:
            prompt_tokens = _count_tokens(model, messages=call.messages)
        if completion_tokens is None:
            completion_tokens = _count_tokens(model, text=self.text)
        cost = 0.0 if model.is_local else (catalog.price(model.name, prompt_tokens, completion_tokens) or 0.0)
        result = ChatResult(
            text=self.text.strip(),
            model_used=model.name,
            models_requested=call.chain,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_ms=int((time.perf_counter() - started) * 1000),
            cost_usd=cost,
            retries=opened.retries,
            attempts=list(call.attempts),
            stopped=stopped,
            first_token_ms=first_token_ms,
        )
        if call.cache and not stopped:
            disk_cache.put(
                _cache_folder(),
                call.cache_key(model),
                {"text": result.text, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
            )
        self.result = _recorded(result, self._purpose, self._job_id, self._record)
        return self.result


@dataclass
class _Opened:
    """A model's stream, opened: its text chunks, its token counts once done, and how to let it go."""

    chunks: Iterator[str]
    usage: Callable[[], tuple[int | None, int | None]]  # (prompt, completion) tokens; None: not reported
    close: Callable[[], None]
    retries: int = 0


def _open_local(model: catalog.ResolvedModel, call: _Call, stop: threading.Event) -> _Opened:
    params = call.params
    local = embedded.stream(
        model.litellm_model.removeprefix("local/"),
        call.messages,
        max_tokens=int(params.get("max_tokens") or 256),
        temperature=float(params.get("temperature", 0.7)),
        top_p=float(params.get("top_p", 0.9)),
        seed=params.get("seed"),
        stop_event=stop,
    )
    chunks = iter(local)

    def usage():
        g = local.generation
        return (g.prompt_tokens, g.completion_tokens) if g is not None else (None, None)

    def close():
        stop_was_set = stop.is_set()
        for _ in chunks:  # let the generator finish (its thread ends within one token once stopped)
            if not stop_was_set:
                stop.set()
        chunks.close()

    return _Opened(chunks=(c for c in chunks if isinstance(c, str)), usage=usage, close=close)


def _open_provider(model: catalog.ResolvedModel, call: _Call) -> _Opened:
    counts: dict = {}
    retryer = call.retrying()

    def start():
        response = _litellm().completion(**call.request(model), stream=True, stream_options={"include_usage": True})
        chunks = _text_chunks(response, counts)
        return response, chunks, next(chunks, None)  # errors that come with the first chunk are retried too

    try:
        response, chunks, first = retryer(start)
    except Exception as exc:
        exc._studio_retries = _retries(retryer)
        raise

    def replay():
        if first is not None:
            yield first
            yield from chunks

    def close():
        inner = getattr(response, "completion_stream", None)
        for thing in (chunks, inner):
            try:
                getattr(thing, "close", lambda: None)()
            except Exception:  # noqa: BLE001 - best effort: the connection is dropped anyway
                pass

    return _Opened(
        chunks=replay(),
        usage=lambda: (counts.get("prompt_tokens"), counts.get("completion_tokens")),
        close=close,
        retries=_retries(retryer),
    )


def _text_chunks(response, counts: dict) -> Iterator[str]:
    for chunk in response:
        usage = getattr(chunk, "usage", None)
        if usage is not None and getattr(usage, "completion_tokens", None):
            counts["prompt_tokens"] = int(usage.prompt_tokens or 0)
            counts["completion_tokens"] = int(usage.completion_tokens or 0)
        choices = getattr(chunk, "choices", None) or []
        text = getattr(getattr(choices[0], "delta", None), "content", None) if choices else None
        if text:
            yield text


def _count_tokens(model: catalog.ResolvedModel, *, messages=None, text: str | None = None) -> int:
    """A provider that was stopped sends no usage: count as litellm would bill (its tokenizer, else cl100k)."""
    try:
        if messages is not None:
            return int(_litellm().token_counter(model=model.litellm_model, messages=messages))
        return int(_litellm().token_counter(model=model.litellm_model, text=text or "")) if text else 0
    except Exception:  # noqa: BLE001
        return len((text or " ".join(str(m.get("content", "")) for m in messages or [])).split())


def stream(
    messages: list[dict],
    models: list[str] | str,
    *,
    temperature: float = 0.7,
    max_tokens: int = 512,
    timeout: float = 120.0,
    cache: bool | None = None,
    retry: RetryPolicy = RetryPolicy(),
    purpose: str = "",
    job_id: int | None = None,
    record: bool = True,
    **extra,
) -> ChatStream:
    """`chat`, streamed: iterate the ChatStream for text chunks, then its ChatResult. Raises like `chat`
    (AllModelsFailed when every model fails before its first chunk)."""
    call = _plan(messages, models, temperature, max_tokens, timeout, cache, retry, extra)
    return ChatStream(call, purpose, job_id, record)
