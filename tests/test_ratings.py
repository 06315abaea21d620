"""Bradley-Terry ratings (pipeline/evaluation/ratings.py) and `python -m pipeline ratings`, on known answers."""

from __future__ import annotations

import argparse
import json
import math
import time
from itertools import combinations

import numpy as np
import pytest

from pipeline.errors import UserFacingError
from pipeline.evaluation import ratings, ratings_cli

GAP_75 = 400 * math.log10(3)  # 190.8: the rating gap at which the better one wins 3 battles in 4


def record(a: str, b: str, wins: int, losses: int, ties: int = 0, bothbad: int = 0) -> list[tuple[str, str, str]]:
    """a's record against b as battles, alternating which side a is shown on."""
    outcomes = ["a"] * wins + ["b"] * losses + ["tie"] * ties + ["bothbad"] * bothbad
    flip = {"a": "b", "b": "a"}
    return [(a, b, w) if i % 2 == 0 else (b, a, flip.get(w, w)) for i, w in enumerate(outcomes)]


def simulate(strengths: dict[str, float], count: int, seed: int = 0, tie_rate: float = 0.1) -> list:
    """Battles between random pairs, winners drawn from the true Bradley-Terry chances on the Elo scale."""
    rng = np.random.default_rng(seed)
    names = list(strengths)
    battles = []
    for _ in range(count):
        i, j = rng.choice(len(names), size=2, replace=False)
        a, b = names[i], names[j]
        if rng.random() < tie_rate:
            battles.append((a, b, "tie"))
            continue
        p = 1.0 / (1.0 + 10 ** ((strengths[b] - strengths[a]) / 400))
        battles.append((a, b, "a" if rng.random() < p else "b"))
    return battles


# --- ratings ---------------------------------------------------------------------------------------


def test_a_contestant_that_always_wins_ranks_first_with_a_finite_rating():
    battles = record("champ", "b", 10, 0) + record("champ", "c", 10, 0) + record("b", "c", 5, 5)
    result = ratings.rate(battles, rounds=200)
    assert result.contestants[0] == "champ"
    assert result.rank["champ"] == 1
    assert all(math.isfinite(x) for x in (result.rating["champ"], result.lower["champ"], result.upper["champ"]))
    assert result.rating["champ"] > result.rating["b"] + 300
    assert (result.wins["champ"], result.losses["champ"], result.ties["champ"]) == (20, 0, 0)


def test_symmetric_records_and_ties_give_equal_ratings():
    cycle = record("x", "y", 7, 3) + record("y", "z", 7, 3) + record("z", "x", 7, 3)
    even = ratings.fit(cycle)
    assert even == pytest.approx({"x": 1000.0, "y": 1000.0, "z": 1000.0}, abs=1e-6)

    tied = ratings.rate(record("p", "q", 4, 4, ties=6, bothbad=3), rounds=100)
    assert tied.rating["p"] == pytest.approx(tied.rating["q"], abs=1e-6)
    assert tied.ties["p"] == tied.ties["q"] == 9  # "both bad" counts as a tie
    assert tied.rank == {"p": 1, "q": 1}


def test_the_anchor_sits_at_exactly_1000():
    battles = record("base", "tuned", 30, 50) + record("tuned", "other", 25, 25) + record("base", "other", 20, 40)
    result = ratings.rate(battles, anchor="base", rounds=100)
    assert result.rating["base"] == 1000.0
    assert result.anchor == "base"
    assert ratings.fit(battles, anchor="tuned")["tuned"] == 1000.0
    unanchored = ratings.rate(battles, rounds=0)
    assert sum(unanchored.rating.values()) / 3 == pytest.approx(1000.0)  # no anchor: the mean is 1000
    # only differences matter: anchoring moves everyone by the same amount
    shift = result.rating["tuned"] - unanchored.rating["tuned"]
    assert result.rating["other"] - unanchored.rating["other"] == pytest.approx(shift)


def test_intervals_shrink_with_more_battles():
    few = ratings.rate(record("a", "b", 15, 5), rounds=500)
    many = ratings.rate(record("a", "b", 150, 50), rounds=500)
    for name in ("a", "b"):
        assert few.lower[name] <= few.rating[name] <= few.upper[name]
        assert many.width(name) < 0.5 * few.width(name)  # ten times the battles: about a third of the width


