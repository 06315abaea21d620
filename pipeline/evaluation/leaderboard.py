"""Everything the Leaderboard page and the reports show for one evaluation run, computed from the store."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlmodel import select

from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.evaluation import judge, offline, ratings, results
from pipeline.jobs import runfolder
from pipeline.models import Job, TraitScore

CONSISTENCY_WARNING = 0.65
LIKELIHOOD_FILE = "likelihood.json"


@dataclass
class Board:
    job: Job
    source: str
    judge: str
    anchor: str
    contestants: list[str]
    outcomes: list[results.Outcome]  # overall, every outcome (missing and unparsed included)
    overall: ratings.Ratings | None = None
    by_trait: dict[str, ratings.Ratings] = field(default_factory=dict)
    by_group: dict[str, ratings.Ratings] = field(default_factory=dict)
    length_controlled: dict | None = None
    trait_scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    likelihood: list[dict] = field(default_factory=list)
    health: dict = field(default_factory=dict)

    @property
    def offline(self) -> bool:
        return self.judge.startswith("offline:")

    @property
    def judge_label(self) -> str:
        if self.offline:
            return (
                "Offline judge: persona similarity (MiniLM embeddings): closeness to the gold-starred replies "
                "minus closeness to the base model's usual replies. It measures style, not quality."
            )
        return f"LLM judge: {self.judge}"

    def counts(self) -> dict[str, int]:
        found = {"rated": 0, "missing": 0, "unparsed": 0}
        for outcome in self.outcomes:
            key = "rated" if outcome.rated else outcome.winner
            found[key] = found.get(key, 0) + 1
        return found

    def headline(self) -> str:
        """One line for the home page: who leads, and how sure that is."""
        if self.overall is None:
            return "no rated battles"
        top = self.overall.contestants[0]
        rated = self.overall
        line = f"{top} leads at {rated.rating[top]:.0f} ({rated.lower[top]:.0f}–{rated.upper[top]:.0f})"
        if self.anchor in self.overall.rating and top != self.anchor:
            p, lo, hi = self.overall.win_probability(top, self.anchor)
            line += f", beating {self.anchor} {p:.0%} of the time ({lo:.0%}–{hi:.0%})"
        return line + f" · {self.judge_label.split(':')[0]}"

    def statements(self) -> list[str]:
        """Plain-words win probabilities of each contestant against the anchor."""
        if self.overall is None or self.anchor not in self.overall.contestants:
            return []
        lines = []
        for name in self.overall.contestants:
            if name == self.anchor:
                continue
            p, lo, hi = self.overall.win_probability(name, self.anchor)
            lines.append(f"{name} beats {self.anchor} {p:.0%} of the time ({lo:.0%}–{hi:.0%}).")
        return lines


def params(job_id: int) -> tuple[Job, dict]:
    with session_scope() as session:
        job = session.get(Job, job_id)
    if job is None or job.kind != "evaluation":
        raise UserFacingError(f"There is no evaluation run {job_id}.")
    return job, dict(job.params)


def build(job_id: int, source: str = "both", rounds: int = 1000, seed: int = 0) -> Board:
    job, values = params(job_id)
    rows = results.battles(job_id)
    anchor = values.get("anchor", "")
    judge_name = offline.SIMILARITY_JUDGE if values.get("judge") == "offline" else values.get("judge", "")
    overall = results.outcomes(job_id, source, judge.OVERALL, rows)
    board = Board(job, source, judge_name, anchor, list(values.get("contestants", [])), overall)
    rate = lambda items: _rate(items, anchor, rounds, seed)  # noqa: E731
    board.overall = rate(overall)
    every = results.outcomes(job_id, source, None, rows)
    for criterion in sorted({o.criterion for o in every} - {judge.OVERALL}):
        found = rate([o for o in every if o.criterion == criterion])
        if found is not None:
            board.by_trait[criterion] = found
    for group in sorted({o.group for o in overall if o.group}):
        found = rate([o for o in overall if o.group == group])
        if found is not None:
            board.by_group[group] = found
    board.length_controlled = _length_controlled(overall, anchor)
    board.trait_scores = trait_scores(job_id)
    board.likelihood = likelihood(job_id)
    board.health = health(results.outcomes(job_id, "both", judge.OVERALL, rows))
    return board


def _rate(items: list[results.Outcome], anchor: str, rounds: int, seed: int) -> ratings.Ratings | None:
    battles = results.rated(items)
    if len({name for battle in battles for name in battle[:2]}) < 2:
        return None
    return ratings.rate(battles, anchor=anchor or None, rounds=rounds, seed=seed)


def _length_controlled(items: list[results.Outcome], anchor: str) -> dict | None:
    rated = [o for o in items if o.rated]
    if len({name for o in rated for name in (o.a, o.b)}) < 2:
        return None
    battles = [(o.a, o.b, o.winner, *o.lengths()) for o in rated]
    return ratings.rate_length_controlled(battles, anchor=anchor or None)


def trait_scores(job_id: int) -> pd.DataFrame:
    """Mean 1–5 score per contestant and trait, a 95% interval, and the spread (consistency)."""
    with session_scope() as session:
        rows = session.exec(select(TraitScore).where(TraitScore.job_id == job_id)).all()
    frame = pd.DataFrame([{"contestant": r.contestant, "trait": r.trait, "score": r.score} for r in rows])
    if frame.empty:
        return pd.DataFrame(columns=["contestant", "trait", "mean", "lower", "upper", "spread", "n", "unscored"])
    out = []
    for (name, trait), group in frame.groupby(["contestant", "trait"]):
        scores = group["score"].dropna().to_numpy(dtype=float)
        n = len(scores)
        mean = float(scores.mean()) if n else math.nan
        spread = float(scores.std(ddof=1)) if n > 1 else 0.0
        half = 1.96 * spread / math.sqrt(n) if n > 1 else math.nan
        out.append(
            {
                "contestant": name,
                "trait": trait,
                "mean": mean,
                "lower": mean - half,
                "upper": mean + half,
                "spread": spread,
                "n": n,
                "unscored": int(group["score"].isna().sum()),
            }
        )
    return pd.DataFrame(out)


def likelihood(job_id: int) -> list[dict]:
    path = runfolder.run_dir(job_id) / LIKELIHOOD_FILE
    return json.loads(path.read_text()) if path.exists() else []


def health(items: list[results.Outcome]) -> dict:
    """Is the judge trustworthy here? Position consistency, ties, length bias, agreement with people."""
    machine = [o for o in items if not o.is_human and o.rated]
    paired = [o for o in machine if o.consistent is not None]
    consistency = sum(o.consistent for o in paired) / len(paired) if paired else None
    ties = sum(o.winner in ("tie", "bothbad") for o in machine) / len(machine) if machine else None
    length = _length_correlation(machine)
    agreement, compared = _agreement(items)
    warnings = []
    if consistency is not None and consistency < CONSISTENCY_WARNING:
        warnings.append(
            f"Only {consistency:.0%} of verdicts survive swapping the two responses (under 65%): "
            "the judge is swayed by position; treat its ratings with care."
        )
    if length is not None and abs(length) > 0.3:
        warnings.append(f"Verdicts follow response length (correlation {length:+.2f}): compare the length view.")
    return {
        "position_consistency": consistency,
        "judged_both_orders": len(paired),
        "tie_rate": ties,
        "length_correlation": length,
        "human_agreement": agreement,
        "human_compared": compared,
        "warnings": warnings,
    }


def _length_correlation(items: list[results.Outcome]) -> float | None:
    if len(items) < 3:
        return None
    gap = []
    score = []
    for o in items:
        a, b = o.lengths()
        gap.append((a - b) / max(a + b, 1))
        score.append({"a": 1.0, "b": 0.0}.get(o.winner, 0.5))
    gap_array, score_array = np.array(gap), np.array(score)
    if gap_array.std() == 0 or score_array.std() == 0:
        return None
    return float(np.corrcoef(gap_array, score_array)[0, 1])


def _agreement(items: list[results.Outcome]) -> tuple[float | None, int]:
    """Share of pairs judged by both where the people's majority and the judge picked the same."""
    machine = {}
    people: dict[tuple, list[str]] = {}
    for o in items:
        if not o.rated:
            continue
        key = (o.prompt_id, *sorted((o.a, o.b)))
        winner = _winner(o)
        if o.is_human:
            people.setdefault(key, []).append(winner)
        else:
            machine[key] = winner
    both = [key for key in people if key in machine]
    if not both:
        return None, 0
    same = sum(max(set(people[k]), key=people[k].count) == machine[k] for k in both)
    return same / len(both), len(both)


