"""Judges that need no key, labelled for what they measure.

- **Persona similarity** (pairwise): how close a response is, in the packaged MiniLM embedding
  space, to the persona's gold-starred replies, minus how close it is to how the base model usually
  sounds (the centroid of its plain replies to the *other* prompts: leaving the prompt's own reply
  out keeps the base model from being compared with itself). It measures "sounds like the gold
  replies, not like the base model", not quality; the leaderboard says so.
- **Persona likelihood** (per contestant, local models only): the mean log-likelihood per token of
  held-out gold replies under the contestant, prompted as its mode says. A model that carries the
  persona in its weights finds the persona's replies more likely without the system prompt.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np

from pipeline import embeddings

SIMILARITY_JUDGE = "offline:similarity"
MARGIN = 0.01  # similarity differences below this are ties: MiniLM scores are not that precise


class SimilarityJudge:
    """Scores every response once; battles compare the scores."""

    def __init__(self, gold: list[str], plain_by_prompt: dict[int, str]):
        self.gold = embeddings.embed(gold) if gold else np.zeros((0, 384), dtype=np.float32)
        ids = sorted(plain_by_prompt)
        self._plain_ids = ids
        self._plain = embeddings.embed([plain_by_prompt[i] for i in ids]) if ids else np.zeros((0, 384))
        self._scores: dict[tuple[int, str], float] = {}

    def _base_style(self, prompt_id: int) -> np.ndarray | None:
        others = [row for i, row in zip(self._plain_ids, self._plain, strict=True) if i != prompt_id]
        if not others:
            return None
        centroid = np.mean(others, axis=0)
        return centroid / (np.linalg.norm(centroid) or 1.0)

    def score(self, prompt_id: int, text: str) -> float:
        key = (prompt_id, text)
        if key not in self._scores:
            vector = embeddings.embed([text])[0]
            to_gold = float((self.gold @ vector).mean()) if len(self.gold) else 0.0
            style = self._base_style(prompt_id)
            self._scores[key] = to_gold - (float(style @ vector) if style is not None else 0.0)
        return self._scores[key]

    def verdict(self, prompt_id: int, a: str, b: str) -> tuple[str, str]:
        score_a, score_b = self.score(prompt_id, a), self.score(prompt_id, b)
        verdict = "tie" if abs(score_a - score_b) < MARGIN else ("a" if score_a > score_b else "b")
        reason = f"persona similarity A {score_a:+.3f}, B {score_b:+.3f} (gold replies minus base model)"
        return verdict, reason


@dataclass
class Likelihood:
    contestant: str
    mean: float  # mean log-likelihood per token of the gold replies
    lower: float
    upper: float
    examples: int
    tokens: int

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def reply_log_likelihood(loaded, messages: list[dict], reply: str) -> tuple[float, int]:
    """Sum of log-probabilities of `reply`'s tokens after `messages`, and how many tokens."""
    import torch

    tokenizer, model = loaded.tokenizer, loaded.model
    prompt_ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)[
        "input_ids"
    ]
    full_ids = tokenizer.apply_chat_template(
        messages + [{"role": "assistant", "content": reply}], tokenize=True, return_dict=True
    )["input_ids"]
    start = len(prompt_ids)
    if len(full_ids) <= start:
        return 0.0, 0
    ids = torch.tensor([full_ids])
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0, :-1].float()
    log_probs = torch.log_softmax(logits, dim=-1)
    targets = ids[0, 1:]
    picked = log_probs[torch.arange(len(targets)), targets][start - 1 :]
    return float(picked.sum()), int(picked.numel())


def persona_likelihood(
    contestant: str, loaded, conversations: list[tuple[list[dict], str]], rounds: int = 1000, seed: int = 0
) -> Likelihood:
    """Mean per-token log-likelihood of the gold replies, with a bootstrap 95% interval over examples."""
    per_example = []
    for messages, reply in conversations:
        total, count = reply_log_likelihood(loaded, messages, reply)
        if count:
            per_example.append((total, count))
    if not per_example:
        return Likelihood(contestant, math.nan, math.nan, math.nan, 0, 0)
    totals = np.array([t for t, _ in per_example])
    counts = np.array([c for _, c in per_example])
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(per_example), size=(rounds, len(per_example)))
    means = totals[picks].sum(axis=1) / counts[picks].sum(axis=1)
    return Likelihood(
        contestant,
        float(totals.sum() / counts.sum()),
        float(np.percentile(means, 2.5)),
        float(np.percentile(means, 97.5)),
        len(per_example),
        int(counts.sum()),
    )


def sample(items: list, limit: int, seed: int = 0) -> list:
    items = list(items)
    random.Random(seed).shuffle(items)
    return items[:limit]