def test_a_75_percent_win_rate_is_a_191_point_gap():
    result = ratings.rate(record("strong", "weak", 300, 100), rounds=500)
    # the tiny virtual ties that keep an unbeaten contestant finite move this by well under a point
    assert result.rating["strong"] - result.rating["weak"] == pytest.approx(GAP_75, abs=0.5)
    assert result.rating["strong"] + result.rating["weak"] == pytest.approx(2000.0)
    ties_as_halves = ratings.fit(record("strong", "weak", 250, 50, ties=100))  # 300 of 400 points again
    assert ties_as_halves["strong"] - ties_as_halves["weak"] == pytest.approx(GAP_75, abs=0.5)


def test_win_probability_matches_the_gap_and_its_interval_contains_it():
    result = ratings.rate(record("strong", "weak", 300, 100), rounds=500)
    p, low, high = result.win_probability("strong", "weak")
    assert p == pytest.approx(0.75, abs=0.005)
    assert 0.65 < low < p < high < 0.85
    back, back_low, back_high = result.win_probability("weak", "strong")
    assert back == pytest.approx(1 - p)
    assert back_low == pytest.approx(1 - high) and back_high == pytest.approx(1 - low)


def test_ranks_do_not_separate_overlapping_contestants():
    battles = record("a", "b", 12, 8) + record("a", "c", 40, 0) + record("b", "c", 40, 0)
    result = ratings.rate(battles, rounds=500)
    assert result.contestants == ["a", "b", "c"]
    assert result.lower["a"] < result.upper["b"]  # a 12-8 record is not sure evidence
    assert result.rank == {"a": 1, "b": 1, "c": 3}
    assert [row["rank"] for row in result.table()] == [1, 1, 3]
    assert not ratings.separated(result)


def test_the_seeded_bootstrap_is_deterministic():
    battles = simulate({"a": 0, "b": 50, "c": 120}, 300, seed=4)
    first, again = ratings.rate(battles, seed=7, rounds=300), ratings.rate(battles, seed=7, rounds=300)
    assert first.to_dict() == again.to_dict()
    assert np.array_equal(first.samples, again.samples)
    other = ratings.rate(battles, seed=8, rounds=300)
    assert other.rating == first.rating  # the point ratings do not depend on the seed
    assert other.lower != first.lower


def test_ten_contestants_5000_battles_1000_rounds_finishes():
    strengths = {f"model-{i}": 50.0 * i for i in range(10)}
    battles = simulate(strengths, 5000, seed=1)
    started = time.perf_counter()
    result = ratings.rate(battles, rounds=1000)
    assert time.perf_counter() - started < 30  # a generous bound; bench/rating_efficiency.py measures speed
    assert len(result.samples) == 1000
    assert sum(result.battles.values()) == 2 * 5000
    assert result.contestants[0] == "model-9" and result.contestants[-1] == "model-0"


# --- Chatbot Arena files ---------------------------------------------------------------------------

ARENA_ROWS = [
    {"model_a": "gpt", "model_b": "llama", "winner": "model_a", "turn": 1},
    {"model_a": "gpt", "model_b": "llama", "winner": "model_b"},
    {"model_a": "llama", "model_b": "gpt", "winner": "tie"},
    {"model_a": "llama", "model_b": "gpt", "winner": "tie (bothbad)"},
]
ARENA_BATTLES = [("gpt", "llama", "a"), ("gpt", "llama", "b"), ("llama", "gpt", "tie"), ("llama", "gpt", "bothbad")]


def test_chatbot_arena_rows_convert_to_battles():
    assert [ratings.from_arena(row) for row in ARENA_ROWS] == ARENA_BATTLES
    result = ratings.rate(ARENA_BATTLES, rounds=50)
    assert result.ties == {"gpt": 2, "llama": 2}


def test_read_battles_file_reads_json_lines_and_a_json_array(tmp_path):
    lines = tmp_path / "battles.jsonl"
    lines.write_text("\n".join(json.dumps(row) for row in ARENA_ROWS[:2]) + "\n\n" + json.dumps(ARENA_ROWS[2]) + "\n")
    lines.write_text(lines.read_text() + json.dumps(ARENA_ROWS[3]) + "\n")
    array = tmp_path / "battles.json"
    array.write_text(json.dumps(ARENA_ROWS, indent=2))
    assert ratings.read_battles_file(lines) == ARENA_BATTLES
    assert ratings.read_battles_file(array) == ARENA_BATTLES


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"model_a": "x", "model_b": "y", "winner": "model_a"}\n\n{"model_a": "x", oops}\n', "line 3"),
        ('{"model_a": "x", "model_b": "y", "winner": "model_a"}\n{"model_a": "x", "model_b": "y"}\n', "line 2"),
        ('{"model_a": "x", "model_b": "y", "winner": "model_a"}\n{"model_a": "x", "model_b": "y", "winner": "z"}\n',
         "line 2"),
        ('[\n  {"model_a": "x", "model_b": "y", "winner": "model_a"},\n  {"model_a": "x",, }\n]\n', "line 3"),
        ("", "empty"),
        ("  \n\n", "empty"),
    ],
    ids=["bad-json", "missing-winner", "unknown-winner", "bad-json-array", "empty", "blank"],
)  # fmt: skip
def test_read_battles_file_says_which_line_is_wrong(tmp_path, text, expected):
    path = tmp_path / "battles.jsonl"
    path.write_text(text)
    with pytest.raises(UserFacingError, match=expected):
        ratings.read_battles_file(path)