def _winner(o: results.Outcome) -> str:
    if o.winner in ("tie", "bothbad"):
        return "tie"
    return o.a if o.winner == "a" else o.b


def matrix(items: list[results.Outcome], names: list[str]) -> pd.DataFrame:
    """Row contestant's wins, losses and ties against each column contestant."""
    cells = {(r, c): [0, 0, 0] for r in names for c in names if r != c}
    for o in items:
        if not o.rated or (o.a, o.b) not in cells:
            continue
        if o.winner == "a":
            cells[(o.a, o.b)][0] += 1
            cells[(o.b, o.a)][1] += 1
        elif o.winner == "b":
            cells[(o.b, o.a)][0] += 1
            cells[(o.a, o.b)][1] += 1
        else:
            cells[(o.a, o.b)][2] += 1
            cells[(o.b, o.a)][2] += 1
    return pd.DataFrame(
        [{"row": r, "column": c, "wins": w, "losses": lo, "ties": t} for (r, c), (w, lo, t) in cells.items()]
    )


def drill(board: Board, first: str, second: str, criterion: str = judge.OVERALL) -> list[results.Outcome]:
    """The battles behind one cell: both contestants, any order, with responses and reasons."""
    items = board.outcomes if criterion == judge.OVERALL else results.outcomes(board.job.id, board.source, criterion)
    return [o for o in items if {o.a, o.b} == {first, second}]
