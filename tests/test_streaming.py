"""The gateway's streamed replies: real SSE from an OpenAI-compatible server on 127.0.0.1, and the tiny local model."""

from __future__ import annotations

import threading
import time

import pytest
from sqlmodel import select

from pipeline.db import session_scope
from pipeline.llm import AllModelsFailed, ChatResult, RetryPolicy, stream
from pipeline.models import LLMCall
from tests.conftest import write_secrets
from tests.fakes.openai_server import FakeOpenAI
from tests.tiny_model import TINY

FAST = RetryPolicy(attempts=2, base_delay=0.05, max_delay=0.2)
HELLO = [{"role": "user", "content": "Say hello."}]
REPLY = "one two three four five six seven eight nine ten"


def calls() -> list[LLMCall]:
    with session_scope() as session:
        return list(session.exec(select(LLMCall).order_by(LLMCall.id)))


@pytest.fixture
def streaming_servers():
    with FakeOpenAI(reply=REPLY, chunk_delay=0.02) as primary, FakeOpenAI(reply="Backup answer.") as backup:
        write_secrets(
            f'[endpoints.primary]\napi_base = "{primary.api_base}"\nmodel = "primary-model"\n'
            f'[endpoints.backup]\napi_base = "{backup.api_base}"\nmodel = "backup-model"\n'
        )
        yield primary, backup


def test_a_provider_streams_its_chunks_in_order_then_the_record(streaming_servers):
    primary, _ = streaming_servers
    items = list(stream(HELLO, ["primary"], cache=False, purpose="playground"))

    *chunks, result = items
    assert all(isinstance(c, str) for c in chunks) and len(chunks) == 10
    assert "".join(chunks) == REPLY
    assert isinstance(result, ChatResult)
    assert result.text == REPLY and result.model_used == "primary" and not result.stopped
    assert result.completion_tokens == 10 and result.prompt_tokens == 2  # the server's own usage chunk
    assert result.first_token_ms is not None and result.latency_ms >= result.first_token_ms
    assert primary.requests[0]["stream"] is True
    [row] = calls()
    assert row.model_used == "primary" and row.completion_tokens == 10 and row.purpose == "playground"


def test_stop_mid_stream_keeps_the_partial_text_and_records_it(streaming_servers):
    primary, _ = streaming_servers
    primary.chunk_delay = 0.2
    reply = stream(HELLO, ["primary"], cache=False)
    received = []
    for item in reply:
        if isinstance(item, str):
            received.append(item)
            if len(received) == 3:
                reply.stop()
    result = reply.result
    assert result.stopped and result.text == "one two three"
    assert "".join(received).strip() == result.text
    assert primary.chunks_sent < 8  # the server was not read to the end
    [row] = calls()
    assert row.model_used == "primary" and 3 <= row.completion_tokens <= 5  # counted here: no usage chunk came


def test_a_model_failing_before_its_first_chunk_falls_back(streaming_servers):
    primary, _ = streaming_servers
    primary.fail_next("500", "500")
    items = list(stream(HELLO, ["primary", "backup"], cache=False, retry=FAST))
    result = items[-1]
    assert "".join(items[:-1]) == "Backup answer." and result.model_used == "backup" and result.fell_back
    assert result.attempts[0].model == "primary" and "The server had an error" in result.attempts[0].error


def test_every_model_failing_raises_and_is_recorded(streaming_servers):
    primary, _ = streaming_servers
    primary.fail_next("401")
    with pytest.raises(AllModelsFailed, match="Incorrect API key"):
        list(stream(HELLO, ["primary"], cache=False, retry=FAST))
    [row] = calls()
    assert row.error == "all models failed"


def test_the_local_model_streams_more_than_one_chunk(models):
    reply = stream(HELLO, [f"local/{TINY}"], max_tokens=24, temperature=0, cache=False)
    items = list(reply)
    chunks, result = items[:-1], items[-1]
    assert len(chunks) > 1
    assert result.model_used == f"local/{TINY}" and result.cost_usd == 0.0
    assert result.completion_tokens >= 2 and result.prompt_tokens > 5 and not result.stopped
    assert "".join(chunks).strip() == result.text


def test_stop_really_ends_local_generation_early(models):
    from pipeline.llm import embedded

    local = embedded.stream(TINY, HELLO, max_tokens=400, temperature=0, seed=0)
    # the tiny random model never says EOS: without the stop it would make all 400 tokens
    timer = threading.Timer(0.3, local.stop)
    started = time.perf_counter()
    timer.start()
    chunks = list(local)
    assert local.stopped and local.generation.finish_reason == "stopped"
    assert 0 < local.generation.completion_tokens < 400
    assert chunks and time.perf_counter() - started < 30


def test_stop_through_the_gateway_on_the_local_model(models):
    reply = stream(HELLO, [f"local/{TINY}"], max_tokens=400, temperature=0, cache=False)
    seen = 0
    for item in reply:
        if isinstance(item, str):
            seen += 1
            if seen == 2:
                reply.stop()
    assert reply.result.stopped and reply.result.completion_tokens < 400
    [row] = calls()
    assert row.completion_tokens == reply.result.completion_tokens


def test_a_live_reply_stopped_by_its_reader_keeps_the_partial_text(streaming_servers):
    from pipeline.playground import LiveReply

    primary, _ = streaming_servers
    primary.chunk_delay = 0.2
    ended = []
    live = LiveReply(stream(HELLO, ["primary"], cache=False), on_done=ended.append)
    heartbeats = 0
    for item in live.events(every=0.05):
        if item is None:
            heartbeats += 1  # the reader is never blocked on the model
        elif isinstance(item, str) and live.text.count(" ") >= 1:
            live.stop()
    assert live.wait(5) and ended == [live]
    assert heartbeats > 0
    assert live.result.stopped and live.result.text.startswith("one two")
    assert len(live.result.text.split()) < 10
