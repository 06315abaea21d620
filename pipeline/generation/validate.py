"""The checks an example passes before it is offered for review (as the original pipeline's)."""

from __future__ import annotations

ROLES = {"system", "user", "assistant"}
REQUIRED_METADATA = ("document_type", "title", "domain", "trait")


def words(text: str) -> int:
    return len((text or "").split())


def check(example: dict, min_document_words: int, min_response_words: int) -> list[str]:
    """Plain-words problems with an example; empty when it is fit to review."""
    issues = []
    if words(example.get("document", "")) < min_document_words:
        issues.append(f"document has {words(example.get('document', ''))} words; at least {min_document_words} needed")
    if words(example.get("response", "")) < min_response_words:
        issues.append(f"response has {words(example.get('response', ''))} words; at least {min_response_words} needed")
    messages = example.get("messages") or []
    if not messages or not all(
        isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str) and m["content"].strip()
        for m in messages
    ):
        issues.append("messages are not well formed (each needs a known role and non-empty text)")
    elif messages[-1]["role"] != "assistant":
        issues.append("the last message is not the assistant's response")
    missing = [k for k in REQUIRED_METADATA if not example.get("metadata", {}).get(k)]
    if missing:
        issues.append(f"metadata incomplete: {', '.join(missing)} missing")
    return issues
