"""Bradley-Terry ratings with bootstrap intervals, on the Elo scale, from pairwise battles.

A battle is `(a, b, winner)` with winner "a", "b", "tie" or "bothbad"; a tie of either kind is half
a win each way. Ratings are 400·log10 strengths: the anchor (the base model) sits at exactly 1000
when given, otherwise the mean is 1000, so a 191-point gap means a 75% chance of winning.

The fit is maximum likelihood by Newton's method on a win-count matrix, never a loop over battles.
Battles with the same pair and outcome are interchangeable, so a bootstrap resample is one
multinomial draw of the counts per (pair, outcome) cell, and all rounds are fitted together as one
(rounds × K × K) array: 1,000 rounds of 5,000 battles take well under a second.

A contestant that wins every battle has no finite maximum-likelihood strength. A virtual 1/100th of
a tie between every two contestants (PRIOR_TIES) keeps it finite, puts groups that never met level
instead of at arbitrary offsets, and moves ratings on ordinary data by a small fraction of a point.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import UserFacingError

SCALE, BASE, ANCHOR_RATING = 400.0, 10.0, 1000.0
PRIOR_TIES = 0.01  # virtual tie weight between every two contestants: keeps an unbeaten contestant finite
MIN_BATTLES = 10  # per contestant before its interval may stop a run: a few unanimous battles give zero width
WINNERS = ("a", "b", "tie", "bothbad")
ARENA = {"model_a": "a", "model_b": "b", "tie": "tie", "tie (bothbad)": "bothbad"}
_ELO = SCALE / math.log(BASE)  # natural-log strength → rating points
_OUTCOME = {"a": 0, "b": 1, "tie": 2, "bothbad": 2}  # 0: a won, 1: b won, 2: half a win each
_SHARE_OF_FIRST = np.array([1.0, 0.0, 0.5])  # a's score for each outcome code
_CELLS_PER_CHUNK = 4_000_000  # rounds × K × K numbers fitted at once; bounds memory for many contestants
_FOCUS = 6  # exponent on each overlapping neighbour pair's (facing half-widths / gap): the laggard dominates
_LENGTH_RIDGE = 0.01  # about one battle's worth of information: keeps the length effect finite when confounded

Battle = tuple[str, str, str]


def from_arena(row: dict) -> Battle:
    """A battle from Chatbot Arena's published format (`model_a`, `model_b`, `winner`)."""
    if not isinstance(row["winner"], str) or row["winner"] not in ARENA:
        raise UserFacingError(f"Unknown winner {row['winner']!r}: use one of {', '.join(ARENA)}.")
    return (str(row["model_a"]), str(row["model_b"]), ARENA[row["winner"]])


# --- fitting ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Battles:
    """Battles as indices: contestant names (sorted), and per battle a's and b's index and the outcome code."""

    names: list[str]
    first: np.ndarray
    second: np.ndarray
    outcome: np.ndarray

    @property
    def k(self) -> int:
        return len(self.names)

    def cells(self) -> tuple[np.ndarray, np.ndarray]:
        """Distinct (a, b, outcome) cells as one code each, and how many battles fall in each."""
        codes = (self.first * self.k + self.second) * 3 + self.outcome
        return np.unique(codes, return_counts=True)


def _index(battles: Iterable[Sequence]) -> _Battles:
    battles = [tuple(b[:3]) for b in battles]  # extra fields (e.g. reply lengths) are ignored here
    if not battles:
        raise UserFacingError("There are no battles to rate yet.")
    unknown = sorted({str(w) for _, _, w in battles if not isinstance(w, str) or w not in _OUTCOME})
    if unknown:
        raise UserFacingError(f"Unknown battle outcome(s) {unknown}: use one of {', '.join(WINNERS)}.")
    selves = sorted({a for a, b, _ in battles if a == b})
    if selves:
        raise UserFacingError(f"A contestant cannot battle itself: {', '.join(map(str, selves))}.")
    sides = np.array([a for a, _, _ in battles] + [b for _, b, _ in battles])
    names, index = np.unique(sides, return_inverse=True)
    first, second = np.split(index.astype(np.int64), 2)
    outcome = np.array([_OUTCOME[w] for _, _, w in battles], dtype=np.int64)
    return _Battles(names.tolist(), first, second, outcome)