def test_read_battles_file_names_the_missing_field(tmp_path):
    path = tmp_path / "battles.jsonl"
    path.write_text('{"model_a": "x", "model_b": "y", "winner": "model_a"}\n{"model_a": "x", "winner": "tie"}\n')
    with pytest.raises(UserFacingError, match=r"line 2.*model_b"):
        ratings.read_battles_file(path)
    with pytest.raises(UserFacingError, match="no file"):
        ratings.read_battles_file(tmp_path / "absent.jsonl")


# --- length control --------------------------------------------------------------------------------


@pytest.mark.parametrize("loyalty", [1.0, 0.9], ids=["always-longer", "longer-90%"])
def test_length_control_removes_a_judges_taste_for_long_replies(loyalty):
    """Three equally good contestants that write long, medium and short replies, and a judge that picks the longer."""
    rng = np.random.default_rng(0)
    lengths = {"long": (300, 700), "medium": (200, 600), "short": (100, 500)}
    battles = []
    for a, b in (rng.permutation(list(lengths))[:2] for _ in range(2000)):
        la, lb = int(rng.integers(*lengths[a])), int(rng.integers(*lengths[b]))
        longer = "a" if la > lb else "b" if lb > la else "tie"
        winner = longer if longer == "tie" or rng.random() < loyalty else {"a": "b", "b": "a"}[longer]
        battles.append((str(a), str(b), winner, la, lb))
    plain = ratings.fit(battles)
    gap = plain["long"] - plain["short"]
    assert gap > 150  # without control, the longer writer looks much better
    controlled = ratings.rate_length_controlled(battles)
    assert controlled["length_coefficient"] > 0
    fair = controlled["ratings"]
    assert abs(fair["long"] - fair["short"]) < 0.35 * gap
    assert abs(fair["medium"] - fair["short"]) < 0.35 * gap


def test_length_control_with_equal_lengths_is_plain_bradley_terry():
    battles = simulate({"a": 0, "b": 80, "c": 200}, 600, seed=3)
    plain = ratings.fit(battles, anchor="a")
    controlled = ratings.rate_length_controlled([(*b, 50, 50) for b in battles], anchor="a", rounds=40)
    assert controlled["ratings"] == pytest.approx(plain, abs=0.01)
    assert controlled["length_coefficient"] == 0.0
    for name in "abc":
        assert controlled["lower"][name] <= controlled["ratings"][name] + 1e-6 <= controlled["upper"][name] + 2e-6
    assert controlled["lower"]["a"] == controlled["upper"]["a"] == 1000.0
    with pytest.raises(UserFacingError, match="length_a"):
        ratings.rate_length_controlled(battles)  # no lengths given


# --- where to judge next ---------------------------------------------------------------------------


def close_pair_battles() -> list:
    """top is far ahead, bottom far behind, and mid1 / mid2 are a coin flip: only the middle overlaps."""
    return (
        record("top", "mid1", 180, 20) + record("top", "mid2", 180, 20) + record("top", "bottom", 200, 0)
        + record("mid1", "mid2", 20, 20) + record("mid1", "bottom", 180, 20) + record("mid2", "bottom", 180, 20)
    )  # fmt: skip


def test_next_pairs_prefers_overlapping_neighbours():
    result = ratings.rate(close_pair_battles(), rounds=300)
    assert result.contestants[0] == "top" and result.contestants[-1] == "bottom"
    assert ratings._overlap(result, "mid1", "mid2") > 0
    remaining = dict.fromkeys(combinations(["top", "mid1", "mid2", "bottom"], 2), 50)
    chosen = ratings.next_pairs(result, remaining, 8)
    assert chosen and len(chosen) <= 8
    assert chosen[0] == ("mid1", "mid2")
    assert chosen.count(("mid1", "mid2")) >= len(chosen) / 2
    assert ("top", "bottom") not in chosen  # far apart: nothing to learn


