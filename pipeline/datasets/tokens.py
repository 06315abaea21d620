"""Tokens per conversation, as a backend will count them.

Local models use their own tokenizer and chat template, so the count is exact. For cloud models
the studio has no copy of the provider's tokenizer; cl100k (bundled with litellm, so nothing is
downloaded) stands in, with OpenAI's per-message overhead. Counts are close, not exact.
"""

from __future__ import annotations

from functools import lru_cache

from pipeline.datasets.targets import Target

_PER_MESSAGE, _PER_REPLY = 3, 3  # OpenAI's cookbook overhead for chat formatting


@lru_cache(maxsize=1)
def _cl100k():
    from litellm.litellm_core_utils.default_encoding import encoding  # points tiktoken at litellm's bundled files

    return encoding


@lru_cache(maxsize=4)
def _local_tokenizer(model: str):
    from transformers import AutoTokenizer

    from pipeline.llm import embedded

    folder = embedded.model_path(model.removeprefix("local/"))
    if not (folder / "tokenizer.json").exists() and not (folder / "tokenizer_config.json").exists():
        return None  # not converted yet (`python -m pipeline init`): counted with cl100k instead
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def count(conversations: list[list[dict]], target: Target) -> list[int]:
    if not conversations:
        return []
    if target.tokenizer.startswith("local:"):
        tokenizer = _local_tokenizer(target.tokenizer.removeprefix("local:"))
        if tokenizer is None:
            return count_cl100k(conversations)
        texts = tokenizer.apply_chat_template(conversations, tokenize=False)
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    return count_cl100k(conversations)


def count_cl100k(conversations: list[list[dict]]) -> list[int]:
    flat = [m["content"] for c in conversations for m in c]
    lengths = iter(len(ids) for ids in _cl100k().encode_ordinary_batch(flat))
    return [sum(next(lengths) + _PER_MESSAGE for _ in c) + _PER_REPLY for c in conversations]