def _win_matrix(k: int, cells: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(rounds, K, K) wins: W[r, i, j] = i's wins over j (ties as halves) plus the prior, per row of cell weights."""
    pair, outcome = np.divmod(cells, 3)
    i, j = np.divmod(pair, k)
    share = _SHARE_OF_FIRST[outcome]
    targets = np.concatenate([i * k + j, j * k + i])
    values = np.concatenate([weights * share, weights * (1.0 - share)], axis=1)
    order = np.argsort(targets, kind="stable")
    targets, values = targets[order], values[:, order]
    starts = np.flatnonzero(np.r_[True, targets[1:] != targets[:-1]])
    wins = np.zeros((len(weights), k * k))
    wins[:, targets[starts]] = np.add.reduceat(values, starts, axis=1)
    return wins.reshape(-1, k, k) + PRIOR_TIES / 2 * (1.0 - np.eye(k))


def _fit(wins: np.ndarray, iterations: int = 100) -> np.ndarray:
    """Maximum-likelihood log-strengths (rounds, K), mean zero, by Newton's method on the win counts.

    Every round is solved at once; the prior makes each likelihood strictly concave (up to a shared
    shift, pinned by the mean), so Newton converges in a handful of steps from zero.
    """
    rounds, k, _ = wins.shape
    games = wins + wins.transpose(0, 2, 1)
    totals = wins.sum(axis=2)
    theta = np.zeros((rounds, k))
    pin = np.full((k, k), 1.0 / k)  # the likelihood only sees differences: this fixes the mean at zero
    eye = np.eye(k)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(theta[:, None, :] - theta[:, :, None]))  # p[r, i, j] = P(i beats j)
        gradient = totals - (games * p).sum(axis=2)
        curvature = games * p * (1.0 - p)
        hessian = curvature.sum(axis=2)[:, :, None] * eye - curvature + pin
        step = np.linalg.solve(hessian, gradient[..., None])[..., 0]
        step = np.clip(step, -3.0, 3.0)  # damped: far from the optimum (an unbeaten contestant) a full step overshoots
        theta += step
        if np.abs(step).max() < 1e-9:
            break
    return theta - theta.mean(axis=1, keepdims=True)