def test_next_pairs_never_returns_a_pair_with_no_prompts_left():
    result = ratings.rate(close_pair_battles(), rounds=300)
    remaining = dict.fromkeys(combinations(["top", "mid1", "mid2", "bottom"], 2), 2)
    remaining[("mid1", "mid2")] = 0
    remaining[("top", "mid1")] = -1
    for n in (1, 4, 20):
        chosen = ratings.next_pairs(result, remaining, n)
        assert len(chosen) <= n
        assert all(remaining[pair] > 0 for pair in chosen)
        assert all(chosen.count(pair) <= remaining[pair] for pair in set(chosen))
    assert ratings.next_pairs(result, dict.fromkeys(remaining, 0), 5) == []


def test_next_pairs_asks_about_a_new_contestant_first_and_stops_once_separated():
    result = ratings.rate(close_pair_battles(), rounds=300)
    remaining = dict.fromkeys(combinations(["top", "mid1", "mid2", "bottom", "newcomer"], 2), 10)
    chosen = ratings.next_pairs(result, remaining, 3)
    assert chosen and all("newcomer" in pair for pair in chosen)
    first = ratings.next_pairs(None, remaining, 4)  # before any battle: any open pairs
    assert len(first) == 4 and all(remaining[pair] > 0 for pair in first)

    apart = record("a", "b", 90, 10) + record("b", "c", 90, 10) + record("a", "c", 100, 0)
    done = ratings.rate(apart, rounds=300)
    assert ratings.separated(done)
    assert ratings.next_pairs(done, dict.fromkeys(combinations("abc", 2), 10), 5) == []


def test_groups_that_never_met_get_finite_level_ratings():
    battles = record("a", "b", 30, 10) + record("c", "d", 30, 10)  # two leagues, no games between them
    result = ratings.rate(battles, rounds=200)
    assert all(math.isfinite(result.lower[n]) and math.isfinite(result.upper[n]) for n in "abcd")
    assert result.rating["a"] == pytest.approx(result.rating["c"], abs=1e-6)
    assert result.rating["a"] - result.rating["b"] == pytest.approx(GAP_75, abs=1)


def test_bad_battles_are_refused_with_a_reason():
    with pytest.raises(UserFacingError, match="no battles"):
        ratings.rate([])
    with pytest.raises(UserFacingError, match="'draw'"):
        ratings.rate([("x", "y", "a"), ("x", "y", "draw")])
    with pytest.raises(UserFacingError, match="itself"):
        ratings.rate([("x", "y", "a"), ("x", "x", "a")])


def test_bootstrap_and_the_result_as_json():
    battles = simulate({"a": 0, "b": 100, "c": 200}, 300, seed=2)
    names, samples = ratings.bootstrap(battles, anchor="a", rounds=50, seed=1)
    assert names == ["a", "b", "c"] and samples.shape == (50, 3)
    assert np.all(samples[:, 0] == 1000.0)  # the anchor is held in every round
    result = ratings.rate(battles, anchor="a", rounds=50, seed=1)
    out = json.loads(json.dumps(result.to_dict()))
    assert out["order"] == result.contestants == ["c", "b", "a"]
    assert out["bootstrap_rounds"] == 50 and out["ratings"]["a"] == 1000.0
    assert all(low <= out["ratings"][n] + 1e-6 and out["ratings"][n] <= high + 1e-6
               for n, (low, high) in out["intervals"].items())  # fmt: skip
    point = ratings.rate(battles, rounds=0)
    assert point.samples is None and point.lower == point.rating == point.upper


def test_next_pairs_spreads_the_first_calls_and_can_repeat_a_pair_within_its_prompts():
    pairs = list(combinations("abcd", 2))
    first = ratings.next_pairs(None, dict.fromkeys(pairs, 5), 6)
    assert sorted(first) == sorted(pairs)  # before any battle: every pair once before any twice

    one_open = dict.fromkeys(combinations(["top", "mid1", "mid2", "bottom"], 2), 0)
    one_open[("mid1", "mid2")] = 3
    result = ratings.rate(close_pair_battles(), rounds=300)
    assert ratings.next_pairs(result, one_open, 10) == [("mid1", "mid2")] * 3


