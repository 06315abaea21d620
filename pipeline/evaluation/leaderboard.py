"""Everything the Leaderboard page and the reports show for one evaluation run, computed from the store."""

from __future__ import annotations

import json
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy import func
from sqlmodel import select

from pipeline import storage
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.evaluation import drift, judge, offline, ratings, results
from pipeline.models import Battle, Job, TraitScore

CONSISTENCY_WARNING = 0.65
LIKELIHOOD_FILE = "likelihood.json"
FIDELITY_FILE = "fidelity.json"
DEFAULT_MIN_BATTLES = 30
SOURCE_WORDS = {"judge": "the judge", "human": "human votes", "both": "the judge and human votes"}


def min_battles() -> int:
    """Battles each contestant needs before its rating is shown (`STUDIO_MIN_BATTLES`, default 30).

    Under it a bootstrap of a few unanimous battles gives a huge rating with a zero-width interval:
    pages show "not enough battles yet (N of 30)" instead.
    """
    try:
        return max(1, int(os.environ.get("STUDIO_MIN_BATTLES", DEFAULT_MIN_BATTLES)))
    except ValueError:
        return DEFAULT_MIN_BATTLES


def rated_count(items: list[results.Outcome]) -> int:
    """THE battle count: judged pairwise comparisons on the overall criterion that have a verdict.

    An LLM judge's two orders are one battle, a human vote is one, an offline verdict is one; a missing
    reply or an unparsed verdict is not a battle. Every page that says "battles" counts this.
    """
    return sum(1 for o in items if o.rated and o.criterion == judge.OVERALL)


def battle_count(job_id: int, source: str = "both") -> int:
    """How many battles run `job_id` has from `source` ("judge", "human" or "both"), as every page counts them."""
    return rated_count(results.outcomes(job_id, source, judge.OVERALL))


