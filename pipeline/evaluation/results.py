"""Battles as the ratings see them: one outcome per pair, prompt, criterion and judge.

An LLM judge's two orders become one outcome (a flip is a tie); an offline judgement is one
outcome already; each human vote is its own outcome. Unparsed and missing outcomes are kept,
counted and shown, but never rated.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlmodel import select

from pipeline.db import session_scope
from pipeline.evaluation import judge
from pipeline.models import Battle

SOURCES = {"judge": "Judge only", "human": "Human votes only", "both": "Judge and human votes"}
RATED = ("a", "b", "tie", "bothbad")


@dataclass
class Outcome:
    a: str
    b: str
    winner: str  # a | b | tie | bothbad | unparsed | missing
    prompt_id: int | None
    group: str
    criterion: str
    judge: str
    prompt: str = ""
    response_a: str = ""
    response_b: str = ""
    consistent: bool | None = None  # both orders agreed (LLM judge only)
    reasons: list[str] = field(default_factory=list)

    @property
    def is_human(self) -> bool:
        return self.judge.startswith("human:")

    @property
    def rated(self) -> bool:
        return self.winner in RATED

    def as_battle(self) -> tuple[str, str, str]:
        return (self.a, self.b, self.winner)

    def lengths(self) -> tuple[int, int]:
        return len(self.response_a.split()), len(self.response_b.split())


def battles(job_id: int) -> list[Battle]:
    with session_scope() as session:
        return list(session.exec(select(Battle).where(Battle.job_id == job_id).order_by(Battle.id)).all())


def outcomes(job_id: int, source: str = "both", criterion: str | None = judge.OVERALL, rows=None) -> list[Outcome]:
    """Every finished outcome of the run from `source` ("judge", "human" or "both")."""
    rows = battles(job_id) if rows is None else rows
    result: list[Outcome] = []
    pending: dict[tuple, dict[str, Battle]] = defaultdict(dict)
    for row in rows:
        if criterion is not None and row.criterion != criterion:
            continue
        human = row.judge.startswith("human:")
        if (human and source == "judge") or (not human and source == "human"):
            continue
        if human or row.order not in ("ab", "ba"):  # a vote, an offline verdict, or a missing battle
            result.append(_outcome(row, row.verdict, None, [row.rationale]))
            continue
        key = (row.judge, row.criterion, row.prompt_id, row.contestant_a, row.contestant_b)
        pending[key][row.order] = row
        if len(pending[key]) == 2:
            first, second = pending.pop(key).values()
            verdict = judge.combine(first.verdict, second.verdict)
            consistent = None if verdict == "unparsed" else first.verdict == second.verdict
            result.append(_outcome(first, verdict, consistent, [first.rationale, second.rationale]))
    return result


def _outcome(row: Battle, verdict: str, consistent: bool | None, reasons: list[str]) -> Outcome:
    return Outcome(
        a=row.contestant_a,
        b=row.contestant_b,
        winner=verdict,
        prompt_id=row.prompt_id,
        group=row.prompt_group,
        criterion=row.criterion,
        judge=row.judge,
        prompt=row.prompt,
        response_a=row.response_a,
        response_b=row.response_b,
        consistent=consistent,
        reasons=[r for r in reasons if r],
    )


def rated(items: list[Outcome]) -> list[tuple[str, str, str]]:
    return [o.as_battle() for o in items if o.rated]