def test_next_pairs_with_a_target_width_goes_to_the_widest_interval():
    battles = record("a", "b", 100, 100) + record("a", "c", 100, 100) + record("b", "c", 6, 6)
    result = ratings.rate(battles, anchor="a", rounds=300)
    assert result.width("c") > result.width("b") > 0
    remaining = dict.fromkeys(combinations("abc", 2), 20)
    chosen = ratings.next_pairs(result, remaining, 6, target_width=1.0)
    assert chosen and all("c" in pair for pair in chosen)
    assert not ratings.separated(result, target_width=result.width("c") - 1)
    assert ratings.separated(result, target_width=result.width("c") + 1)
    assert ratings.next_pairs(result, remaining, 6, target_width=result.width("c") + 1) == []


def test_adaptive_judging_finds_the_true_order():
    """The loop the evaluation job runs: judge where next_pairs says until the order is separated."""
    truth = {"w": 1000, "x": 1120, "y": 1260, "z": 1400}
    rng = np.random.default_rng(5)
    remaining = dict.fromkeys(combinations(truth, 2), 400)
    battles, current = [], None
    while not (current and ratings.separated(current)):
        chosen = ratings.next_pairs(current, remaining, 10)
        assert chosen, "next_pairs gave up before the order was separated"
        for a, b in chosen:
            p = 1 / (1 + 10 ** ((truth[b] - truth[a]) / 400))
            battles.append((a, b, "a" if rng.random() < p else "b"))
            remaining[(a, b)] -= 1
        current = ratings.rate(battles, rounds=200, seed=0)
    assert current.contestants == ["z", "y", "x", "w"]
    assert len(battles) < 1000
    assert current.rank == {"z": 1, "y": 2, "x": 3, "w": 4}


# --- the command line ------------------------------------------------------------------------------


def cli(*argv: str) -> int:
    """`python -m pipeline ratings ...` through the subcommand's own parser, in this process."""
    parser = argparse.ArgumentParser(prog="pipeline")
    ratings_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def arena_file(path, battles) -> str:
    winner = {"a": "model_a", "b": "model_b", "tie": "tie", "bothbad": "tie (bothbad)"}
    path.write_text(
        "".join(json.dumps({"model_a": a, "model_b": b, "winner": winner[w]}) + "\n" for a, b, w in battles)
    )
    return str(path)


CLI_BATTLES = (
    record("gpt", "llama", 30, 10, ties=4) + record("llama", "mistral", 20, 20) + record("gpt", "mistral", 5, 1)
)


def test_cli_prints_a_table(tmp_path, capsys):
    assert cli("ratings", arena_file(tmp_path / "battles.jsonl", CLI_BATTLES), "--rounds", "200") == 0
    lines = capsys.readouterr().out.splitlines()
    assert "rank" in lines[0] and "contestant" in lines[0] and "95% interval" in lines[0] and "W-L-T" in lines[0]
    assert [line.split()[1] for line in lines[1:4]] == ["gpt", "llama", "mistral"]
    assert lines[1].split()[0] == "1" and "35-11-4" in lines[1]  # gpt: wins-losses-ties
    assert "90 battles" in lines[-1] and "200 bootstrap rounds" in lines[-1]


def test_cli_prints_json(tmp_path, capsys):
    path = arena_file(tmp_path / "battles.jsonl", CLI_BATTLES)
    assert cli("ratings", path, "--json", "--anchor", "llama", "--rounds", "200", "--seed", "3") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ratings"]["llama"] == 1000.0 and out["anchor"] == "llama"
    assert set(out["intervals"]) == set(out["ranks"]) == {"gpt", "llama", "mistral"}
    assert out["battles"]["gpt"] == 50 and out["total_battles"] == len(CLI_BATTLES)
    assert out["parameters"] == {"file": path, "anchor": "llama", "rounds": 200, "seed": 3}
    expected = ratings.rate(CLI_BATTLES, anchor="llama", rounds=200, seed=3)
    assert out["ratings"]["gpt"] == pytest.approx(expected.rating["gpt"], abs=0.01)
    assert out["intervals"]["gpt"] == pytest.approx([expected.lower["gpt"], expected.upper["gpt"]], abs=0.01)


def test_cli_errors_are_user_facing(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"model_a": "x", "model_b": "y", "winner": "model_a"}\n{"model_a": "x", "model_b": "y", "winner": ')
    with pytest.raises(UserFacingError, match=r"bad\.jsonl, line 2"):
        cli("ratings", str(bad), "--json")
    good = arena_file(tmp_path / "battles.jsonl", [("x", "y", "a")])
    with pytest.raises(UserFacingError, match="'z' is not among the models in the file: x, y"):
        cli("ratings", good, "--anchor", "z")
    with pytest.raises(UserFacingError, match="negative"):
        cli("ratings", good, "--rounds", "-1")
