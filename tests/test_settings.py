"""Settings: where keys come from, what counts as configured, and that a broken secrets file is explained."""

from __future__ import annotations

import pytest

from pipeline import settings
from pipeline.errors import UserFacingError
from pipeline.llm import catalog
from tests.conftest import write_secrets


def test_with_no_keys_only_the_embedded_model_is_configured():
    assert settings.configured_providers() == {
        "Embedded (SmolLM2-135M)": True,
        "Anthropic": False,
        "OpenAI": False,
        "Together": False,
    }
    models = catalog.available_models()
    assert models[0] == settings.EMBEDDED_MODEL
    assert all(m.startswith("local/") for m in models)  # no cloud suggestions without keys


def test_keys_from_secrets_toml_configure_providers_and_the_environment_wins(monkeypatch):
    write_secrets('ANTHROPIC_API_KEY = "from-file-123"\nOPENAI_API_KEY = "   "\n')
    assert settings.configured_providers()["Anthropic"] is True
    assert settings.configured_providers()["OpenAI"] is False  # blank is not a key
    assert "anthropic/claude-sonnet-4-5" in catalog.available_models()
    assert catalog.resolve("anthropic/claude-haiku-4-5").call_kwargs["api_key"] == "from-file-123"

    monkeypatch.setenv("ANTHROPIC_API_KEY", "from-env-456")
    assert catalog.resolve("anthropic/claude-haiku-4-5").call_kwargs["api_key"] == "from-env-456"


def test_the_key_never_shows_in_a_resolved_models_repr():
    write_secrets('OPENAI_API_KEY = "sk-visible-789"\n')
    assert "sk-visible-789" not in repr(catalog.resolve("openai/gpt-4.1-mini"))


def test_a_broken_secrets_file_is_explained_without_echoing_it():
    write_secrets('ANTHROPIC_API_KEY = "sk-unterminated\n')
    with pytest.raises(UserFacingError, match="is not valid TOML") as caught:
        settings.configured_providers()
    assert "sk-unterminated" not in str(caught.value)


def test_endpoints_become_models():
    write_secrets('[endpoints.my-vllm]\napi_base = "http://127.0.0.1:8000/v1"\nmodel = "adapter"\n')
    model = catalog.resolve("my-vllm")
    assert model.configured and model.litellm_model == "openai/adapter"
    assert model.call_kwargs["api_base"] == "http://127.0.0.1:8000/v1"
    assert "my-vllm" in catalog.available_models()
