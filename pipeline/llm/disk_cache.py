"""The gateway's response cache: on disk, shared by every process, keyed on the whole request.

Written here over the `diskcache` library because litellm's own cache front, in this release,
imports its proxy server (fastapi, orjson, soundfile) on every cache hit.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import diskcache

_caches: dict[Path, diskcache.Cache] = {}
_lock = threading.Lock()


def request_key(model: str, messages: list[dict], params: dict) -> str:
    payload = json.dumps({"model": model, "messages": messages, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def _store(folder: Path) -> diskcache.Cache:
    with _lock:
        store = _caches.get(folder)
        if store is None:
            folder.mkdir(parents=True, exist_ok=True)
            store = _caches[folder] = diskcache.Cache(str(folder))
        return store


def get(folder: Path, key: str) -> dict | None:
    return _store(folder).get(key)


def put(folder: Path, key: str, value: dict) -> None:
    _store(folder).set(key, value)


def size(folder: Path) -> int:
    return len(_store(folder))
