"""Dynamic batching on the real embedded model: batched rows are the answers each caller asked for."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from pipeline.llm import embedded

pytestmark = pytest.mark.slow

QUESTIONS = ["What is a memo?", "Name one colour of the sky.", "Say hello to a new colleague.", "What is 2 plus 2?"]


def test_concurrent_requests_share_a_batch_and_each_gets_its_own_answer():
    asks = [([{"role": "user", "content": q}], limit) for q, limit in zip(QUESTIONS, [6, 12, 6, 12], strict=True)]
    alone = [embedded.generate(embedded.EMBEDDED_NAME, m, max_tokens=n, temperature=0) for m, n in asks]

    with ThreadPoolExecutor(len(asks)) as pool:
        together = list(
            pool.map(lambda a: embedded.generate(embedded.EMBEDDED_NAME, a[0], max_tokens=a[1], temperature=0), asks)
        )

    assert max(g.batch_size for g in together) > 1
    for (_, limit), single, batched in zip(asks, alone, together, strict=True):
        assert batched.completion_tokens <= limit
        assert batched.prompt_tokens == single.prompt_tokens  # padding is not counted
        assert batched.text == single.text  # greedy: the same answer, in the right row


def test_a_failing_batch_reaches_every_caller_as_an_error():
    worker = embedded.batcher(embedded.EMBEDDED_NAME)
    with pytest.raises(Exception):  # noqa: B017 - whatever the tokenizer raises, the caller must see it
        worker.generate([{"role": "nobody", "content": None}], max_tokens=4, temperature=0)
    assert embedded.generate(
        embedded.EMBEDDED_NAME, [{"role": "user", "content": "Hi"}], max_tokens=3, temperature=0
    ).text  # and the worker carries on
