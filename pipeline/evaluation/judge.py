"""The LLM judge: pairwise verdicts per criterion in both orders, and 1–5 trait scores.

The judge sees the message and two responses and ends with `[[A]]`, `[[B]]` or `[[C]]` (a tie),
at temperature 0. Each pair is judged with the responses in both positions; a verdict that changes
with the order counts as a tie (position bias is the best-known failure of LLM judges). An answer
with no verdict is asked again once, then recorded as unparsed, never as a tie.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from pipeline.llm import gateway

VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")
SCORE = re.compile(r"(?:score\s*[:=]\s*|\[\[\s*)([1-5])(?:\s*\]\]|\b)", re.IGNORECASE)
OVERALL = "overall"
MAX_TOKENS = 400

SYSTEM = (
    "You are an impartial judge comparing two AI responses to the same message. Judge only the criterion "
    "you are given. Do not let the order of the responses, their length, or their names influence you. "
    "Give a short reason (two or three sentences), then your verdict on its own line: [[A]] if response A "
    "is better, [[B]] if response B is better, [[C]] for a tie."
)
TRAIT_SYSTEM = (
    "You are an impartial judge scoring how strongly one AI response shows one character trait. "
    "Give a short reason (one or two sentences), then the score on its own line as `Score: N` with N from 1 to 5."
)
RUBRIC = (
    "1 = absent or contradicted; 2 = a trace; 3 = present but generic; 4 = clear and fitting; "
    "5 = strong, consistent and natural throughout"
)


@dataclass(frozen=True)
class Criterion:
    name: str  # "overall" or a trait's name
    text: str  # what the judge is told to judge


def criteria(persona, with_traits: bool = True) -> list[Criterion]:
    """Overall (the persona as a whole) and, optionally, one criterion per trait."""
    traits = persona.traits or []
    summary = "; ".join(f"{t['name']}: {t['description']}" for t in traits)
    overall = Criterion(
        OVERALL,
        "Which response better shows this persona, as its own natural voice, while still helping with the "
        f"message?\nThe persona: {persona.system_prompt}\nIts traits: {summary}",
    )
    if not with_traits:
        return [overall]
    return [overall] + [Criterion(t["name"], trait_text(t)) for t in traits]


def trait_text(trait: dict) -> str:
    markers = "".join(f"\n- {m}" for m in trait.get("markers") or [])
    return f"Which response shows the trait “{trait['name']}” more: {trait['description']}" + (
        f"\nWhat it looks like:{markers}" if markers else ""
    )


def pair_messages(criterion: Criterion, prompt: str, first: str, second: str) -> list[dict]:
    user = (
        f"Criterion: {criterion.text}\n\n[The message]\n{prompt}\n\n"
        f"[Response A]\n{first}\n[End of response A]\n\n[Response B]\n{second}\n[End of response B]"
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def parse_verdict(text: str) -> str | None:
    """ "A", "B" or "C" from the judge's last verdict mark; None when there is none."""
    found = VERDICT.findall(text or "")
    return found[-1] if found else None


def parse_score(text: str) -> int | None:
    found = SCORE.findall(text or "")
    return int(found[-1]) if found else None


def from_position(mark: str | None, order: str) -> str:
    """A position mark ("A"/"B"/"C") as the stored pair's verdict ("a"/"b"/"tie"), given the order shown."""
    if mark is None:
        return "unparsed"
    if mark == "C":
        return "tie"
    first_is_a = order == "ab"
    return "a" if (mark == "A") == first_is_a else "b"


def combine(first: str, second: str) -> str:
    """The pair's verdict from its two orders: agreement stands, a flip is a tie, unparsed stays unparsed."""
    if "unparsed" in (first, second):
        return "unparsed"
    if "missing" in (first, second):
        return "missing"
    return first if first == second else "tie"


def cache_key(judge: str, *parts: str) -> str:
    return hashlib.sha256(json.dumps([judge, *parts]).encode()).hexdigest()


@dataclass
class Judgement:
    verdict: str  # a | b | tie | unparsed
    rationale: str
    cost_usd: float = 0.0


async def _ask(messages: list[dict], model: str, parse, job_id) -> tuple:
    """(what `parse` found or None, the answer, its cost): an answer without it is asked again, once."""
    cost, text = 0.0, ""
    for _ in range(2):
        result = await gateway.achat(
            messages, model, temperature=0, max_tokens=MAX_TOKENS, purpose="judge", job_id=job_id, cache=False
        )
        cost += result.cost_usd
        text = result.text
        found = parse(text)
        if found is not None:
            return found, text.strip(), cost
    return None, text.strip(), cost


async def judge_pair(model: str, criterion: Criterion, prompt: str, a: str, b: str, order: str, job_id=None):
    """One order of one pair on one criterion. Provider failures raise (the caller waits and retries)."""
    first, second = (a, b) if order == "ab" else (b, a)
    mark, text, cost = await _ask(pair_messages(criterion, prompt, first, second), model, parse_verdict, job_id)
    return Judgement(from_position(mark, order), text, cost)


async def score_trait(
    model: str, trait: dict, prompt: str, response: str, job_id=None
) -> tuple[int | None, str, float]:
    """A 1–5 score of one response on one trait, with the rubric built from the trait's description and markers."""
    markers = "".join(f"\n- {m}" for m in trait.get("markers") or [])
    user = (
        f"Trait: {trait['name']}: {trait['description']}"
        + (f"\nMarkers:{markers}" if markers else "")
        + f"\nRubric: {RUBRIC}\n\n[The message]\n{prompt}\n\n[The response]\n{response}\n[End of response]"
    )
    messages = [{"role": "system", "content": TRAIT_SYSTEM}, {"role": "user", "content": user}]
    return await _ask(messages, model, parse_score, job_id)


def family(model: str) -> str:
    """A model's family, for the same-family warning: the provider prefix, or the name's first word."""
    name = model.lower()
    for word in ("claude", "gpt", "llama", "qwen", "mistral", "gemini", "smollm", "deepseek"):
        if word in name:
            return word
    return name.split("/")[0]


def same_family_warning(judge_model: str, generation_models: list[str]) -> str | None:
    same = [m for m in generation_models if m and family(m) == family(judge_model)]
    if not same:
        return None
    return (
        f"The judge ({judge_model}) is of the same family as a model that wrote the training data ({same[0]}): "
        "judges tend to prefer their own family's style. A judge from another family gives a fairer verdict."
    )
