"""Which models the studio can call, and how: provider, key and endpoint for each name."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline import settings
from pipeline.errors import UserFacingError
from pipeline.llm import embedded
from pipeline.llm._litellm import litellm

# litellm provider → the variable our settings read its key from
_KEY_FOR_PROVIDER = {
    "anthropic": "ANTHROPIC_API_KEY",
    "openai": "OPENAI_API_KEY",
    "together_ai": "TOGETHER_API_KEY",
}

# Good first choices per provider, offered in model pickers when the provider has a key.
SUGGESTED = {
    "anthropic": ["anthropic/claude-sonnet-4-5", "anthropic/claude-haiku-4-5"],
    "openai": ["openai/gpt-4.1-mini", "openai/gpt-4.1"],
    "together": [
        "together_ai/meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo",
        "together_ai/meta-llama/Llama-3.3-70B-Instruct-Turbo",
    ],
}


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # as the user wrote it
    litellm_model: str
    provider: str
    configured: bool
    missing: str = ""  # what to set when not configured
    call_kwargs: dict = field(default_factory=dict, repr=False)  # api_key / api_base: never logged

    @property
    def is_local(self) -> bool:
        return self.provider == "local"


def resolve(name: str) -> ResolvedModel:
    name = (name or "").strip()
    if not name:
        raise UserFacingError("No model given.")
    if name.startswith("local/"):
        return ResolvedModel(name, name, "local", configured=True)
    endpoint = settings.endpoints().get(name)
    if endpoint is not None:
        key = settings.get_secret(endpoint.api_key_env) if endpoint.api_key_env else None
        return ResolvedModel(
            name,
            f"openai/{endpoint.model}",
            "endpoint",
            configured=True,
            call_kwargs={"api_base": endpoint.api_base, "api_key": key or "no-key"},
        )
    try:
        _, provider, _, _ = litellm.get_llm_provider(name)
    except Exception:  # noqa: BLE001 - litellm raises several kinds for a name it cannot route
        raise UserFacingError(
            f"Unknown model {name!r}. Write it as provider/model, e.g. anthropic/claude-haiku-4-5, "
            f"openai/gpt-4.1-mini, or {settings.EMBEDDED_MODEL}."
        ) from None
    key_names = [_KEY_FOR_PROVIDER[provider]] if provider in _KEY_FOR_PROVIDER else _litellm_key_names(name)
    values = [settings.get_secret(k) for k in key_names]
    if all(values):
        kwargs = {"api_key": values[0]} if len(values) == 1 else {}
        return ResolvedModel(name, name, provider, configured=True, call_kwargs=kwargs)
    missing = " and ".join(k for k, v in zip(key_names, values, strict=True) if not v)
    return ResolvedModel(name, name, provider, configured=False, missing=f"set {missing}")


def _litellm_key_names(name: str) -> list[str]:
    try:
        return list(litellm.validate_environment(model=name).get("missing_keys") or [])
    except Exception:  # noqa: BLE001 - unknown to litellm: no key names to ask for
        return []


def available_models() -> list[str]:
    """Models a picker offers: local ones, added endpoints, then suggestions for providers with keys."""
    names = [f"local/{n}" for n in embedded.local_model_names()]
    names += sorted(settings.endpoints())
    for provider, suggestions in SUGGESTED.items():
        if settings.provider_configured(provider):
            names += suggestions
    return names


def price(name: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """Dollars for that many tokens on `name`; 0 for local models; None when the price is unknown."""
    model = resolve(name)
    if model.is_local:
        return 0.0
    try:
        cost_in, cost_out = litellm.cost_per_token(
            model=model.litellm_model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except Exception:  # noqa: BLE001 - not in litellm's price list
        return None
    return float(cost_in + cost_out)
