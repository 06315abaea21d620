"""Which examples to show or to put in a dataset: one filter, applied in SQL, paged.

Everything happens in the database (counts, paging, the columns a table needs), so a page of 10,000
examples costs about what a page of 100 does.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from sqlalchemy import String, cast, or_
from sqlmodel import func, select

from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.generation import quality
from pipeline.models import Example, Persona

REVIEWABLE = ("pending", "accepted", "rejected", "failed")  # what "every status" means: finished work
CHOOSABLE = (*REVIEWABLE, "cancelled")  # a stopped run's unfinished examples, shown only when asked for
TABLE_COLUMNS = (
    Example.id,
    Example.persona_id,
    Example.job_id,
    Example.source,
    Example.document_type,
    Example.document_title,
    Example.traits_stressed,
    Example.status,
    Example.gold_star,
    Example.rating,
    Example.document_words,
    Example.response_words,
    Example.token_count,
    Example.flags,
    Example.validation_issues,
    Example.quality_issues,
)
# the quality gate filter: flagged by any check, passed every check, or caught by one check (its name)
QUALITY = ("flagged", "passed", *quality.CHECKS)


@dataclass
class ExampleFilter:
    persona_id: int | None = None
    job_id: int | None = None
    statuses: list[str] = field(default_factory=list)  # empty: every reviewable status
    gold_star: bool | None = None
    min_rating: int | None = None
    document_type: str | None = None
    trait: str | None = None
    search: str = ""
    quality: str | None = None  # one of QUALITY; None: whatever the gate said

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (None, "", [])}

    @classmethod
    def from_dict(cls, data: dict | None) -> ExampleFilter:
        return cls(**{k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__})

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.to_dict().items()) or "every example"

    def where(self) -> list:
        clauses = [Example.status.in_(self.statuses or REVIEWABLE)]
        if self.persona_id is not None:
            clauses.append(Example.persona_id == self.persona_id)
        if self.job_id is not None:
            clauses.append(Example.job_id == self.job_id)
        if self.gold_star is not None:
            clauses.append(Example.gold_star == self.gold_star)
        if self.min_rating:
            clauses.append(Example.rating >= self.min_rating)
        if self.document_type:
            clauses.append(Example.document_type == self.document_type)
        if self.trait:  # traits are a JSON list: match the name as JSON spells it (quoted, \\u-escaped) in its text
            clauses.append(
                cast(Example.traits_stressed, String).like(f"%{_escape(json.dumps(self.trait))}%", escape="\\")
            )
        if self.quality:
            clauses.append(_quality_clause(self.quality))
        if self.search.strip():
            # ilike: SQLite's LIKE ignores case, PostgreSQL's does not; ILIKE (lower() on SQLite) does on both
            pattern = f"%{_escape(self.search.strip())}%"
            clauses.append(
                or_(
                    Example.document_title.ilike(pattern, escape="\\"),
                    Example.document.ilike(pattern, escape="\\"),
                    Example.response.ilike(pattern, escape="\\"),
                    Example.notes.ilike(pattern, escape="\\"),
                )
            )
        return clauses


def _quality_clause(choice: str):
    """The gate's reasons are a JSON list of strings each starting "<label>:": matched in its text."""
    text = cast(Example.quality_issues, String)
    if choice == "flagged":
        return text != "[]"
    if choice == "passed":
        return text == "[]"
    if choice not in quality.LABELS:
        raise UserFacingError(f"Unknown quality gate filter {choice!r}: use one of {', '.join(QUALITY)}.")
    return text.like(f"%{_escape(json.dumps(quality.LABELS[choice] + ':')[:-1])}%", escape="\\")


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def count(flt: ExampleFilter) -> int:
    with session_scope() as session:
        return session.exec(select(func.count()).select_from(Example).where(*flt.where())).one()


def page(flt: ExampleFilter, number: int = 1, size: int = 50) -> list[dict]:
    """One page of table rows (no document or response text), newest first, with the persona's name."""
    with session_scope() as session:
        query = (
            select(*TABLE_COLUMNS, Persona.name)
            .join(Persona, Persona.id == Example.persona_id)
            .where(*flt.where())
            .order_by(Example.id.desc())
            .offset(max(0, number - 1) * size)
            .limit(size)
        )
        names = [c.key for c in TABLE_COLUMNS] + ["persona"]
        return [dict(zip(names, row, strict=True)) for row in session.exec(query).all()]


def ids(flt: ExampleFilter) -> list[int]:
    """Every matching id, newest first: for next / previous and bulk actions."""
    with session_scope() as session:
        return list(session.exec(select(Example.id).where(*flt.where()).order_by(Example.id.desc())).all())


def examples(flt: ExampleFilter) -> list[Example]:
    """Whole examples, oldest first: what a dataset is built from."""
    with session_scope() as session:
        return list(session.exec(select(Example).where(*flt.where()).order_by(Example.id)).all())
