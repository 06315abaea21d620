"""What a run will take, before it starts: calls, tokens, cost and time.

Token counts are estimates (about 1.35 tokens a word, plus each prompt's fixed part); prices come
from litellm's list for the first model of each stage's chain; time assumes that model answers.

Time comes from what this machine measured: every gateway call is recorded with its completion
tokens and latency (the llmcall table), so each model's speed here is its recent completion tokens
over their reply seconds (prompt processing included). Only a model with no records yet falls back
to a conservative figure, and the estimate then says it is rough.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlmodel import select

from pipeline.db import session_scope
from pipeline.generation.config import GenerationConfig
from pipeline.llm import catalog
from pipeline.models import LLMCall

TOKENS_PER_WORD = 1.35
# no records yet: conservative figures. The built-in model made 6 short examples (~2,000 completion
# tokens) in 6 minutes on a 2-core laptop, about 5.5 tokens/s with prompts and everything included.
LOCAL_TOKENS_PER_S = 5.0
REMOTE_TOKENS_PER_S = 40.0
REMOTE_OVERHEAD_S = 1.0
RECENT_CALLS = 200  # the speed now, not last month's
CONFIRM_OVER_S = 3600.0  # a run this long asks to be confirmed before it starts


@dataclass
class Speed:
    tokens_per_s: float
    calls: int  # the records it comes from; 0: the fallback figure

    @property
    def measured(self) -> bool:
        return self.calls > 0


@dataclass
class Estimate:
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None  # None: some model's price is unknown
    seconds: float
    speeds: dict[str, Speed] = field(default_factory=dict)  # per model timed

    @property
    def rough(self) -> bool:
        """Some model has no measured speed on this machine yet: a first run."""
        return any(not s.measured for s in self.speeds.values())

    @property
    def needs_confirmation(self) -> bool:
        return self.seconds > CONFIRM_OVER_S

    def speed_note(self) -> str:
        """One line: where the time comes from."""
        parts = [
            f"{model} {s.tokens_per_s:.1f} tokens/s"
            + (f" (measured here, {s.calls} calls)" if s.measured else " (not measured yet)")
            for model, s in self.speeds.items()
        ]
        lead = "First run: rough estimate. " if self.rough else "Time from this machine's measured speed: "
        return lead + "; ".join(parts) + "."


def stage_tokens(config: GenerationConfig, persona_prompt_words: int) -> dict[str, tuple[int, int]]:
    """(prompt, completion) tokens one example costs at each stage."""
    document_tokens = int(sum(config.document_words) / 2 * TOKENS_PER_WORD)
    response_tokens = int(config.response_words * TOKENS_PER_WORD)
    return {
        "scenario": (180, 110),
        "document": (150, document_tokens),
        "response": (int(persona_prompt_words * TOKENS_PER_WORD) + document_tokens + 60, response_tokens),
    }


def measured_speed(model: str) -> Speed:
    """The model's completion tokens per reply second over its recent successful, uncached calls."""
    with session_scope() as session:
        rows = session.exec(
            select(LLMCall.completion_tokens, LLMCall.latency_ms)
            .where(
                LLMCall.model_used == model,
                LLMCall.error.is_(None),
                LLMCall.cached == False,  # noqa: E712 - a cache hit says nothing about speed
                LLMCall.completion_tokens > 0,
                LLMCall.latency_ms > 0,
            )
            .order_by(LLMCall.id.desc())
            .limit(RECENT_CALLS)
        ).all()
    if rows:
        return Speed(sum(t for t, _ in rows) / (sum(ms for _, ms in rows) / 1000), len(rows))
    return Speed(LOCAL_TOKENS_PER_S if model.startswith("local/") else REMOTE_TOKENS_PER_S, 0)


def estimate(config: GenerationConfig, persona_prompt_words: int = 250) -> Estimate:
    per_stage = stage_tokens(config, persona_prompt_words)
    cost: float | None = 0.0
    seconds = 0.0
    speeds: dict[str, Speed] = {}
    for stage, (prompt, completion) in per_stage.items():
        model = config.chains()[stage][0]
        stage_price = catalog.price(model, prompt * config.examples, completion * config.examples)
        cost = None if cost is None or stage_price is None else cost + stage_price
        speed = speeds.setdefault(model, measured_speed(model))
        if model.startswith("local/"):
            # one CPU shared by every call in flight: counted as if one after another
            seconds += config.examples * completion / speed.tokens_per_s
        else:
            overhead = 0.0 if speed.measured else REMOTE_OVERHEAD_S  # measured latency already includes it
            per_call = overhead + completion / speed.tokens_per_s
            seconds += config.examples * per_call / config.concurrency
    return Estimate(
        calls=3 * config.examples,
        prompt_tokens=sum(p for p, _ in per_stage.values()) * config.examples,
        completion_tokens=sum(c for _, c in per_stage.values()) * config.examples,
        cost_usd=cost,
        seconds=seconds,
        speeds=speeds,
    )
