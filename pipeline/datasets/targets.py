"""What each backend fine-tunes, and what it asks of a dataset: context limit, minimum size, price.

Prices are per million training tokens as the providers published them (2025); the studio shows
them as estimates. The training issue's backends read their base models from here too.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline import settings


@dataclass(frozen=True)
class Target:
    backend: str  # local | together | openai
    base_model: str
    context_tokens: int  # the longest example the backend trains on
    min_examples: int  # fewer is refused by the provider
    recommended_examples: int  # fewer works, but rarely teaches a persona
    usd_per_million_tokens: float
    tokenizer: str  # "local:<path>" (the model's own) or "cl100k" (a close stand-in for the provider's)

    @property
    def label(self) -> str:
        return f"{self.backend}: {self.base_model}"


TARGETS = [
    Target("local", settings.EMBEDDED_MODEL, 2048, 1, 50, 0.0, f"local:{settings.EMBEDDED_MODEL}"),
    Target("together", "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference", 8192, 1, 50, 0.48, "cl100k"),
    Target("openai", "gpt-4o-mini-2024-07-18", 65536, 10, 50, 3.00, "cl100k"),
    Target("openai", "gpt-4.1-mini-2025-04-14", 65536, 10, 50, 5.00, "cl100k"),
    Target("openai", "gpt-4.1-nano-2025-04-14", 65536, 10, 50, 1.50, "cl100k"),
]
DEFAULT = TARGETS[0]


def get(label_or_model: str) -> Target:
    for target in TARGETS:
        if label_or_model in (target.label, target.base_model):
            return target
    raise KeyError(label_or_model)


def epochs(target: Target, examples: int, requested: int | None = None) -> int:
    """Epochs the backend will run: as asked, else OpenAI's documented default for `auto`."""
    if requested:
        return requested
    if target.backend != "openai" or examples == 0:
        return 3
    # OpenAI's "auto": 3, raised for small sets toward 100 example passes, lowered for huge ones
    if examples * 3 < 100:
        return min(25, 100 // examples)
    if examples * 3 > 25_000:
        return max(1, 25_000 // examples)
    return 3
