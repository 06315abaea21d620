"""The prompt-engineering baseline: system prompt versions, proposed by an LLM from the persona's best
examples, kept, compared and activated; and prompt-only variants (a base model + a version, with or
without few-shot examples) that enter evaluation as contestants like any model.

It answers "is fine-tuning worth it over a better prompt?" with the same leaderboard.
"""

from __future__ import annotations

import difflib

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from pipeline import access, limits
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.llm import gateway
from pipeline.models import Example, ModelEntry, Persona, PromptVersion

MAX_EXAMPLES = 6  # exchanges shown to the proposing model: enough to see the voice, little enough to afford
PROPOSE = (
    "You write system prompts for chat models. Below are a persona's current system prompt, its traits, and "
    "exchanges that show the persona at its best. Write an improved system prompt that makes a model answer the "
    "way these replies do: concrete about behaviour (what it does, asks, avoids), faithful to every trait, "
    "under 200 words. Answer with the system prompt only, no preamble."
)


def _ensure_original(session, persona: Persona) -> None:
    """Version 1 is the persona's prompt as it was before any proposal, so nothing is lost."""
    if session.exec(select(PromptVersion).where(PromptVersion.persona_id == persona.id)).first() is None:
        session.add(
            PromptVersion(persona_id=persona.id, version=1, system_prompt=persona.system_prompt, source="original",
                          active=True)
        )  # fmt: skip
        session.flush()


def versions(persona_id: int) -> list[PromptVersion]:
    try:
        return _versions(persona_id)
    except IntegrityError:  # two first looks at once both wrote version 1: the other's stands
        return _versions(persona_id)


def _versions(persona_id: int) -> list[PromptVersion]:
    with session_scope() as session:
        persona = session.get(Persona, persona_id)
        if persona is None:
            raise UserFacingError("That persona no longer exists.")
        _ensure_original(session, persona)
        return list(
            session.exec(
                select(PromptVersion).where(PromptVersion.persona_id == persona_id).order_by(PromptVersion.version)
            ).all()
        )


def get_version(persona_id: int, version: int) -> PromptVersion:
    for row in versions(persona_id):
        if row.version == version:
            return row
    raise UserFacingError(f"The persona has no prompt version {version}.")


def add_version(persona_id: int, text: str, source: str = "edited", based_on=(), notes: str = "", by: str = ""):
    access.check("edit_persona")
    text = limits.typed((text or "").strip(), limits.SYSTEM_PROMPT, "The system prompt")
    notes = limits.typed(notes, limits.NOTES, "The note")
    if len(text) < 20:
        raise UserFacingError("A system prompt needs a few sentences (at least 20 characters).")
    versions(persona_id)  # version 1 first
    with session_scope() as session:
        last = session.exec(select(func.max(PromptVersion.version)).where(PromptVersion.persona_id == persona_id)).one()
        row = PromptVersion(persona_id=persona_id, version=(last or 0) + 1, system_prompt=text, source=source,
                            based_on=list(based_on), notes=notes, created_by=access.actor(by))  # fmt: skip
        session.add(row)
        session.flush()
        session.refresh(row)
        return row


def examples_for(persona_id: int, limit: int = MAX_EXAMPLES) -> list[Example]:
    """Gold-starred examples first, then the best rated accepted ones."""
    with session_scope() as session:
        rows = session.exec(
            select(Example)
            .where(Example.persona_id == persona_id, Example.status != "rejected", Example.response != "")
            .order_by(Example.gold_star.desc(), Example.rating.desc().nullslast(), Example.id.desc())
            .limit(limit)
        ).all()
    return [r for r in rows if r.gold_star or r.status == "accepted" or r.rating]


def propose(persona_id: int, model: str, by: str = "") -> PromptVersion:
    """Ask `model` for a better system prompt from the persona's best examples; kept as a new version."""
    access.check("edit_persona")
    with session_scope() as session:
        persona = session.get(Persona, persona_id)
    chosen = examples_for(persona_id)
    if not chosen:
        raise UserFacingError("Gold-star or accept a few examples first: the proposal is built from them.")
    traits = "\n".join(f"- {t['name']}: {t['description']}" for t in persona.traits)
    shown = "\n\n".join(f"[Message]\n{e.document[:1500]}\n[Reply]\n{e.response[:1500]}" for e in chosen)
    messages = [
        {"role": "system", "content": PROPOSE},
        {"role": "user", "content": f"Current system prompt:\n{persona.system_prompt}\n\nTraits:\n{traits}\n\n{shown}"},
    ]
    result = gateway.chat(messages, model, temperature=0.4, max_tokens=500, purpose="prompt-engineering")
    return add_version(persona_id, result.text, source=result.model_used, based_on=[e.id for e in chosen], by=by)


def activate(persona_id: int, version: int) -> Persona:
    """Make a version the persona's system prompt (used by generation, the playground and evaluation)."""
    access.check("edit_persona")
    chosen = get_version(persona_id, version)
    with session_scope() as session:
        for row in session.exec(select(PromptVersion).where(PromptVersion.persona_id == persona_id)).all():
            row.active = row.version == version
            session.add(row)
        persona = session.get(Persona, persona_id)
        persona.system_prompt = chosen.system_prompt
        session.add(persona)
        session.flush()
        session.refresh(persona)
        return persona


def diff(persona_id: int, first: int, second: int) -> str:
    a, b = get_version(persona_id, first), get_version(persona_id, second)
    return "\n".join(
        difflib.unified_diff(
            a.system_prompt.split(". "), b.system_prompt.split(". "), f"v{first}", f"v{second}", lineterm=""
        )  # fmt: skip
    )


def create_variant(persona_id: int, base_model: str, version: int, few_shot: bool = False) -> ModelEntry:
    """A prompt-only model: `base_model` with prompt version `version` (and gold-star few-shot examples)."""
    access.check("edit_persona")
    get_version(persona_id, version)
    with session_scope() as session:
        persona = session.get(Persona, persona_id)
        name = f"{persona.name}-prompt-v{version}{'-fewshot' if few_shot else ''}-{base_model.split('/')[-1]}"
        existing = session.exec(select(ModelEntry).where(ModelEntry.name == name)).first()
        if existing is not None:
            return existing
        entry = ModelEntry(name=name, reference=base_model, base_model=base_model, backend="prompt",
                           persona_id=persona_id, config={"prompt_version": version, "few_shot": few_shot})  # fmt: skip
        session.add(entry)
        session.flush()
        session.refresh(entry)
        return entry


def variant_mode(entry: ModelEntry) -> str:
    """The evaluation contestant mode of a prompt-only variant: v<N> or v<N>-fewshot."""
    return f"v{entry.config['prompt_version']}" + ("-fewshot" if entry.config.get("few_shot") else "")
