"""Tokens per conversation, as a backend will count them.

Local models use their own tokenizer and chat template, so the count is exact. For cloud models
the studio has no copy of the provider's tokenizer; cl100k (bundled with litellm, so nothing is
downloaded) stands in, with OpenAI's per-message overhead. Counts are close, not exact.
"""

from __future__ import annotations

import importlib.util
import json
import os
from functools import lru_cache
from pathlib import Path

from pipeline.datasets.targets import Target

_PER_MESSAGE, _PER_REPLY = 3, 3  # OpenAI's cookbook overhead for chat formatting


@lru_cache(maxsize=1)
def _cl100k():
    # litellm bundles tiktoken's cl100k file; point tiktoken at it without importing litellm (seconds)
    import tiktoken

    spec = importlib.util.find_spec("litellm")
    if spec is not None and spec.submodule_search_locations and not os.environ.get("TIKTOKEN_CACHE_DIR"):
        bundled = Path(spec.submodule_search_locations[0]) / "litellm_core_utils" / "tokenizers"
        os.environ["TIKTOKEN_CACHE_DIR"] = str(bundled)
    return tiktoken.get_encoding("cl100k_base")


class LocalTokenizer:
    """A local model's tokenizer and chat template, read with `tokenizers` and jinja2 alone.

    transformers would import torch (seconds) to count tokens; the counts are the same (a test
    compares them), rendered the way transformers renders chat templates.
    """

    def __init__(self, folder: Path):
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        template_file = folder / "chat_template.jinja"
        source = template_file.read_text(encoding="utf-8") if template_file.exists() else config["chat_template"]
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.filters["tojson"] = lambda value, **kw: json.dumps(value, ensure_ascii=False, **kw)
        env.globals["raise_exception"] = _raise
        self.template = env.from_string(source)
        self.special = {k: v for k, v in config.items() if k.endswith("_token") and isinstance(v, str)}

    def count(self, conversations: list[list[dict]]) -> list[int]:
        texts = [self.template.render(messages=c, add_generation_prompt=False, **self.special) for c in conversations]
        return [len(e.ids) for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]


def _raise(message: str):
    from jinja2.exceptions import TemplateError

    raise TemplateError(message)


@lru_cache(maxsize=4)
def _local_tokenizer(model: str) -> LocalTokenizer | None:
    from pipeline.llm import embedded

    folder = embedded.model_path(model.removeprefix("local/"))
    if not (folder / "tokenizer.json").exists() or not (folder / "tokenizer_config.json").exists():
        return None  # not converted yet (`python -m pipeline init`): counted with cl100k instead
    return LocalTokenizer(folder)


def count(conversations: list[list[dict]], target: Target) -> list[int]:
    if not conversations:
        return []
    if target.tokenizer.startswith("local:"):
        tokenizer = _local_tokenizer(target.tokenizer.removeprefix("local:"))
        if tokenizer is None:
            return count_cl100k(conversations)
        return tokenizer.count(conversations)
    return count_cl100k(conversations)


def count_cl100k(conversations: list[list[dict]]) -> list[int]:
    flat = [m["content"] for c in conversations for m in c]
    lengths = iter(len(ids) for ids in _cl100k().encode_ordinary_batch(flat))
    return [sum(next(lengths) + _PER_MESSAGE for _ in c) + _PER_REPLY for c in conversations]
