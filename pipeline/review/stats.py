"""What a set of examples looks like: counts by status, lengths, trait × document-type coverage,
and what needs a second look (near-duplicates, validation warnings). All read in SQL, columns only."""

from __future__ import annotations

from collections import Counter

import pandas as pd
from sqlalchemy import String, cast, or_
from sqlmodel import func, select

from pipeline.db import session_scope
from pipeline.models import Example
from pipeline.review.filters import ExampleFilter


def status_counts(flt: ExampleFilter) -> dict[str, int]:
    with session_scope() as session:
        rows = session.exec(select(Example.status, func.count()).where(*flt.where()).group_by(Example.status)).all()
    return dict(rows)


def gold_count(flt: ExampleFilter) -> int:
    with session_scope() as session:
        query = select(func.count()).select_from(Example).where(*flt.where(), Example.gold_star == True)  # noqa: E712
        return session.exec(query).one()


def lengths(flt: ExampleFilter) -> pd.DataFrame:
    with session_scope() as session:
        rows = session.exec(
            select(Example.document_words, Example.response_words, Example.token_count).where(*flt.where())
        ).all()
    return pd.DataFrame(rows, columns=["document words", "response words", "tokens"])


def coverage(flt: ExampleFilter) -> pd.DataFrame:
    """Examples per trait (rows) and document type (columns)."""
    with session_scope() as session:
        rows = session.exec(select(Example.traits_stressed, Example.document_type).where(*flt.where())).all()
    counts = Counter((trait, kind or "(none)") for traits, kind in rows for trait in (traits or ["(none)"]))
    if not counts:
        return pd.DataFrame()
    frame = pd.Series(counts).unstack(fill_value=0)
    return frame.sort_index().sort_index(axis=1)


def needs_attention(flt: ExampleFilter, limit: int = 200) -> pd.DataFrame:
    """Examples with a near-duplicate flag, a validation warning or a quality gate reason, newest first."""
    with session_scope() as session:
        rows = session.exec(
            select(
                Example.id,
                Example.document_title,
                Example.status,
                Example.flags,
                Example.validation_issues,
                Example.quality_issues,
            )
            .where(
                *flt.where(),
                or_(
                    cast(Example.flags, String) != "[]",
                    cast(Example.validation_issues, String) != "[]",
                    cast(Example.quality_issues, String) != "[]",
                ),
            )
            .order_by(Example.id.desc())
            .limit(limit)
        ).all()
    return pd.DataFrame(
        [
            {"id": i, "title": title, "status": status, "what": "; ".join([*flags, *issues, *gate])}
            for i, title, status, flags, issues, gate in rows
        ],
        columns=["id", "title", "status", "what"],
    )