def not_enough(count: int, needed: int | None = None) -> str:
    needed = min_battles() if needed is None else needed
    return f"not enough battles yet ({count} of {needed})"


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
    fidelity: list[dict] = field(default_factory=list)
    drift: list[dict] = field(default_factory=list)
    health: dict = field(default_factory=dict)
    min_battles: int = DEFAULT_MIN_BATTLES
    _figures: dict = field(default_factory=dict, repr=False)

    def figure(self, kind: str):
        """One of the Leaderboard's charts, built once per board: a cached board's rerun reuses them
        (building the six plotly figures took more time than everything else on a cached rerun).

        kind: ratings, matrix, traits, scores, groups, length or likelihood.
        """
        if kind not in self._figures:
            from pipeline.evaluation import charts, report

            names = self.overall.contestants if self.state == "rated" else list(self.per_contestant)
            makers = {
                "ratings": lambda: charts.ratings_chart(self.overall, f"Ratings, with 95% intervals, {self.basis}"),
                "matrix": lambda: charts.matrix_chart(matrix(self.outcomes, names), names, "Row against column"),
                "traits": lambda: charts.grouped_ratings_chart(self.by_trait, "Ratings per trait", "trait"),
                "scores": lambda: charts.trait_scores_chart(
                    self.trait_scores, "Trait scores (LLM judge, 1–5, 95% interval)"
                ),
                "groups": lambda: charts.grouped_ratings_chart(
                    self.by_group, "Ratings per prompt group", "prompt group"
                ),
                "length": lambda: charts.length_chart(
                    self.overall,
                    self.length_controlled,
                    report.mean_lengths(self),
                    "Ratings with and without a response-length control",
                ),
                "likelihood": lambda: charts.likelihood_chart(self.likelihood),
                "fidelity": lambda: charts.fidelity_chart(self.fidelity),
                "drift": lambda: charts.drift_chart(self.drift),
                "drift_judge": lambda: charts.drift_chart(self.drift, "judge"),
            }
            self._figures[kind] = makers[kind]()
        return self._figures[kind]

    @property
    def battles(self) -> int:
        """This board's battle count (see `rated_count`)."""
        return rated_count(self.outcomes)

    @property
    def per_contestant(self) -> dict[str, int]:
        """Battles each contestant took part in, in the run's contestant order."""
        found = dict.fromkeys(self.contestants, 0)
        for o in self.outcomes:
            if o.rated:
                found[o.a] = found.get(o.a, 0) + 1
                found[o.b] = found.get(o.b, 0) + 1
        return found

    def pair_count(self, first: str, second: str) -> int:
        """Battles between these two contestants, either order."""
        return sum(1 for o in self.outcomes if o.rated and {o.a, o.b} == {first, second})

    def pair_rated(self, first: str, second: str) -> bool:
        """Whether a head-to-head claim ("X beats Y 80% of the time") has the minimum behind it: the
        ratings need every contestant to have the minimum, and this pair must have met that often too."""
        return self.state == "rated" and self.pair_count(first, second) >= self.min_battles

    def not_enough_pair(self, first: str, second: str) -> str:
        n = self.pair_count(first, second)
        return f"not enough battles between {first} and {second} yet ({n} of {self.min_battles})"

    @property
    def fewest(self) -> tuple[str, int]:
        """The contestant with the fewest battles, and how many."""
        counted = self.per_contestant
        name = min(counted, key=counted.get) if counted else ""
        return name, counted.get(name, 0)

    @property
    def state(self) -> str:
        """ "empty" (nothing rated yet), "too_few" (a contestant under the minimum) or "rated"."""
        if self.overall is None:
            return "empty"
        return "too_few" if self.fewest[1] < self.min_battles else "rated"

    @property
    def basis(self) -> str:
        """What the figures rest on, in words: "from 240 battles (the judge and human votes)"."""
        n = self.battles
        return f"from {n} battle{'s' if n != 1 else ''} ({SOURCE_WORDS.get(self.source, self.source)})"

    def rating_text(self, name: str) -> str:
        """A contestant's rating as a page shows it: the figure and interval, or why there is none."""
        count = self.per_contestant.get(name, 0)
        if self.overall is None or name not in self.overall.rating or self.state != "rated":
            return not_enough(count, self.min_battles)
        rated = self.overall
        if name == self.anchor and rated.anchor == name:
            return f"{rated.rating[name]:.0f} (the base, held there)"
        return f"{rated.rating[name]:.0f} ({rated.lower[name]:.0f}–{rated.upper[name]:.0f})"

    def win_text(self, name: str) -> str | None:
        """How often `name` beats the anchor, as the Leaderboard says it; None for the anchor itself."""
        if name == self.anchor or self.overall is None or self.anchor not in self.overall.rating:
            return None
        if self.state != "rated" or name not in self.overall.rating:
            return not_enough(self.per_contestant.get(name, 0), self.min_battles)
        if not self.pair_rated(name, self.anchor):
            return self.not_enough_pair(name, self.anchor)
        p, lo, hi = self.overall.win_probability(name, self.anchor)
        return f"{p:.0%} ({lo:.0%}–{hi:.0%})"

    def rows(self) -> list[dict]:
        """The rank table: every contestant, with its rating or "not enough battles yet (N of 30)"."""
        counted = self.per_contestant
        if self.state == "rated":
            table = self.overall.table()
            for row in table:
                row["rating"] = self.rating_text(row["contestant"])
                row.pop("lower")
                row.pop("upper")
            return table
        return [
            {"contestant": n, "battles": counted.get(n, 0), "rating": not_enough(counted.get(n, 0), self.min_battles)}
            for n in sorted(counted, key=counted.get, reverse=True)
        ]

    def figures_for(self, name: str) -> dict:
        """What the Models page shows for one contestant: the Leaderboard's own figures and their basis."""
        rated = self.state == "rated" and name in (self.overall.rating if self.overall else {})
        p = None
        if rated and name != self.anchor and self.anchor in self.overall.rating and self.pair_rated(name, self.anchor):
            p = self.overall.win_probability(name, self.anchor)[0]
        return {
            "rating": self.overall.rating[name] if rated else None,
            "lower": self.overall.lower[name] if rated else None,
            "upper": self.overall.upper[name] if rated else None,
            "win_rate_vs_base": p,
            "rating_text": self.rating_text(name),
            "win_text": self.win_text(name),
            "basis": self.basis,
        }

    def disagreement(self) -> str | None:
        """Plain words when persona likelihood and the judge order the contestants differently."""
        if self.state != "rated" or not self.likelihood:
            return None
        by_likelihood = [row["contestant"] for row in sorted(self.likelihood, key=lambda r: -r["mean"])]
        both = [n for n in by_likelihood if n in self.overall.rating]
        by_rating = [n for n in self.overall.contestants if n in both]
        if len(both) < 2 or both == by_rating:
            return None
        return (
            f"Persona likelihood and the {('offline ' if self.offline else '')}judge rank the contestants differently: "
            f"the judge puts {by_rating[0]} first ({' > '.join(by_rating)}); persona likelihood puts {both[0]} first "
            f"({' > '.join(both)}). They measure different things: the judge compares the replies each contestant "
            "wrote (which reads more like the persona), while persona likelihood measures how naturally a model "
            "would produce the persona's own gold replies to held-out prompts, not how good its own replies are."
        )

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
        """One line for the home page (and the job's last word): who leads, how sure, from what."""
        if self.overall is None:
            return f"no rated battles yet ({SOURCE_WORDS.get(self.source, self.source)})"
        if self.state == "too_few":
            name, count = self.fewest
            return (
                f"Ratings: {not_enough(count, self.min_battles)} for {name} · {self.basis} · "
                f"{self.judge_label.split(':')[0]}"
            )
        top = self.overall.contestants[0]
        line = f"{top} leads at {self.rating_text(top)}"
        if self.anchor in self.overall.rating and top != self.anchor and self.pair_rated(top, self.anchor):
            line += f", beating {self.anchor} {self.win_text(top).replace(' (', ' of the time (', 1)}"
        return line + f" · {self.basis} · {self.judge_label.split(':')[0]}"

    def statements(self) -> list[str]:
        """Plain-words win probabilities of each contestant against the anchor."""
        if self.state != "rated" or self.anchor not in self.overall.contestants:
            return []
        lines = []
        for name in self.overall.contestants:
            if name == self.anchor:
                continue
            if not self.pair_rated(name, self.anchor):
                lines.append(f"{name} against {self.anchor}: {self.not_enough_pair(name, self.anchor)}.")
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
    board.min_battles = min_battles()
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
    board.fidelity = fidelity(job_id)
    board.drift = drift.load(storage.report(job_id, drift.FILE).parent)
    board.health = health(results.outcomes(job_id, "both", judge.OVERALL, rows))
    return board


