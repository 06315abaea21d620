"""Bradley-Terry ratings with bootstrap intervals, on the Elo scale, from pairwise battles.

A battle is `(a, b, winner)` with winner "a", "b", "tie" or "bothbad"; a tie (either kind) is half
a win each way. The fit is maximum likelihood by Newton's method on win counts aggregated per pair,
so 1,000 bootstrap rounds are one batched computation (each round is a multinomial redraw of the
battle counts), not 1,000 separate fits. Ratings are 400·log10 strengths, the anchor (the base
model) at 1000 when given, otherwise the mean at 1000.

A contestant that wins every battle has no finite maximum-likelihood strength; a virtual
1/100th of a tie between every pair that met keeps it finite (it moves ordinary ratings by well
under a point).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import UserFacingError

SCALE, BASE, ANCHOR_RATING = 400.0, 10.0, 1000.0
MIN_BATTLES = 10  # per contestant, before intervals are trusted to stop a run
PRIOR_TIES = 0.01  # virtual tie weight per pair that met: keeps an unbeaten contestant finite
WINNERS = ("a", "b", "tie", "bothbad")
ARENA = {"model_a": "a", "model_b": "b", "tie": "tie", "tie (bothbad)": "bothbad"}
_ELO = SCALE / math.log(BASE)  # natural-log strength → Elo points


def from_arena(row: dict) -> tuple[str, str, str]:
    """A battle in Chatbot Arena's published format (`model_a`, `model_b`, `winner`)."""
    return (str(row["model_a"]), str(row["model_b"]), ARENA[row["winner"]])


def _index(battles) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Contestant names, and per battle the indices of a and b and a's score (1, 0.5 or 0)."""
    names = sorted({name for a, b, _ in battles for name in (a, b)})
    position = {name: i for i, name in enumerate(names)}
    first = np.array([position[a] for a, _, _ in battles], dtype=np.int64)
    second = np.array([position[b] for _, b, _ in battles], dtype=np.int64)
    score = np.array([{"a": 1.0, "b": 0.0}.get(w, 0.5) for _, _, w in battles])
    return names, first, second, score


def _wins(k: int, first, second, score, weights) -> np.ndarray:
    """(rounds, k, k) matrix: W[r, i, j] = i's wins over j (ties as halves) under each weighting of the battles."""
    cells = np.zeros((len(first), k * k))
    cells[np.arange(len(first)), first * k + second] = score
    cells[np.arange(len(first)), second * k + first] += 1.0 - score
    return (weights @ cells).reshape(len(weights), k, k)


def _fit(wins: np.ndarray, iterations: int = 100) -> np.ndarray:
    """Maximum-likelihood log-strengths (rounds, k), mean zero, by Newton's method on the counts."""
    rounds, k, _ = wins.shape
    met = (wins + wins.transpose(0, 2, 1)) > 0
    wins = wins + PRIOR_TIES / 2 * met
    games = wins + wins.transpose(0, 2, 1)
    totals = wins.sum(axis=2)
    theta = np.zeros((rounds, k))
    # pins the mean (the likelihood only sees differences); the tiny ridge keeps groups that never met apart
    ones = np.ones((k, k)) / k + np.eye(k) * 1e-9
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(theta[:, None, :] - theta[:, :, None]))  # p[r, i, j] = P(i beats j)
        gradient = totals - (games * p).sum(axis=2)
        curvature = games * p * (1.0 - p)
        hessian = np.einsum("rij->ri", curvature)[:, :, None] * np.eye(k) - curvature + ones
        step = np.linalg.solve(hessian, gradient[..., None])[..., 0]
        step = np.clip(step, -3.0, 3.0)  # damped: far from the optimum a full step can overshoot
        theta += step
        if np.abs(step).max() < 1e-9:
            break
    return theta - theta.mean(axis=1, keepdims=True)


def _to_elo(theta: np.ndarray, names: list[str], anchor: str | None) -> np.ndarray:
    points = theta * _ELO
    if anchor in names:
        return points - points[:, [names.index(anchor)]] + ANCHOR_RATING
    return points - points.mean(axis=1, keepdims=True) + ANCHOR_RATING


