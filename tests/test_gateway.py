"""The LLM gateway: the real embedded model, and real HTTP to OpenAI-compatible servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlmodel import select

from pipeline import settings
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.llm import AllModelsFailed, RetryPolicy, achat, chat
from pipeline.models import LLMCall
from tests.conftest import write_secrets
from tests.fakes.openai_server import FakeOpenAI

FAST = RetryPolicy(attempts=4, base_delay=0.05, max_delay=1.0)
HELLO = [{"role": "user", "content": "Say hello."}]


def calls() -> list[LLMCall]:
    with session_scope() as session:
        return list(session.exec(select(LLMCall).order_by(LLMCall.id)))


@pytest.mark.slow
def test_embedded_model_answers_with_real_usage_counts():
    result = chat(HELLO, settings.EMBEDDED_MODEL, max_tokens=12, temperature=0, cache=False)

    assert result.text
    assert result.model_used == settings.EMBEDDED_MODEL
    assert result.prompt_tokens > 5  # the chat template wraps the message
    assert 1 <= result.completion_tokens <= 12
    assert result.cost_usd == 0.0
    [row] = calls()
    assert row.model_used == settings.EMBEDDED_MODEL
    assert row.completion_tokens == result.completion_tokens


def test_a_failing_provider_falls_back_and_the_failure_is_recorded(endpoints):
    primary, backup = endpoints
    primary.fail_next(*["500"] * FAST.attempts)

    result = chat(HELLO, ["primary", "backup"], retry=FAST, cache=False)

    assert result.text == "Backup answer."
    assert result.model_used == "backup" and result.fell_back
    assert len(primary.requests) == FAST.attempts  # a 5xx is retried before giving up on the model
    [attempt] = result.attempts
    assert attempt.model == "primary" and "The server had an error" in attempt.error
    [row] = calls()
    assert row.model_used == "backup"
    assert row.attempts[0]["model"] == "primary"


def test_a_rate_limited_provider_is_retried_with_backoff_then_answers(endpoints):
    primary, _ = endpoints
    primary.fail_next("429", "429")

    started = time.perf_counter()
    result = chat(HELLO, ["primary", "backup"], retry=FAST, cache=False)
    waited = time.perf_counter() - started

    assert result.model_used == "primary" and result.text == "Primary answer."
    assert result.retries == 2 and not result.attempts
    assert len(primary.requests) == 3
    assert waited >= 2 * 0.2  # the server's Retry-After (0.2 s) was honoured on each retry


def test_an_auth_error_is_not_retried(endpoints):
    primary, backup = endpoints
    primary.fail_next("401")

    result = chat(HELLO, ["primary", "backup"], retry=FAST, cache=False)

    assert len(primary.requests) == 1
    assert result.model_used == "backup"
    assert "Incorrect API key" in result.attempts[0].error


def test_the_second_identical_call_is_answered_from_cache(endpoints):
    primary, _ = endpoints
    first = chat(HELLO, "primary", temperature=0)
    second = chat(HELLO, "primary", temperature=0)
    assert len(primary.requests) == 1
    assert not first.cached and second.cached
    assert second.text == first.text and second.cost_usd == 0.0

    chat(HELLO, "primary", temperature=0.5)  # other parameters: another request
    chat(HELLO, "primary", temperature=0, cache=False)  # cache switched off
    assert len(primary.requests) == 3


def test_a_chain_with_no_configured_model_says_what_to_set():
    with pytest.raises(UserFacingError) as caught:
        chat(HELLO, ["anthropic/claude-haiku-4-5", "openai/gpt-4.1-mini"])
    message = str(caught.value)
    assert "ANTHROPIC_API_KEY" in message and "OPENAI_API_KEY" in message
    assert settings.EMBEDDED_MODEL in message


def test_unconfigured_models_are_skipped_with_a_note(endpoints):
    result = chat(HELLO, ["anthropic/claude-haiku-4-5", "backup"], cache=False)
    assert result.model_used == "backup"
    assert result.attempts[0].model == "anthropic/claude-haiku-4-5"
    assert "ANTHROPIC_API_KEY" in result.attempts[0].error


def test_when_every_model_fails_the_error_names_each_provider_message(endpoints):
    primary, backup = endpoints
    primary.fail_next("401")
    backup.fail_next("401")
    with pytest.raises(AllModelsFailed) as caught:
        chat(HELLO, ["primary", "backup"], retry=FAST, cache=False)
    assert [a.model for a in caught.value.attempts] == ["primary", "backup"]
    assert "Incorrect API key" in str(caught.value)
    assert calls()[-1].error == "all models failed"


def test_an_unknown_model_name_is_a_clear_error():
    with pytest.raises(UserFacingError, match="Unknown model 'no-such-model'"):
        chat(HELLO, "no-such-model")


def test_keys_never_reach_the_database_or_error_messages(endpoints, studio, monkeypatch):
    primary, _ = endpoints
    key = "sk-test-secret-key-0042"
    monkeypatch.setenv("PRIMARY_KEY", key)
    write_secrets(f'[endpoints.primary]\napi_base = "{primary.api_base}"\nmodel = "m"\napi_key_env = "PRIMARY_KEY"\n')
    primary.fail_next("401")  # this server echoes the key it was sent

    with pytest.raises(AllModelsFailed) as caught:
        chat(HELLO, "primary", retry=FAST, cache=False)

    assert "Bearer" not in str(caught.value)
    assert key not in str(caught.value) and "***" in str(caught.value)
    stored = b"".join(p.read_bytes() for p in studio.rglob("*") if p.is_file())
    assert key.encode() not in stored


def test_async_calls_run_concurrently_through_the_same_chain(endpoints):
    primary, _ = endpoints
    primary.delay = 0.3

    async def three():
        prompts = [[{"role": "user", "content": f"Question {i}"}] for i in range(3)]
        return await asyncio.gather(*(achat(p, ["primary", "backup"], cache=False) for p in prompts))

    results = asyncio.run(three())
    assert [r.model_used for r in results] == ["primary"] * 3
    assert len(primary.requests) == 3
    assert len(calls()) == 3


def test_cost_comes_from_the_price_list_for_a_priced_model():
    from pipeline.llm._litellm import litellm

    with FakeOpenAI(reply="Priced answer with a few words.") as server:
        write_secrets(f'[endpoints.priced]\napi_base = "{server.api_base}"\nmodel = "gpt-4o-mini"\n')
        result = chat(HELLO, "priced", cache=False)
    expected = sum(
        litellm.cost_per_token(
            model="gpt-4o-mini", prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens
        )
    )
    assert result.cost_usd > 0
    assert result.cost_usd == pytest.approx(expected)
    assert calls()[-1].cost_usd == pytest.approx(expected)
