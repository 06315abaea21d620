"""Contestants: a model plus how it is prompted.

A contestant's name is its model with the prompt mode appended ("local/x", "local/x + prompt",
"local/x + prompt + few-shot"), so battles, ratings and reports read without a lookup table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlmodel import select

from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.models import Example, ModelEntry, Persona

MODES = {"plain": "", "prompt": " + prompt", "fewshot": " + prompt + few-shot"}
MODE_LABELS = {"plain": "no system prompt", "prompt": "persona's system prompt", "fewshot": "system prompt + few-shot"}
FEW_SHOT = 2  # gold-starred exchanges put before the prompt in few-shot mode
VERSION_MODE = re.compile(r"v(\d+)(-fewshot)?")
VERSION_NAME = re.compile(r" \+ prompt v(\d+)( \+ few-shot)?$")


@dataclass(frozen=True)
class Contestant:
    model: str  # a gateway model string
    mode: str = "plain"  # plain | prompt | fewshot

    @property
    def name(self) -> str:
        version = VERSION_MODE.fullmatch(self.mode)
        if version:  # a saved prompt version (the registry's prompt-only variants)
            return f"{self.model} + prompt v{version[1]}" + (" + few-shot" if version[2] else "")
        return self.model + MODES[self.mode]

    @property
    def version(self) -> int | None:
        found = VERSION_MODE.fullmatch(self.mode)
        return int(found[1]) if found else None

    @property
    def few_shot(self) -> bool:
        return self.mode == "fewshot" or self.mode.endswith("-fewshot")

    @classmethod
    def parse(cls, name: str) -> Contestant:
        """`MODEL`, `MODEL + prompt`, `MODEL + prompt + few-shot`, `MODEL + prompt v3`; `MODEL:prompt`, `MODEL:v3`."""
        name = name.strip()
        version = VERSION_NAME.search(name)
        if version:
            return cls(name[: version.start()].strip(), f"v{version[1]}" + ("-fewshot" if version[2] else ""))
        for mode, suffix in sorted(MODES.items(), key=lambda kv: -len(kv[1])):
            if suffix and name.endswith(suffix):
                return cls(name[: -len(suffix)].strip(), mode)
        model, sep, mode = name.rpartition(":")
        if sep and (mode in MODES or VERSION_MODE.fullmatch(mode)):
            return cls(model, mode)
        if not name:
            raise UserFacingError("A contestant needs a model.")
        return cls(name, "plain")


def fine_tuned_models() -> dict[str, ModelEntry]:
    """Registry entries that came out of training, by model string."""
    with session_scope() as session:
        rows = session.exec(select(ModelEntry).where(ModelEntry.job_id.is_not(None))).all()
    return {row.reference: row for row in rows}


def default_set(base_model: str, fine_tuned: str | None) -> list[Contestant]:
    """The typical comparison: base / base + prompt / fine-tuned / fine-tuned + prompt."""
    chosen = [Contestant(base_model, "plain"), Contestant(base_model, "prompt")]
    if fine_tuned:
        chosen += [Contestant(fine_tuned, "plain"), Contestant(fine_tuned, "prompt")]
    return chosen


def anchor(contestants: list[Contestant]) -> str:
    """The contestant held at 1000: a model that was not fine-tuned, without the system prompt."""
    tuned = fine_tuned_models()
    for contestant in contestants:
        if contestant.mode == "plain" and contestant.model not in tuned:
            return contestant.name
    return contestants[0].name


def few_shot_messages(persona_id: int, exclude_documents: set[str]) -> list[dict]:
    """Gold-starred exchanges as earlier turns (never one whose document is being evaluated)."""
    with session_scope() as session:
        gold = session.exec(
            select(Example)
            .where(Example.persona_id == persona_id, Example.gold_star, Example.status != "rejected")
            .order_by(Example.id)
        ).all()
    turns: list[dict] = []
    for example in gold:
        if example.document in exclude_documents or not example.response:
            continue
        turns += [{"role": "user", "content": example.document}, {"role": "assistant", "content": example.response}]
        if len(turns) >= 2 * FEW_SHOT:
            break
    return turns


def messages_for(contestant: Contestant, persona: Persona, conversation: list[dict], few_shot: list[dict]) -> list:
    """What the contestant is sent: the conversation, with the system prompt and examples its mode adds."""
    if contestant.mode == "plain":
        return list(conversation)
    system = persona.system_prompt
    if contestant.version is not None:
        from pipeline.registry import prompts as prompt_versions

        system = prompt_versions.get_version(persona.id, contestant.version).system_prompt
    prefix = [{"role": "system", "content": system}]
    if contestant.few_shot:
        prefix += few_shot
    return prefix + list(conversation)