@dataclass
class Ratings:
    contestants: list[str]  # best first
    rating: dict[str, float]
    lower: dict[str, float]
    upper: dict[str, float]
    battles: dict[str, int]
    wins: dict[str, int]
    losses: dict[str, int]
    ties: dict[str, int]
    pair_battles: dict[tuple[str, str], int]
    anchor: str | None
    samples: np.ndarray = field(repr=False, default=None)  # (rounds, contestants), columns in `_names` order
    _names: list[str] = field(repr=False, default_factory=list)

    @property
    def rank(self) -> dict[str, int]:
        """1 + how many contestants are surely better: an interval entirely above this one's."""
        return {n: 1 + sum(self.lower[m] > self.upper[n] for m in self.contestants if m != n) for n in self.contestants}

    def width(self, name: str) -> float:
        return self.upper[name] - self.lower[name]

    def win_probability(self, a: str, b: str) -> tuple[float, float, float]:
        """P(a beats b), and its 95% interval over the bootstrap rounds."""
        gap = self.rating[a] - self.rating[b]
        p = 1.0 / (1.0 + BASE ** (-gap / SCALE))
        if self.samples is None or not len(self.samples):
            return p, p, p
        gaps = self.samples[:, self._names.index(a)] - self.samples[:, self._names.index(b)]
        ps = 1.0 / (1.0 + BASE ** (-gaps / SCALE))
        return p, float(np.percentile(ps, 2.5)), float(np.percentile(ps, 97.5))

    def table(self) -> list[dict]:
        rank = self.rank
        return [
            {"rank": rank[n], "contestant": n, "rating": round(self.rating[n], 1), "lower": round(self.lower[n], 1),
             "upper": round(self.upper[n], 1), "battles": self.battles[n], "wins": self.wins[n],
             "losses": self.losses[n], "ties": self.ties[n]}
            for n in self.contestants
        ]  # fmt: skip

    def to_dict(self) -> dict:
        return {
            "anchor": self.anchor,
            "ratings": {n: round(self.rating[n], 2) for n in self.contestants},
            "intervals": {n: [round(self.lower[n], 2), round(self.upper[n], 2)] for n in self.contestants},
            "ranks": self.rank,
            "battles": self.battles,
            "wins": self.wins,
            "losses": self.losses,
            "ties": self.ties,
            "bootstrap_rounds": 0 if self.samples is None else len(self.samples),
        }


def fit(battles, anchor: str | None = None) -> dict[str, float]:
    """Point ratings only."""
    names, first, second, score = _index(battles)
    theta = _fit(_wins(len(names), first, second, score, np.ones((1, len(first)))))
    return dict(zip(names, _to_elo(theta, names, anchor)[0].tolist(), strict=True))


