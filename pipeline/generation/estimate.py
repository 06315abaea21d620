"""What a run will take, before it starts: calls, tokens, cost and time, from the settings alone.

Token counts are estimates (about 1.35 tokens a word, plus each prompt's fixed part); prices come
from litellm's list for the first model of each stage's chain; time assumes that model answers.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.generation.config import GenerationConfig
from pipeline.llm import catalog

TOKENS_PER_WORD = 1.35
LOCAL_TOKENS_PER_S = 12.0  # the embedded model decoding on 2 CPU cores (measured; see README)
REMOTE_TOKENS_PER_S = 60.0
REMOTE_OVERHEAD_S = 1.0


@dataclass
class Estimate:
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None  # None: some model's price is unknown
    seconds: float


def _stage_tokens(config: GenerationConfig, persona_prompt_words: int) -> dict[str, tuple[int, int]]:
    document_tokens = int(sum(config.document_words) / 2 * TOKENS_PER_WORD)
    response_tokens = int(config.response_words * TOKENS_PER_WORD)
    return {
        "scenario": (180, 110),
        "document": (150, document_tokens),
        "response": (int(persona_prompt_words * TOKENS_PER_WORD) + document_tokens + 60, response_tokens),
    }


def estimate(config: GenerationConfig, persona_prompt_words: int = 250) -> Estimate:
    per_stage = _stage_tokens(config, persona_prompt_words)
    cost: float | None = 0.0
    seconds = 0.0
    for stage, (prompt, completion) in per_stage.items():
        model = config.chains()[stage][0]
        stage_price = catalog.price(model, prompt * config.examples, completion * config.examples)
        cost = None if cost is None or stage_price is None else cost + stage_price
        if model.startswith("local/"):
            seconds += config.examples * completion / LOCAL_TOKENS_PER_S  # one CPU: no overlap
        else:
            per_call = REMOTE_OVERHEAD_S + completion / REMOTE_TOKENS_PER_S
            seconds += config.examples * per_call / config.concurrency
    return Estimate(
        calls=3 * config.examples,
        prompt_tokens=sum(p for p, _ in per_stage.values()) * config.examples,
        completion_tokens=sum(c for _, c in per_stage.values()) * config.examples,
        cost_usd=cost,
        seconds=seconds,
    )
