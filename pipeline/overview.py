"""Headline numbers for the home page."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import select

from pipeline.db import session_scope
from pipeline.models import UNFINISHED, Example, Job, LLMCall, ModelEntry, Persona


def _count(session, model, *where) -> int:
    return session.exec(select(func.count()).select_from(model).where(*where)).one()


def studio_counts() -> dict:
    with session_scope() as session:
        spend = session.exec(
            select(func.coalesce(func.sum(LLMCall.cost_usd), 0.0)).where(LLMCall.error.is_(None))
        ).one()
        last = session.exec(
            select(Job.id, Job.message)
            .where(Job.kind == "evaluation", Job.status == "succeeded")
            .order_by(Job.finished_at.desc().nullslast())  # PostgreSQL puts NULLs first when descending
        ).first()
        last_evaluation = last[1] if last else None
        return {
            "personas": _count(session, Persona),
            # unfinished ones (a run still making them, or one that stopped) are not examples yet
            "examples": _count(session, Example, Example.status.not_in(UNFINISHED)),
            "gold_stars": _count(session, Example, Example.gold_star, Example.status.not_in(UNFINISHED)),
            "running_jobs": _count(session, Job, Job.status == "running"),
            "deployed_models": _count(session, ModelEntry, ModelEntry.status == "deployed"),
            "llm_calls": _count(session, LLMCall, LLMCall.error.is_(None)),
            "spend_usd": float(spend),
            "last_evaluation": last_evaluation or "No evaluation yet",
            "last_evaluation_id": last[0] if last else None,
        }


def evaluation_headline(job_id: int | None) -> str:
    """The last evaluation's headline, the Leaderboard's own figure (same cached board, judge and human votes)."""
    if job_id is None:
        return "No evaluation yet"
    from pipeline.evaluation import leaderboard  # numpy and pandas: only when there is a run to show

    return leaderboard.headline(job_id)