def bootstrap(battles, anchor: str | None = None, rounds: int = 1000, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Ratings of `rounds` resamples of the battles (with replacement), as a (rounds, contestants) array."""
    names, first, second, score = _index(battles)
    # battles that are the same (pair, outcome) are interchangeable: redraw counts per distinct cell
    keys = np.stack([first, second, (score * 2).astype(np.int64)], axis=1)
    cells, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(first), counts / counts.sum(), size=rounds).astype(float)
    theta = _fit(_wins(len(names), cells[:, 0], cells[:, 1], cells[:, 2] / 2.0, draws))
    return names, _to_elo(theta, names, anchor)


def rate(battles, anchor: str | None = None, rounds: int = 1000, seed: int = 0) -> Ratings:
    """Ratings, 95% intervals, ranks and win/loss/tie counts: the one call most callers need."""
    battles = [tuple(b[:3]) for b in battles]
    if not battles:
        raise UserFacingError("There are no battles to rate yet.")
    unknown = {w for _, _, w in battles} - set(WINNERS)
    if unknown:
        raise UserFacingError(f"Unknown battle outcome(s) {sorted(unknown)}: use one of {', '.join(WINNERS)}.")
    point = fit(battles, anchor)
    names, samples = bootstrap(battles, anchor, rounds, seed) if rounds else (sorted(point), None)
    counts = {key: dict.fromkeys(point, 0) for key in ("battles", "wins", "losses", "ties")}
    pairs: dict[tuple[str, str], int] = {}
    for a, b, w in battles:
        pairs[(a, b)] = pairs.get((a, b), 0) + 1
        for name, won, lost in ((a, "a", "b"), (b, "b", "a")):
            counts["battles"][name] += 1
            key = "wins" if w == won else "losses" if w == lost else "ties"
            counts[key][name] += 1
    if samples is not None:
        lower = dict(zip(names, np.percentile(samples, 2.5, axis=0).tolist(), strict=True))
        upper = dict(zip(names, np.percentile(samples, 97.5, axis=0).tolist(), strict=True))
    else:
        lower, upper = dict(point), dict(point)
    order = sorted(point, key=lambda n: -point[n])
    return Ratings(order, point, lower, upper, counts["battles"], counts["wins"], counts["losses"], counts["ties"],
                   pairs, anchor if anchor in point else None, samples, names)  # fmt: skip


def rate_length_controlled(battles, anchor: str | None = None) -> dict:
    """Ratings with the reply-length effect taken out (Chatbot Arena's style control, for length).

    Battles are `(a, b, winner, length_a, length_b)`. Logistic regression on the contestant
    indicators plus the normalised length difference (len_a - len_b) / (len_a + len_b); the
    contestant coefficients are the ratings as if both replies had been the same length.
    """
    names = sorted({n for a, b, *_ in battles for n in (a, b)})
    k = len(names)
    rows, ys, weights = [], [], []
    for a, b, w, la, lb in battles:
        x = np.zeros(k + 1)
        x[names.index(a)], x[names.index(b)] = 1.0, -1.0
        x[k] = (la - lb) / max(la + lb, 1)
        outcomes = {"a": [(1.0, 1.0)], "b": [(0.0, 1.0)]}.get(w, [(1.0, 0.5), (0.0, 0.5)])
        for y, weight in outcomes:
            rows.append(x)
            ys.append(y)
            weights.append(weight)
    x, y, weight = np.array(rows), np.array(ys), np.array(weights)
    beta = np.zeros(k + 1)
    ridge = np.eye(k + 1) * 1e-4  # keeps an unbeaten contestant finite, as PRIOR_TIES does above
    pin = np.zeros((k + 1, k + 1))
    pin[:k, :k] = 1.0 / k
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(x @ beta)))
        gradient = x.T @ (weight * (y - p)) - ridge @ beta
        hessian = (x * (weight * p * (1 - p))[:, None]).T @ x + ridge + pin
        step = np.clip(np.linalg.solve(hessian, gradient), -3.0, 3.0)
        beta += step
        if np.abs(step).max() < 1e-9:
            break
    ratings = _to_elo(beta[None, :k] - beta[:k].mean(), names, anchor)[0]
    return {"ratings": dict(zip(names, ratings.tolist(), strict=True)), "length_coefficient": float(beta[k])}


def _overlap(ratings: Ratings, a: str, b: str) -> float:
    return min(ratings.upper[a], ratings.upper[b]) - max(ratings.lower[a], ratings.lower[b])


def separated(ratings: Ratings, target_width: float | None = None) -> bool:
    """Every neighbour in the order is apart at 95%, or (with a target) every interval is that narrow.

    Never before each contestant has MIN_BATTLES: a bootstrap of a handful of unanimous battles has
    intervals of zero width, which would stop a run on luck.
    """
    if any(ratings.battles[n] < MIN_BATTLES for n in ratings.contestants):
        return False
    if target_width:
        return all(ratings.width(n) <= target_width for n in ratings.contestants)
    order = ratings.contestants
    return all(ratings.lower[a] > ratings.upper[b] for a, b in zip(order, order[1:], strict=False))


def next_pairs(ratings: Ratings | None, remaining: dict[tuple[str, str], int], n: int) -> list[tuple[str, str]]:
    """Where the next judge calls help most: neighbours in the order whose intervals still overlap.

    A pair of neighbours decides the ranking; pairs far apart in the order add little once their
    intervals are clear of each other. Among overlapping neighbours, the widest overlap per battle
    so far goes first. Pairs with a contestant not yet rated come before everything.
    """
    open_pairs = [pair for pair, left in remaining.items() if left > 0]
    if ratings is None:
        return open_pairs[:n]
    known = set(ratings.contestants)
    fresh = [p for p in open_pairs if not set(p) <= known]
    position = {name: i for i, name in enumerate(ratings.contestants)}
    scored = []
    for pair in open_pairs:
        if pair in fresh:
            continue
        a, b = pair
        overlap = _overlap(ratings, a, b)
        if min(ratings.battles[a], ratings.battles[b]) < MIN_BATTLES:  # too few battles to trust its interval
            overlap = max(overlap, ratings.width(a) + ratings.width(b), 1.0)
        if overlap <= 0:
            continue
        distance = abs(position[a] - position[b])
        met = ratings.pair_battles.get((a, b), 0) + ratings.pair_battles.get((b, a), 0)
        scored.append((distance, -overlap / math.sqrt(met + 1), pair))
    scored.sort()
    return (fresh + [pair for *_, pair in scored])[:n]


def read_battles_file(path: str | Path) -> list[tuple[str, str, str]]:
    """Battles from a Chatbot Arena file: JSON Lines or a JSON array of {model_a, model_b, winner}."""
    path = Path(path)
    if not path.exists():
        raise UserFacingError(f"There is no file {str(path)!r}.")
    text = path.read_text(encoding="utf-8-sig")
    if not text.strip():
        raise UserFacingError(f"{path.name} is empty: no battles to rate.")
    if text.lstrip().startswith("["):
        try:
            rows = list(enumerate(json.loads(text), start=1))
        except json.JSONDecodeError as exc:
            raise UserFacingError(f"{path.name}: not valid JSON (line {exc.lineno}: {exc.msg}).") from None
        where = "item"
    else:
        rows, where = [], "line"
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise UserFacingError(f"{path.name}, line {number}: not valid JSON ({exc.msg}).") from None
    battles = []
    for number, row in rows:
        if not isinstance(row, dict):
            raise UserFacingError(
                f"{path.name}, {where} {number}: a battle is an object with model_a, model_b, winner."
            )
        missing = [key for key in ("model_a", "model_b", "winner") if key not in row]
        if missing:
            raise UserFacingError(f"{path.name}, {where} {number}: missing {', '.join(missing)}.")
        if row["winner"] not in ARENA:
            raise UserFacingError(
                f"{path.name}, {where} {number}: winner {row['winner']!r} is not one of {', '.join(ARENA)}."
            )
        battles.append(from_arena(row))
    return battles