# --- cached reads --------------------------------------------------------------------------------
#
# A board is rebuilt only when what it is built from changes. `version` reads that cheaply (counts and
# highest ids of the run's battles and trait scores, the job's status and progress, the likelihood file's
# time, the minimum): a new battle, a vote, a trait score or the job finishing gives a new version, so the
# next read builds again; every other read (a page rerun, Home, Models, the Evaluate table) is a lookup.
# Battles and trait scores are only ever inserted, never updated, so count + max(id) sees every write.

CACHE_SIZE = 32
_cache: OrderedDict[tuple, object] = OrderedDict()
_cache_lock = threading.Lock()


def caching() -> bool:
    return os.environ.get("STUDIO_BOARD_CACHE", "1") != "0"


def version(job_id: int) -> tuple:
    with session_scope() as session:
        battles_n, battles_top = session.exec(
            select(func.count(Battle.id), func.max(Battle.id)).where(Battle.job_id == job_id)
        ).one()
        scores_n, scores_top = session.exec(
            select(func.count(TraitScore.id), func.max(TraitScore.id)).where(TraitScore.job_id == job_id)
        ).one()
        job = session.exec(select(Job.status, Job.progress_done, Job.finished_at).where(Job.id == job_id)).first()
    files = [storage.report(job_id, name) for name in (LIKELIHOOD_FILE, FIDELITY_FILE, drift.FILE)]
    written = tuple(path.stat().st_mtime_ns if path.exists() else None for path in files)
    return (battles_n, battles_top, scores_n, scores_top, tuple(job) if job else None, written, min_battles())


def _cached(key: tuple, make):
    if not caching():
        return make()
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    value = make()
    with _cache_lock:
        _cache[key] = value
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return value


def cache_clear() -> None:
    with _cache_lock:
        _cache.clear()


def board(job_id: int, source: str = "both", rounds: int = 1000, seed: int = 0) -> Board:
    """`build`, read through the cache: what every page shows (Leaderboard, Home, Models, Evaluate)."""
    key = ("board", job_id, source, rounds, seed, version(job_id))
    return _cached(key, lambda: build(job_id, source, rounds, seed))


def counted(job_id: int, source: str = "both") -> int:
    """`battle_count`, read through the cache."""
    return _cached(("count", job_id, source, version(job_id)), lambda: battle_count(job_id, source))


def headline(job_id: int) -> str:
    """The Leaderboard's headline for a run (judge and human votes), as Home shows it."""
    return board(job_id).headline()


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
    path = storage.report(job_id, LIKELIHOOD_FILE)
    return json.loads(path.read_text()) if path.exists() else []


def fidelity_rows(rows: list[dict]) -> pd.DataFrame:
    """The fidelity table as a page shows it: percentages with intervals, "—" for what is unknown."""

    def percent(value) -> str:
        return "—" if value is None else f"{value:.0f}%"

    return pd.DataFrame(
        [
            {
                "contestant": r["contestant"],
                "gap closed": percent(r["gap_closed"]),
                "95% interval": f"{percent(r['gap_lower'])}–{percent(r['gap_upper'])}",
                "KL per token": "—" if r["kl"] is None else f"{r['kl']:.3f}",
                "prompts": r["prompts"],
                "reply tokens": r["tokens"],
            }
            for r in rows
        ]
    )


def fidelity(job_id: int) -> list[dict]:
    path = storage.report(job_id, FIDELITY_FILE)
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
