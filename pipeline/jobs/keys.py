"""Which provider keys a job needs, and whether the background worker will see them.

A queued job runs in the monitor's process tree, with the studio's settings: the monitor's
environment and `.streamlit/secrets.toml`. A key set only in the shell that queued the job never
reaches it, so such a job is refused when it is submitted, with where to put the key, instead of
failing later in the monitor. A job a command line runs itself uses that shell's keys.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from pipeline import settings
from pipeline.errors import UserFacingError

# Model names are litellm's provider/model; no litellm import here: the job commands stay quick.
PREFIX_KEYS = {
    "anthropic/": "ANTHROPIC_API_KEY",
    "openai/": "OPENAI_API_KEY",
    "together_ai/": "TOGETHER_API_KEY",
}
KIND_KEYS = {"train_openai": "OPENAI_API_KEY", "train_together": "TOGETHER_API_KEY"}

_command_line = False


@contextmanager
def command_line() -> Iterator[None]:
    """While a command runs: this process is a shell's, and no worker shares that shell's keys."""
    global _command_line
    before, _command_line = _command_line, True
    try:
        yield
    finally:
        _command_line = before


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def needed(kind: str, params: dict) -> set[str]:
    """Key names this job will ask for: its kind's, and each model named in its parameters."""
    names = {KIND_KEYS[kind]} if kind in KIND_KEYS else set()
    endpoints = settings.endpoints()
    for text in _strings(params):
        for prefix, key in PREFIX_KEYS.items():
            if text.startswith(prefix):
                names.add(key)
        endpoint = endpoints.get(text)
        if endpoint is not None and endpoint.api_key_env:
            names.add(endpoint.api_key_env)
    return names


def missing_for(kind: str) -> str | None:
    """Why a job of this kind cannot run here for want of a key, in words; None when its key is set."""
    name = KIND_KEYS.get(kind)
    if name is None or settings.get_secret(name):
        return None
    return (
        f"This needs {name}: put it in {settings.secrets_file()} (copy .streamlit/secrets.toml.example), "
        "or set it in the environment the studio starts with, then reload the page."
    )


def unseen_by_worker(kind: str, params: dict, worker_keys: list[str] | None) -> list[str]:
    """Keys the job needs that are set in this process's environment only, where the worker won't look.

    `worker_keys`: the key names a running monitor published, or None when none runs.
    """
    in_file = settings.secrets()
    unseen = []
    for name in sorted(needed(kind, params)):
        if not os.environ.get(name, "").strip() or str(in_file.get(name, "")).strip():
            continue  # not set here (the job's own check names it), or in the file every process reads
        if worker_keys is not None:
            if name not in worker_keys:
                unseen.append(name)
        elif _command_line:
            unseen.append(name)  # the studio's own process starts the monitor with its environment
    return unseen


def check_worker_sees(kind: str, params: dict, worker_keys: list[str] | None) -> None:
    unseen = unseen_by_worker(kind, params, worker_keys)
    if not unseen:
        return
    names = " and ".join(unseen)
    raise UserFacingError(
        f"This job needs {names}, which is set only in this shell's environment: the background worker "
        f"that runs queued jobs cannot see it. Put it in {settings.secrets_file()} (copy "
        ".streamlit/secrets.toml.example), or set it where the studio and its monitor are started; "
        "or run the job here instead of queueing it."
    )
