"""How many judge calls adaptive pair choice saves over round-robin, and how long the bootstrap takes.

1. Six simulated contestants with known strengths (true Elo gaps of 60 to 150 points) and a simulated
   judge that draws each winner from the true Bradley-Terry chance, with 10% ties (a third of them
   "both bad"). Judge calls go out in batches of `--batch`; after every batch the ratings are refitted
   with `--check-rounds` bootstrap rounds (200, as the evaluation job uses while it decides; the
   report uses 1,000) and the run stops once `ratings.separated` says every neighbour is apart at 95%.
   Round-robin asks every pair in turn; adaptive asks `ratings.next_pairs`. Both check at the same
   cadence, on the same seeds; the median over seeds is reported, with and without an anchor (the
   weakest contestant held at 1000, as the studio holds the base model).
   For scale, the best fixed share of calls per pair, chosen knowing the true strengths (a Fisher-
   information approximation), is printed beside it: no sampling rule should be expected to beat it much.
2. The time of `ratings.rate` with 1,000 bootstrap rounds for 10 contestants and 5,000 battles.

    .venv/bin/python bench/rating_efficiency.py [--seeds 15] [--batch 20] [--check-rounds 200]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.evaluation import ratings  # noqa: E402

TRUE = {"f": 1000, "e": 1150, "d": 1240, "c": 1310, "b": 1410, "a": 1470}  # gaps 150, 90, 70, 100, 60
TRUE_ORDER = sorted(TRUE, key=lambda name: -TRUE[name])
TIES = 0.1


def judge(rng: np.random.Generator, a: str, b: str) -> str:
    if rng.random() < TIES:
        return "tie" if rng.random() < 2 / 3 else "bothbad"
    return "a" if rng.random() < 1 / (1 + 10 ** ((TRUE[b] - TRUE[a]) / 400)) else "b"


def calls_to_separate(adaptive: bool, seed: int, args, anchor: str | None) -> tuple[int, bool | None]:
    """Judge calls until `separated`, and whether the order then matches the truth (None: budget ran out)."""
    rng = np.random.default_rng(seed)
    every = list(itertools.combinations(TRUE, 2))
    pairs = [every[i] for i in rng.permutation(len(every))]
    remaining = dict.fromkeys(pairs, args.max_calls)
    turn = itertools.cycle(pairs)
    battles: list[tuple[str, str, str]] = []
    current = None
    while len(battles) < args.max_calls:
        if adaptive:
            chosen = ratings.next_pairs(current, remaining, args.batch)
        else:
            chosen = [next(turn) for _ in range(args.batch)]
        for a, b in chosen:
            battles.append((a, b, judge(rng, a, b)))
            remaining[(a, b)] -= 1
        current = ratings.rate(battles, anchor=anchor, rounds=args.check_rounds, seed=seed)
        if ratings.separated(current):
            return len(battles), current.contestants == TRUE_ORDER
    return len(battles), None


def best_fixed_share(anchor: str | None, tries: int = 4000) -> float:
    """Calls needed by the best fixed share per pair over round-robin's, under the Fisher approximation.

    Each battle between i and j adds its expected information to the i-j entries; a contestant's
    interval half-width is 1.96 standard errors (relative to the anchor or the mean); the calls needed
    are those that part the slowest neighbour pair. A random local search finds the best share.
    """
    names, k = TRUE_ORDER, len(TRUE_ORDER)
    pairs = list(itertools.combinations(range(k), 2))
    elo = np.array([TRUE[n] for n in names], dtype=float)
    win = (1 - TIES) / (1 + 10 ** ((elo[None, :] - elo[:, None]) / 400))  # P(i beats j) outright
    mean = win + TIES / 2  # expected score of i against j: a tie is half
    variance = win + TIES / 4 - mean**2
    teach = np.array([(mean[i, j] * (1 - mean[i, j])) ** 2 / variance[i, j] for i, j in pairs])
    logit = np.log(mean / (1 - mean))
    rows = np.zeros((len(pairs), k))
    for row, (i, j) in enumerate(pairs):
        rows[row, i], rows[row, j] = 1.0, -1.0
    strength = np.linalg.lstsq(rows, np.array([logit[i, j] for i, j in pairs]), rcond=None)[0]
    gaps = strength[:-1] - strength[1:]
    reference = np.eye(k)[names.index(anchor)] if anchor else np.full(k, 1 / k)
    u = np.eye(k) - reference[:, None]

    def needed(share: np.ndarray) -> float:
        information = rows.T @ (rows * (share * teach)[:, None])
        sd = np.sqrt(np.einsum("ix,ij,jx->x", u, np.linalg.inv(information + 1 / k), u))
        return float(np.max((1.96 * (sd[:-1] + sd[1:]) / gaps) ** 2))

    even = np.full(len(pairs), 1 / len(pairs))
    best, best_calls = even, needed(even)
    rng = np.random.default_rng(0)
    for _ in range(tries):
        trial = best * np.exp(rng.normal(0, 0.3, len(pairs)))
        trial /= trial.sum()
        calls = needed(trial)
        if calls < best_calls:
            best, best_calls = trial, calls
    return best_calls / needed(even)


def sampling(args) -> None:
    gaps = [TRUE[a] - TRUE[b] for a, b in itertools.pairwise(TRUE_ORDER)]
    print(f"Contestants (true Elo): {TRUE}; neighbour gaps {gaps}; {TIES:.0%} ties.")
    print(
        f"Batches of {args.batch} calls, `separated` checked after each with {args.check_rounds} bootstrap rounds; "
        f"{args.seeds} seeds; at most {args.max_calls} calls per run."
    )
    for anchor in (None, TRUE_ORDER[-1]):
        started = time.perf_counter()
        found = {}
        for name, adaptive in (("round-robin", False), ("adaptive", True)):
            found[name] = [calls_to_separate(adaptive, seed, args, anchor) for seed in range(args.seeds)]
        medians = {name: statistics.median(calls for calls, _ in runs) for name, runs in found.items()}
        print(f"\n{'anchored at ' + anchor + ' = 1000' if anchor else 'mean at 1000 (no anchor)'}:")
        for name, runs in found.items():
            calls = sorted(c for c, _ in runs)
            right = sum(ok is True for _, ok in runs)
            unfinished = sum(ok is None for _, ok in runs)
            print(
                f"  {name:<12} median {medians[name]:>6.0f} calls (range {calls[0]}–{calls[-1]}); "
                f"final order = true order in {right}/{len(runs)} runs"
                + (f"; {unfinished} not separated within {args.max_calls}" if unfinished else "")
            )
        ratio = medians["adaptive"] / medians["round-robin"]
        print(f"  adaptive / round-robin = {ratio:.2f} (target ≤ 0.6)")
        print(f"  best fixed share per pair, knowing the truth (Fisher approximation): {best_fixed_share(anchor):.2f}")
        print(f"  ({time.perf_counter() - started:.0f} s)")


def bootstrap_time(repeats: int = 3) -> None:
    rng = np.random.default_rng(0)
    names = [f"model-{i}" for i in range(10)]
    strength = dict(zip(names, rng.normal(1000, 100, len(names)), strict=True))
    battles = []
    for _ in range(5000):
        a, b = rng.choice(names, 2, replace=False)
        outcome = rng.random()
        p = 1 / (1 + 10 ** ((strength[b] - strength[a]) / 400))
        battles.append((str(a), str(b), "tie" if outcome < TIES else "a" if rng.random() < p else "b"))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        ratings.rate(battles, rounds=1000, seed=0)
        times.append(time.perf_counter() - started)
    print(
        f"\nrate(): 10 contestants × 5,000 battles × 1,000 bootstrap rounds: median {statistics.median(times):.3f} s "
        f"over {repeats} runs (target < 5 s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=15)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--check-rounds", type=int, default=200)
    parser.add_argument("--max-calls", type=int, default=30_000)
    args = parser.parse_args()
    started = time.perf_counter()
    sampling(args)
    bootstrap_time()
    print(f"\n(total {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
