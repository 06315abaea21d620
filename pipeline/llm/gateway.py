"""The one door every chat call in the studio goes through.

For each call: walk an ordered fallback chain of models; retry a model on transient errors
(rate limits, timeouts, 5xx) with exponential backoff, honouring Retry-After; give each call a
timeout; answer from the disk cache when the same request was made before; record the model
that answered, tokens, latency and cost (litellm's price list) in the LLMCall table.

The chain walk is written here rather than left to litellm's `fallbacks=` because the studio
shows which models failed, and why, before the one that answered.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import asdict, dataclass, field

import tenacity

from pipeline import settings
from pipeline.errors import UserFacingError
from pipeline.llm import catalog, disk_cache
from pipeline.llm._litellm import litellm

_TRANSIENT = (
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
        usage = getattr(response, "usage", None)
        result = ChatResult(
            text=(response.choices[0].message.content or "").strip(),
            model_used=model.name,
            models_requested=self.chain,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
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
    if isinstance(exc, _TRANSIENT):
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
        return float(litellm.completion_cost(completion_response=response) or 0.0)
    except Exception:  # noqa: BLE001
        return 0.0  # a model missing from litellm's price list: cost unknown, counted as zero


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
                response = retryer(litellm.completion, **call.request(model))
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
                response = await retryer(litellm.acompletion, **call.request(model))
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