def _fit_rounds(k: int, cells: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """`_fit` over rounds in chunks, so thousands of rounds of many contestants stay within memory."""
    chunk = max(1, _CELLS_PER_CHUNK // (k * k))
    return np.concatenate([_fit(_win_matrix(k, cells, weights[s : s + chunk])) for s in range(0, len(weights), chunk)])


def _to_elo(theta: np.ndarray, names: list[str], anchor: str | None) -> np.ndarray:
    points = theta * _ELO
    if anchor in names:
        return points - points[:, [names.index(anchor)]] + ANCHOR_RATING
    return points - points.mean(axis=1, keepdims=True) + ANCHOR_RATING


def _point(data: _Battles, anchor: str | None) -> np.ndarray:
    cells, counts = data.cells()
    return _to_elo(_fit_rounds(data.k, cells, counts[None, :].astype(float)), data.names, anchor)[0]


def _resampled(data: _Battles, anchor: str | None, rounds: int, seed: int) -> np.ndarray:
    """(rounds, K) ratings of resamples of the battles with replacement: one multinomial draw per round."""
    cells, counts = data.cells()
    total = int(counts.sum())
    draws = np.random.default_rng(seed).multinomial(total, counts / total, size=rounds).astype(float)
    return _to_elo(_fit_rounds(data.k, cells, draws), data.names, anchor)


def fit(battles: Iterable[Sequence], anchor: str | None = None) -> dict[str, float]:
    """Point ratings only (no intervals): maximum-likelihood Bradley-Terry on the Elo scale."""
    data = _index(battles)
    return dict(zip(data.names, _point(data, anchor).tolist(), strict=True))


def bootstrap(
    battles: Iterable[Sequence], anchor: str | None = None, rounds: int = 1000, seed: int = 0
) -> tuple[list[str], np.ndarray]:
    """Contestant names and the ratings of `rounds` seeded resamples of the battles, as (rounds, contestants)."""
    data = _index(battles)
    return data.names, _resampled(data, anchor, rounds, seed)


# --- the result ------------------------------------------------------------------------------------


def _win_chance(gap):
    return 1.0 / (1.0 + BASE ** (-np.asarray(gap) / SCALE))


@dataclass
class Ratings:
    """Ratings, 95% intervals and records per contestant; `contestants` is the order, best first."""

    contestants: list[str]
    rating: dict[str, float]
    lower: dict[str, float]
    upper: dict[str, float]
    battles: dict[str, int]
    wins: dict[str, int]
    losses: dict[str, int]
    ties: dict[str, int]  # ties and "both bad" together
    pair_battles: dict[tuple[str, str], int]  # per (a, b) as the battles named them
    anchor: str | None  # None when no anchor was asked for or it had no battles
    samples: np.ndarray | None = field(default=None, repr=False)  # bootstrap ratings (rounds, contestants)

    @property
    def rank(self) -> dict[str, int]:
        """1 + how many contestants are surely better (their interval is entirely above this one's).

        Contestants whose intervals overlap share a rank, as on Chatbot Arena's leaderboard.
        """
        return {n: 1 + sum(self.lower[m] > self.upper[n] for m in self.contestants) for n in self.contestants}

    def width(self, name: str) -> float:
        return self.upper[name] - self.lower[name]

    def met(self, a: str, b: str) -> int:
        """Battles between a and b, in either order."""
        return self.pair_battles.get((a, b), 0) + self.pair_battles.get((b, a), 0)

    def win_probability(self, a: str, b: str) -> tuple[float, float, float]:
        """P(a beats b) by the ratings (a tie counted as half), and its 95% interval over the bootstrap rounds."""
        for name in (a, b):
            if name not in self.rating:
                raise UserFacingError(f"{name!r} has no rating: it had no battles.")
        p = float(_win_chance(self.rating[a] - self.rating[b]))
        if self.samples is None or not len(self.samples):
            return p, p, p
        column = {name: i for i, name in enumerate(self.contestants)}
        chances = _win_chance(self.samples[:, column[a]] - self.samples[:, column[b]])
        low, high = np.percentile(chances, [2.5, 97.5])
        return p, float(low), float(high)

    def table(self) -> list[dict]:
        """One row per contestant, best first, rounded for display."""
        rank = self.rank
        return [
            {"rank": rank[n], "contestant": n, "rating": round(self.rating[n], 1), "lower": round(self.lower[n], 1),
             "upper": round(self.upper[n], 1), "battles": self.battles[n], "wins": self.wins[n],
             "losses": self.losses[n], "ties": self.ties[n]}
            for n in self.contestants
        ]  # fmt: skip

    def to_dict(self) -> dict:
        """Everything but the bootstrap samples, JSON-ready."""
        return {
            "anchor": self.anchor,
            "order": list(self.contestants),
            "ratings": {n: round(self.rating[n], 2) for n in self.contestants},
            "intervals": {n: [round(self.lower[n], 2), round(self.upper[n], 2)] for n in self.contestants},
            "ranks": self.rank,
            "battles": dict(self.battles),
            "wins": dict(self.wins),
            "losses": dict(self.losses),
            "ties": dict(self.ties),
            "bootstrap_rounds": 0 if self.samples is None else len(self.samples),
        }


def rate(battles: Iterable[Sequence], anchor: str | None = None, rounds: int = 1000, seed: int = 0) -> Ratings:
    """Ratings, 95% intervals, ranks and win/loss/tie records: the one call most callers need.

    `rounds=0` skips the bootstrap (each interval is then the point itself).
    """
    data = _index(battles)
    k, names = data.k, data.names
    point = _point(data, anchor)
    order = sorted(range(k), key=lambda i: (-round(point[i], 6), names[i]))  # rounding: equal records tie by name
    contestants = [names[i] for i in order]
    if rounds:
        samples = _resampled(data, anchor, rounds, seed)[:, order]
        lower, upper = np.percentile(samples, [2.5, 97.5], axis=0)
    else:
        samples, lower, upper = None, point[order], point[order]

    first, second, outcome = data.first, data.second, data.outcome

    def count(side: np.ndarray, code: int) -> np.ndarray:
        return np.bincount(side[outcome == code], minlength=k)

    wins = count(first, 0) + count(second, 1)
    losses = count(first, 1) + count(second, 0)
    ties = count(first, 2) + count(second, 2)
    pairs, met = np.unique(first * k + second, return_counts=True)

    def per_name(values) -> dict:
        return {names[i]: values[i].item() for i in order}

    return Ratings(
        contestants=contestants,
        rating=per_name(point),
        lower=dict(zip(contestants, np.asarray(lower).tolist(), strict=True)),
        upper=dict(zip(contestants, np.asarray(upper).tolist(), strict=True)),
        battles=per_name(wins + losses + ties),
        wins=per_name(wins),
        losses=per_name(losses),
        ties=per_name(ties),
        pair_battles={(names[p // k], names[p % k]): int(m) for p, m in zip(pairs, met, strict=True)},
        anchor=anchor if anchor in names else None,
        samples=samples,
    )


# --- length control --------------------------------------------------------------------------------


def _fit_length(k: int, first, second, diff, score, weight, start=None) -> np.ndarray:
    """Log-strengths (K) and the length coefficient, by Newton's method on the weighted logistic likelihood.

    A battle with score 0.5 (a tie) has exactly the likelihood of half a win each way.
    """
    i, j = np.triu_indices(k, 1)  # the same virtual ties as `fit`, at equal length
    first, second = np.r_[first, i], np.r_[second, j]
    diff, score = np.r_[diff, np.zeros(len(i))], np.r_[score, np.full(len(i), 0.5)]
    weight = np.r_[weight, np.full(len(i), PRIOR_TIES)]
    beta = np.zeros(k + 1) if start is None else start.copy()
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-(beta[first] - beta[second] + beta[k] * diff)))
        residual, curvature = weight * (score - p), weight * p * (1.0 - p)
        gradient = np.empty(k + 1)
        gradient[:k] = np.bincount(first, residual, k) - np.bincount(second, residual, k)
        gradient[k] = residual @ diff - _LENGTH_RIDGE * beta[k]
        pairs = np.bincount(first * k + second, curvature, k * k).reshape(k, k)
        pairs = pairs + pairs.T
        hessian = np.empty((k + 1, k + 1))
        hessian[:k, :k] = np.diag(pairs.sum(axis=1)) - pairs + 1.0 / k  # 1/k: pins the mean, as in `_fit`
        cross = np.bincount(first, curvature * diff, k) - np.bincount(second, curvature * diff, k)
        hessian[:k, k] = hessian[k, :k] = cross
        hessian[k, k] = curvature @ diff**2 + _LENGTH_RIDGE
        step = np.clip(np.linalg.solve(hessian, gradient), -3.0, 3.0)
        beta += step
        if np.abs(step).max() < 1e-9:
            break
    beta[:k] -= beta[:k].mean()
    return beta


def rate_length_controlled(
    battles: Iterable[Sequence], anchor: str | None = None, rounds: int = 0, seed: int = 0
) -> dict:
    """Ratings with the reply-length effect taken out (Chatbot Arena's style control, for length).

    Battles are `(a, b, winner, length_a, length_b)`. Bradley-Terry as logistic regression on the
    contestants plus one covariate, the normalised length difference (len_a - len_b) / (len_a + len_b):
    the contestant part is each rating as if both replies had been the same length. Returns
    {"ratings", "length_coefficient" (log-odds for a reply wholly longer, difference 1),
    "length_points" (the same in rating points)}, and with `rounds` the bootstrap "lower"/"upper"
    per contestant and "length_interval" (rounds are fitted one by one: use a few hundred at most).
    """
    battles = list(battles)
    data = _index(battles)
    if any(len(b) < 5 for b in battles):
        raise UserFacingError("Length control needs each battle as (a, b, winner, length_a, length_b).")
    lengths = np.array([(float(b[3]), float(b[4])) for b in battles]).reshape(-1, 2)
    total = lengths.sum(axis=1)
    diff = np.divide(lengths[:, 0] - lengths[:, 1], total, out=np.zeros(len(total)), where=total > 0)
    score = _SHARE_OF_FIRST[data.outcome]
    ones = np.ones(len(score))
    beta = _fit_length(data.k, data.first, data.second, diff, score, ones)
    ratings = _to_elo(beta[None, : data.k], data.names, anchor)[0]
    result = {
        "ratings": dict(zip(data.names, ratings.tolist(), strict=True)),
        "length_coefficient": float(beta[data.k]),
        "length_points": float(beta[data.k] * _ELO),
    }
    if rounds:
        rng = np.random.default_rng(seed)
        draws = rng.multinomial(len(score), ones / len(score), size=rounds).astype(float)
        fits = np.array([_fit_length(data.k, data.first, data.second, diff, score, w, beta) for w in draws])
        samples = _to_elo(fits[:, : data.k], data.names, anchor)
        low, high = np.percentile(samples, [2.5, 97.5], axis=0)
        result["lower"] = dict(zip(data.names, low.tolist(), strict=True))
        result["upper"] = dict(zip(data.names, high.tolist(), strict=True))
        result["length_interval"] = np.percentile(fits[:, data.k], [2.5, 97.5]).tolist()
    return result


# --- where to judge next ---------------------------------------------------------------------------


def _overlap(ratings: Ratings, a: str, b: str) -> float:
    """How far the two 95% intervals overlap, in rating points (negative: apart by that much)."""
    return min(ratings.upper[a], ratings.upper[b]) - max(ratings.lower[a], ratings.lower[b])


def separated(ratings: Ratings, target_width: float | None = None) -> bool:
    """Every neighbour in the order is apart at 95%, or (with a target) every interval is at most that wide.

    Never before each contestant has MIN_BATTLES: a bootstrap of a handful of unanimous battles has
    intervals of zero width, which would stop a run on luck.
    """
    if any(ratings.battles[n] < MIN_BATTLES for n in ratings.contestants):
        return False
    if target_width:
        return all(ratings.width(n) <= target_width for n in ratings.contestants)
    order = ratings.contestants
    return all(_overlap(ratings, a, b) < 0 for a, b in zip(order, order[1:], strict=False))


def _information(ratings: Ratings) -> tuple[np.ndarray, np.ndarray]:
    """The Fisher information of the log-strengths (K × K, in `contestants` order) and P(i beats j).

    Each battle between i and j adds p(1 - p) to the i-j entries: near-even battles teach the most.
    """
    names = ratings.contestants
    theta = np.array([ratings.rating[n] for n in names]) / _ELO
    p = 1.0 / (1.0 + np.exp(theta[None, :] - theta[:, None]))
    met = np.array([[ratings.met(a, b) if a != b else 0 for b in names] for a in names], dtype=float)
    weight = (met + PRIOR_TIES) * p * (1.0 - p) * (1.0 - np.eye(len(names)))
    return np.diag(weight.sum(axis=1)) - weight, p


def _plan(ratings: Ratings, caps: dict[tuple[str, str], int], n: int, target_width: float | None) -> list:
    """Greedy design: each call goes to the open pair whose battle shrinks the intervals that matter most.

    The intervals that matter are the facing halves of overlapping neighbours (or, with a target width,
    the intervals still too wide). A battle's effect on each contestant's variance is a rank-one
    update of the inverse information (Sherman-Morrison), and the bootstrap intervals are scaled by
    the predicted shrinkage, so the choice accounts for indirect evidence: a contestant at the end of
    the order narrows by meeting anyone, not only its neighbour. The cost raises each pair's
    (facing half-widths / gap) to the power _FOCUS, so the pair furthest from parting, which decides
    when the run may stop, gets most of the calls.
    """
    names = ratings.contestants
    k, column = len(names), {name: i for i, name in enumerate(names)}
    rating = np.array([ratings.rating[x] for x in names])
    below = rating - np.array([ratings.lower[x] for x in names])  # the half of each interval under the point
    above = np.array([ratings.upper[x] for x in names]) - rating
    information, p = _information(ratings)
    inverse = np.linalg.inv(information + 1.0 / k)  # 1/k: the information only sees differences
    # ratings are read relative to the anchor, or to the mean: u_x = e_x - reference, variance u' M u
    reference = np.zeros(k)
    if ratings.anchor in column:
        reference[column[ratings.anchor]] = 1.0
    else:
        reference[:] = 1.0 / k
    u = np.eye(k) - reference[:, None]
    variance = np.einsum("ix,ij,jx->x", u, inverse, u)
    if target_width:
        wide = [i for i, x in enumerate(names) if ratings.width(x) > target_width]
        if not wide:
            return []

        def cost(below, above):  # halves (K, P) → (P,): how far the too-wide intervals still are from the target
            return (((below + above)[wide] / target_width) ** _FOCUS).sum(axis=0)

    else:
        pairs = [(i, i + 1) for i in range(k - 1) if _overlap(ratings, names[i], names[i + 1]) >= 0]
        if not pairs:
            return []
        high, low = np.array(pairs).T
        facing = below[high] + above[low]
        gap = np.maximum(rating[high] - rating[low], facing / 10.0)  # a gap near zero cannot take every call

        def cost(below, above):  # halves (K, P) → (P,): how far the overlapping neighbours still are from parting
            return (((below[high] + above[low]) / gap[:, None]) ** _FOCUS).sum(axis=0)

    candidates = [pair for pair in caps if pair[0] in column and pair[1] in column]
    if not candidates:
        return []
    i = np.array([column[a] for a, _ in candidates])
    j = np.array([column[b] for _, b in candidates])
    step = np.zeros((k, len(candidates)))
    step[i, np.arange(len(candidates))], step[j, np.arange(len(candidates))] = 1.0, -1.0
    teach = p[i, j] * (1.0 - p[i, j])
    left = np.array([caps[pair] for pair in candidates])
    chosen: list[tuple[str, str]] = []
    for _ in range(n):
        moved = inverse @ step
        denominator = 1.0 + teach * (step * moved).sum(axis=0)
        new_variance = np.maximum(variance[:, None] - teach * (u.T @ moved) ** 2 / denominator, 0.0)
        shrink = np.sqrt(np.divide(new_variance, variance[:, None], out=np.ones_like(new_variance),
                                   where=variance[:, None] > 1e-12))  # fmt: skip
        score = cost(below[:, None] * shrink, above[:, None] * shrink)
        score[left <= 0] = np.inf
        best = int(np.argmin(score))
        if not score[best] < cost(below[:, None], above[:, None])[0] * (1 - 1e-9):
            break  # nothing open helps (or every open pair is used up)
        chosen.append(candidates[best])
        left[best] -= 1
        below, above, variance = below * shrink[:, best], above * shrink[:, best], new_variance[:, best]
        inverse -= teach[best] * np.outer(moved[:, best], moved[:, best]) / denominator[best]
    return chosen


def next_pairs(
    ratings: Ratings | None, remaining: dict[tuple[str, str], int], n: int, target_width: float | None = None
) -> list[tuple[str, str]]:
    """Which pairs the next n judge calls should go to (a pair may repeat, never beyond its remaining prompts).

    First every contestant gets MIN_BATTLES battles, fewest-met pairs first (also the answer before
    any battle, with `ratings` None). Then the calls go where they most shrink the intervals of
    neighbours in the order that still overlap (or, with `target_width`, the intervals still wider
    than that), which mostly means the closest neighbours, met directly. An empty list means no open
    pair can help: the order is separated, or the pairs that would separate it have no prompts left.
    """
    caps = {pair: left for pair, left in remaining.items() if left > 0 and pair[0] != pair[1]}
    if not caps or n <= 0:
        return []

    def battles(name: str) -> int:
        return ratings.battles.get(name, 0) if ratings else 0

    def met(pair) -> int:
        return ratings.met(*pair) if ratings else 0

    young = [pair for pair in caps if min(battles(pair[0]), battles(pair[1])) < MIN_BATTLES]
    if not young:
        return _plan(ratings, caps, n, target_width)
    chosen: list[tuple[str, str]] = []
    given = dict.fromkeys(young, 0)
    while len(chosen) < n:
        open_young = [pair for pair in young if given[pair] < caps[pair]]
        if not open_young:
            break
        pair = min(open_young, key=lambda p: (met(p) + given[p], battles(p[0]) + battles(p[1])))
        chosen.append(pair)
        given[pair] += 1
    return chosen


# --- reading battle files --------------------------------------------------------------------------


def read_battles_file(path: str | Path) -> list[Battle]:
    """Battles from a Chatbot Arena file: JSON Lines or a JSON array of {model_a, model_b, winner}.

    Every line must be a battle: a bad one stops the read with its line (or item) number, so
    nothing is dropped silently. Other fields on each object are ignored.
    """
    path = Path(path)
    if not path.is_file():
        raise UserFacingError(f"There is no file {str(path)!r}.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UserFacingError(f"{path.name} is not a text file (expected JSON Lines or a JSON array).") from None
    if not text.strip():
        raise UserFacingError(f"{path.name} is empty: there are no battles to rate.")
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserFacingError(f"{path.name}: not valid JSON (line {exc.lineno}: {exc.msg}).") from None
        rows, where = list(enumerate(items, start=1)), "item"
    else:
        rows, where = [], "line"
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append((number, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise UserFacingError(f"{path.name}, line {number}: not valid JSON ({exc.msg}).") from None
    if not rows:
        raise UserFacingError(f"{path.name} holds an empty list: there are no battles to rate.")
    battles = []
    for number, row in rows:
        at = f"{path.name}, {where} {number}"
        if not isinstance(row, dict):
            raise UserFacingError(f"{at}: a battle is an object with model_a, model_b and winner.")
        missing = [key for key in ("model_a", "model_b", "winner") if key not in row]
        if missing:
            raise UserFacingError(f"{at}: missing {', '.join(missing)}.")
        if not all(isinstance(row[key], str) and row[key] for key in ("model_a", "model_b")):
            raise UserFacingError(f"{at}: model_a and model_b must be model names.")
        if row["model_a"] == row["model_b"]:
            raise UserFacingError(f"{at}: {row['model_a']!r} battles itself.")
        if not isinstance(row["winner"], str) or row["winner"] not in ARENA:
            raise UserFacingError(f"{at}: winner {row['winner']!r} is not one of {', '.join(ARENA)}.")
        battles.append(from_arena(row))
    return battles
