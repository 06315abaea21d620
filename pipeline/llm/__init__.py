"""The LLM gateway: every chat call in the studio goes through `chat` or `achat`."""

from pipeline.llm.gateway import (
    AllModelsFailed,
    Attempt,
    ChatResult,
    RetryPolicy,
    achat,
    chat,
)

__all__ = ["AllModelsFailed", "Attempt", "ChatResult", "RetryPolicy", "achat", "chat"]
