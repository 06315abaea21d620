"""Prompt fidelity: how close a model, as it is asked, comes to its base model *with* the persona's prompt.

For each held-out prompt the prompted base model writes its own reply. Every contestant then reads
that reply in its own context (a fine-tuned model without the prompt, the base without it, ...) and
we measure KL(prompted base ‖ contestant) per reply token: 0 means the contestant would write
exactly what the prompted base writes. "Gap closed" puts it on a scale a person can read:
100 × (1 − KL(contestant) / KL(base without prompt)): 0% is the plain base, 100% the prompted one.
Intervals are a bootstrap over prompts, paired (the same prompts for contestant and plain base).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.llm import embedded
from pipeline.training import distill

PROMPTS = 12  # held-out prompts measured: the interval is over these
MAX_REPLY_TOKENS = 128  # per reply: enough to show the voice, bounded in time on a CPU


@dataclass
class Fidelity:
    contestant: str
    base: str  # the local base model whose prompted self is the reference
    kl: float  # mean KL(prompted base ‖ contestant) per reply token, nats; lower is closer
    kl_lower: float
    kl_upper: float
    gap_closed: float  # percent: 0 = the plain base, 100 = the prompted base
    gap_lower: float
    gap_upper: float
    prompts: int
    tokens: int

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.__dict__.items()}


def base_of(name: str) -> str:
    """The full model a local model rests on: its adapter's base, or itself."""
    config = embedded.model_path(name) / "adapter_config.json"
    if not config.exists():
        return name
    return Path(json.loads(config.read_text())["base_model_name_or_path"]).name


def teacher_replies(base: str, system_prompt: str, conversations: list[list[dict]], seed: int = 0) -> list[str]:
    """The prompted base model's own replies (sampled, seeded), one per conversation."""
    return [
        embedded.generate(
            base, distill.with_system(system_prompt, c), max_tokens=MAX_REPLY_TOKENS, temperature=0.7, seed=seed + i
        ).text
        for i, c in enumerate(conversations)
    ]


def kl_sums(teacher, student, items: list[tuple[list[dict], list[dict], str]]) -> np.ndarray:
    """Per item: (summed KL over the reply, reply tokens). items: (teacher messages, student messages, reply)."""
    import torch

    found = []
    with torch.inference_mode():
        for teacher_messages, student_messages, reply in items:
            seen = distill.views(teacher.tokenizer, teacher_messages, student_messages, reply, MAX_REPLY_TOKENS)
            t = distill.reply_log_probs(teacher.model, seen.teacher, seen.reply)
            s = distill.reply_log_probs(student.model, seen.student, seen.reply)
            found.append((float(distill.kl_per_token(t, s).sum()), seen.reply))
    return np.array(found, dtype=float).reshape(-1, 2)


def summarize(name: str, base: str, mine: np.ndarray, plain: np.ndarray, rounds: int = 1000, seed: int = 0):
    """A contestant's figures from per-prompt (KL sum, tokens), against the plain base's on the same prompts."""
    if len(mine) == 0 or mine[:, 1].sum() == 0:
        return Fidelity(name, base, *([math.nan] * 6), 0, 0)
    kl = mine[:, 0].sum() / mine[:, 1].sum()
    reference = plain[:, 0].sum() / plain[:, 1].sum()
    picks = np.random.default_rng(seed).integers(0, len(mine), size=(rounds, len(mine)))
    kls = mine[picks, 0].sum(1) / mine[picks, 1].sum(1)
    references = plain[picks, 0].sum(1) / plain[picks, 1].sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        gaps = 100 * (1 - kls / references)
    gap = 100 * (1 - kl / reference) if reference > 0 else math.nan
    finite = gaps[np.isfinite(gaps)]
    low, high = np.percentile(finite, [2.5, 97.5]) if finite.size else (math.nan, math.nan)
    return Fidelity(
        name,
        base,
        float(kl),
        float(np.percentile(kls, 2.5)),
        float(np.percentile(kls, 97.5)),
        float(gap),
        float(low),
        float(high),
        len(mine),
        int(mine[:, 1].sum()),
    )


def measure(
    base: str,
    system_prompt: str,
    conversations: list[list[dict]],
    replies: list[str],
    students: dict[str, tuple[str, list[list[dict]]]],
    rounds: int = 1000,
    seed: int = 0,
) -> list[Fidelity]:
    """Prompt fidelity of each student of one base.

    conversations: the held-out prompts (user turns, no system prompt); replies: the prompted base's own
    reply to each; students: contestant name → (local model name, the messages it is asked with, one per
    conversation).
    """
    teacher = embedded.load(base)
    taught = [distill.with_system(system_prompt, c) for c in conversations]
    plain = kl_sums(
        teacher, teacher, list(zip(taught, [distill.without_system(c) for c in conversations], replies, strict=True))
    )
    found = []
    for name, (model, asked) in students.items():
        mine = kl_sums(teacher, embedded.load(model), list(zip(taught, asked, replies, strict=True)))
        found.append(summarize(name, f"local/{base}", mine, plain, rounds, seed))
    return found
