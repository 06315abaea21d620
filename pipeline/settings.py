"""Where things live and which providers are configured.

Keys come from the environment first, then `.streamlit/secrets.toml`. They are read
on demand and handed to the provider call; nothing here stores or prints them.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pipeline.errors import UserFacingError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EMBEDDED_MODEL = "local/smollm2-135m-instruct"

# provider → the key that enables it
PROVIDER_KEYS = {
    "anthropic": "ANTHROPIC_API_KEY",
    "openai": "OPENAI_API_KEY",
    "together": "TOGETHER_API_KEY",
}
PROVIDER_LABELS = {
    "anthropic": "Anthropic",
    "openai": "OpenAI",
    "together": "Together",
    "local": "Embedded (SmolLM2-135M)",
}


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible server added by the user (vLLM, a proxy, a test server)."""

    name: str
    api_base: str
    model: str
    api_key_env: str | None = None


def data_dir() -> Path:
    return Path(os.environ.get("STUDIO_DATA_DIR", PROJECT_ROOT / "data")).resolve()


def models_dir() -> Path:
    """Converted and fine-tuned local models. Separate knob so test data folders can share one copy."""
    return Path(os.environ.get("STUDIO_MODELS_DIR", data_dir() / "models")).resolve()


def personas_dir() -> Path:
    return data_dir() / "personas"


def cache_dir() -> Path:
    return data_dir() / "cache"


def logs_dir() -> Path:
    return data_dir() / "logs"


def database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{data_dir() / 'studio.db'}"


def secrets_file() -> Path:
    return Path(os.environ.get("STUDIO_SECRETS_FILE", PROJECT_ROOT / ".streamlit" / "secrets.toml"))


def _read_secrets(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        # Never echo the file: it holds keys.
        raise UserFacingError(f"{path} is not valid TOML ({type(exc).__name__}); fix or remove it.") from None


@lru_cache(maxsize=8)
def _secrets_cached(path: str, mtime: float) -> dict:
    return _read_secrets(Path(path))


def secrets() -> dict:
    path = secrets_file()
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return {}
    return _secrets_cached(str(path), mtime)


def get_secret(name: str) -> str | None:
    """A key from the environment, else from secrets.toml; None when unset or blank."""
    value = os.environ.get(name) or secrets().get(name)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def setting(table: str, name: str) -> str | None:
    """A tunable setting: `STUDIO_<TABLE>_<NAME>` in the environment, else `name` in the settings file's
    (`.streamlit/secrets.toml`) `[table]`; None when neither sets it. The caller parses and checks it."""
    value = os.environ.get(f"STUDIO_{table}_{name}".upper())
    if value is None or not value.strip():
        value = (secrets().get(table) or {}).get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return str(value).strip()


def provider_configured(provider: str) -> bool:
    if provider == "local":
        return True
    key = PROVIDER_KEYS.get(provider)
    return bool(key and get_secret(key))


def configured_providers() -> dict[str, bool]:
    """Provider label → configured? For the sidebar: never the keys themselves."""
    return {PROVIDER_LABELS[p]: provider_configured(p) for p in ("local", "anthropic", "openai", "together")}


OLLAMA_DEFAULT_BASE = "http://127.0.0.1:11434"


def ollama_api_base() -> str:
    """Where an Ollama server may answer: OLLAMA_API_BASE (environment or secrets.toml), else this machine."""
    return (get_secret("OLLAMA_API_BASE") or OLLAMA_DEFAULT_BASE).rstrip("/")


def endpoints() -> dict[str, Endpoint]:
    table = secrets().get("endpoints", {}) or {}
    found = {}
    for name, spec in table.items():
        if not isinstance(spec, dict) or not spec.get("api_base"):
            continue
        found[name] = Endpoint(
            name=name,
            api_base=str(spec["api_base"]),
            model=str(spec.get("model", name)),
            api_key_env=spec.get("api_key_env"),
        )
    return found


def key_names() -> set[str]:
    """The names of every key the studio may use: the providers' and the custom endpoints'."""
    names = set(PROVIDER_KEYS.values()) | {"TOGETHERAI_API_KEY"}
    return names | {e.api_key_env for e in endpoints().values() if e.api_key_env}


def redact(text: str) -> str:
    """`text` with every configured key replaced by ***: for provider messages shown or stored."""
    for name in key_names():
        value = get_secret(name)
        if value and len(value) >= 6:
            text = text.replace(value, "***")
    return text
