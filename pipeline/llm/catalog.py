"""Which models the studio can call, and how: provider, key and endpoint for each name."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from dataclasses import dataclass, field

from pipeline import settings
from pipeline.errors import UserFacingError
from pipeline.llm import embedded


def _litellm():
    # Imported on first need (a provider's name to route or price): it takes seconds, and local and
    # Ollama names never need it.
    from pipeline.llm._litellm import litellm

    return litellm


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


OLLAMA_PREFIXES = ("ollama_chat/", "ollama/")
OLLAMA_PROBE_TIMEOUT_S = 0.5  # a server on this machine answers in milliseconds; none costs nothing noticeable
OLLAMA_PROBE_TTL_S = 15.0  # pickers are drawn on every rerun: ask the server at most this often


@dataclass(frozen=True)
class OllamaModel:
    name: str  # Ollama's own, e.g. llama3.2:3b
    size: int  # bytes on disk, as /api/tags reports: the larger, the more capable

    @property
    def reference(self) -> str:
        return f"ollama_chat/{self.name}"


_ollama_seen: dict[str, tuple[float, list[OllamaModel]]] = {}
_ollama_lock = threading.Lock()


def ollama_models(refresh: bool = False) -> list[OllamaModel]:
    """The models an Ollama server offers (GET /api/tags), or none when nothing answers in time.

    The answer, either way, is kept for OLLAMA_PROBE_TTL_S seconds per address."""
    base = settings.ollama_api_base()
    now = time.monotonic()
    with _ollama_lock:
        seen = _ollama_seen.get(base)
        if seen is not None and not refresh and now - seen[0] < OLLAMA_PROBE_TTL_S:
            return seen[1]
    try:
        with urllib.request.urlopen(f"{base}/api/tags", timeout=OLLAMA_PROBE_TIMEOUT_S) as response:
            listed = json.loads(response.read()).get("models") or []
        found = [OllamaModel(str(m["name"]), int(m.get("size") or 0)) for m in listed if m.get("name")]
    except (OSError, ValueError, TypeError, AttributeError, KeyError):  # nothing listening, or not Ollama
        found = []
    with _ollama_lock:
        _ollama_seen[base] = (time.monotonic(), found)
    return found


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
    if name.startswith(OLLAMA_PREFIXES):  # no key: the server's address is all it takes
        base = settings.ollama_api_base()
        return ResolvedModel(name, name, "ollama", configured=True, call_kwargs={"api_base": base})
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
        _, provider, _, _ = _litellm().get_llm_provider(name)
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
        return list(_litellm().validate_environment(model=name).get("missing_keys") or [])
    except Exception:  # noqa: BLE001 - unknown to litellm: no key names to ask for
        return []


def available_models() -> list[str]:
    """Models a picker offers: local ones, an Ollama server's, added endpoints, then suggestions for
    providers with keys."""
    names = [f"local/{n}" for n in embedded.local_model_names()]
    names += [m.reference for m in ollama_models()]
    names += sorted(settings.endpoints())
    for provider, suggestions in SUGGESTED.items():
        if settings.provider_configured(provider):
            names += suggestions
    return names


def price(name: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """Dollars for that many tokens on `name`; 0 for local models; None when the price is unknown."""
    model = resolve(name)
    if model.is_local or model.provider == "ollama":  # runs on your own machine
        return 0.0
    try:
        cost_in, cost_out = _litellm().cost_per_token(
            model=model.litellm_model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
        )
    except Exception:  # noqa: BLE001 - not in litellm's price list
        return None
    return float(cost_in + cost_out)


@dataclass(frozen=True)
class Recommendation:
    model: str
    why: str


def recommended_for_generation() -> Recommendation:
    """The model to write documents and replies with when no choice was made: the largest model an Ollama
    server offers, else the built-in one."""
    found = ollama_models()
    if found:
        largest = max(found, key=lambda m: m.size)
        return Recommendation(
            largest.reference,
            f"Recommended for documents and replies: {largest.reference} ({largest.size / 1e9:.1f} GB), the "
            "largest model your Ollama server offers. The built-in 135M model writes incoherent replies too "
            "often to teach a persona.",
        )
    return Recommendation(
        settings.EMBEDDED_MODEL,
        "The built-in 135M model needs no keys but writes incoherent replies too often to teach a persona. "
        "For real training data, run Ollama on this machine (its models then appear here) or add a key.",
    )
