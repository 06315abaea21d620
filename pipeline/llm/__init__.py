"""The LLM gateway: every chat call in the studio goes through `chat`, `achat` or `stream`.

The gateway's names are loaded on first use: importing litellm takes seconds, and commands that
call no model (`jobs`, `datasets list`, `models list`, `personas`) import `pipeline.llm.embedded`
and nothing more.
"""

from __future__ import annotations

import importlib

__all__ = ["AllModelsFailed", "Attempt", "ChatResult", "ChatStream", "RetryPolicy", "achat", "chat", "stream"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module("pipeline.llm.gateway"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
