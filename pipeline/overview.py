"""Headline numbers for the home page."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import select

from pipeline.db import session_scope
from pipeline.models import LLMCall, Persona


def studio_counts() -> dict:
    with session_scope() as session:
        personas = session.exec(select(func.count()).select_from(Persona)).one()
        calls, spend = session.exec(
            select(func.count(), func.coalesce(func.sum(LLMCall.cost_usd), 0.0)).where(LLMCall.error.is_(None))
        ).one()
    return {"personas": personas, "llm_calls": calls, "spend_usd": float(spend)}
