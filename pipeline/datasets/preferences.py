"""Preference pairs for DPO: a reviewer's edit says the edited response is better than the original."""

from __future__ import annotations

from sqlmodel import select

from pipeline.db import session_scope
from pipeline.models import Example, ExampleEdit


def pairs_for(example_ids: list[int]) -> list[dict]:
    """{"prompt", "chosen", "rejected", "example_id"} for each edited example among these."""
    if not example_ids:
        return []
    with session_scope() as session:
        edited = list(
            session.exec(
                select(Example).where(Example.id.in_(example_ids), Example.original_response.is_not(None))
            ).all()
        )
    pairs = []
    for example in sorted(edited, key=lambda e: e.id):
        prompt = next((m["content"] for m in reversed(example.messages) if m.get("role") == "user"), "")
        if prompt and example.response.strip() and example.response != example.original_response:
            pairs.append(
                {
                    "prompt": prompt,
                    "chosen": example.response,
                    "rejected": example.original_response,
                    "example_id": example.id,
                }
            )
    return pairs


def pairs_for_persona(persona_id: int) -> list[dict]:
    with session_scope() as session:
        ids = list(
            session.exec(
                select(ExampleEdit.example_id)
                .join(Example, Example.id == ExampleEdit.example_id)
                .where(Example.persona_id == persona_id, Example.status != "rejected")
                .distinct()
            ).all()
        )
    return pairs_for(ids)
