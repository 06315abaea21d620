"""Ollama's models, with no keys: listed when a server answers (a real HTTP fake on 127.0.0.1 implementing the
documented /api/tags and /api/chat), absent at once when none does, called through the gateway like any model."""

from __future__ import annotations

import socket
import time

import pytest

from pipeline import settings
from pipeline.llm import catalog, chat, stream
from tests.conftest import write_secrets
from tests.fakes.ollama_server import FakeOllama


@pytest.fixture
def ollama(monkeypatch):
    with FakeOllama(reply="Happy to help you think it through.") as server:
        monkeypatch.setenv("OLLAMA_API_BASE", server.root)
        catalog.ollama_models(refresh=True)
        yield server


@pytest.fixture
def no_ollama(monkeypatch):
    """An address where nothing listens: a port taken from the OS, then closed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("OLLAMA_API_BASE", f"http://127.0.0.1:{port}")
    return port


def test_its_models_appear_in_every_picker(ollama):
    names = catalog.available_models()
    assert names[0] == settings.EMBEDDED_MODEL
    assert {"ollama_chat/llama3.2:3b", "ollama_chat/qwen2.5:0.5b", "ollama_chat/gemma3:4b"} <= set(names)
    model = catalog.resolve("ollama_chat/llama3.2:3b")
    assert model.configured and model.provider == "ollama" and catalog.price(model.name, 1000, 1000) == 0.0


def test_the_probe_is_cached_for_some_seconds(ollama):
    catalog.available_models()
    catalog.available_models()
    assert [p for p, _ in ollama.requests].count("/api/tags") == 1


def test_nothing_listening_costs_nothing_noticeable(no_ollama):
    started = time.perf_counter()
    names = catalog.available_models()
    assert time.perf_counter() - started < catalog.OLLAMA_PROBE_TIMEOUT_S + 0.5
    assert not any(n.startswith("ollama") for n in names)


def test_the_address_can_come_from_secrets_toml(monkeypatch):
    monkeypatch.delenv("OLLAMA_API_BASE", raising=False)
    with FakeOllama(models={"mistral:7b": 4_100_000_000}) as server:
        write_secrets(f'OLLAMA_API_BASE = "{server.root}"\n')
        assert "ollama_chat/mistral:7b" in catalog.available_models()


def test_a_chat_through_the_gateway(ollama):
    result = chat([{"role": "user", "content": "Help me plan."}], "ollama_chat/llama3.2:3b", cache=False)
    assert result.text == "Happy to help you think it through."
    assert result.model_used == "ollama_chat/llama3.2:3b" and result.cost_usd == 0.0
    assert result.completion_tokens == 7 and result.prompt_tokens == 3  # the server's eval counts
    [body] = [b for p, b in ollama.requests if p == "/api/chat"]
    assert body["model"] == "llama3.2:3b" and body["stream"] is False


def test_a_streamed_chat_through_the_gateway(ollama):
    items = list(stream([{"role": "user", "content": "Help me plan."}], "ollama_chat/gemma3:4b", cache=False))
    *chunks, result = items
    assert len(chunks) > 1 and "".join(chunks) == "Happy to help you think it through."
    assert result.model_used == "ollama_chat/gemma3:4b" and result.completion_tokens == 7
    [body] = [b for p, b in ollama.requests if p == "/api/chat"]
    assert body["stream"] is True


def test_an_unknown_ollama_model_falls_back(ollama):
    result = chat([{"role": "user", "content": "Hi"}], ["ollama_chat/missing:1b", "ollama_chat/qwen2.5:0.5b"],
                  cache=False)  # fmt: skip
    assert result.model_used == "ollama_chat/qwen2.5:0.5b" and "not found" in result.attempts[0].error


def test_generation_recommends_the_largest_ollama_model(ollama):
    advice = catalog.recommended_for_generation()
    assert advice.model == "ollama_chat/gemma3:4b"  # 3.3 GB, the largest listed
    assert "incoherent" in advice.why


def test_without_ollama_the_built_in_model_is_suggested_with_the_reason(no_ollama):
    advice = catalog.recommended_for_generation()
    assert advice.model == settings.EMBEDDED_MODEL and "Ollama" in advice.why


def test_the_generate_page_recommends_the_largest_ollama_model_for_documents_and_replies(ollama):
    from tests.test_pages import open_app

    at = open_app("pages/generate.py")
    assert not at.exception
    [advice] = [i.value for i in at.info if "Ollama" in i.value]
    assert "ollama_chat/gemma3:4b" in advice and "135M" in advice
    assert at.multiselect(key="chain_document").value == ["ollama_chat/gemma3:4b"]
    assert at.multiselect(key="chain_response").value == ["ollama_chat/gemma3:4b"]
    assert "ollama_chat/qwen2.5:0.5b" in at.multiselect(key="chain_scenario").options


def test_the_playground_lists_and_chats_with_an_ollama_model(ollama):
    from tests.test_pages import open_app

    at = open_app("pages/playground.py")
    at.selectbox(key="model_0").select("ollama_chat/llama3.2:3b").run()
    at.chat_input[0].set_value("Help me plan.").run()
    assert not at.exception
    assert at.chat_message[1].markdown[0].value == "Happy to help you think it through."
    assert at.chat_message[1].caption[0].value.startswith("**ollama_chat/llama3.2:3b**")
