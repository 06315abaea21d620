"""`python -m pipeline review`, run as a user runs it: the Review page's filters and actions from a shell."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipeline import jobs, personas
from pipeline.review import actions
from tests.conftest import REPO
from tests.seed import add_examples


def review(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "review", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def listed(*args: str) -> list[int]:
    out = review("list", "--json", "--limit", "0", *args)
    assert out.returncode == 0, out.stderr
    return sorted(row["id"] for row in json.loads(out.stdout)["examples"])


@pytest.fixture
def studio_examples():
    """collaborative: 5 pending (types and traits in rotation), 2 accepted gold rated 4, 1 failed;
    a second persona with 2 pending from one generation run."""
    personas.seed_samples()
    collab = personas.get_persona("collaborative").id
    pending = add_examples(collab, 5)
    gold = add_examples(collab, 2, status="accepted", start=5, gold_star=True, rating=4)
    failed = add_examples(collab, 1, status="failed", start=7, failure="the model gave up")
    other = personas.create_persona(
        {"name": "analyst", "system_prompt": "You are an analyst.", "traits": [{"name": "exact", "description": "x"}]}
    )
    run = jobs.submit("probe", {"rate": 1}, name="a generation run")
    theirs = add_examples(other.id, 2, start=8, job_id=run.id)
    return {"pending": pending, "gold": gold, "failed": failed, "theirs": theirs, "run": run.id}


def test_list_narrows_with_the_review_pages_filters(studio_examples):
    s = studio_examples
    assert listed() == sorted(s["pending"] + s["gold"] + s["failed"] + s["theirs"])
    assert listed("--persona", "collaborative", "--status", "accepted") == s["gold"]
    assert listed("--gold", "--min-rating", "4") == s["gold"]
    assert listed("--not-gold", "--persona", "analyst") == s["theirs"]
    assert listed("--run", str(s["run"])) == s["theirs"]
    assert listed("--status", "failed") == s["failed"]
    assert listed("--document-type", "email", "--persona", "collaborative") == [s["pending"][1], s["gold"][1]]
    assert listed("--trait", "curious") == [s["pending"][1], s["gold"][1]]  # traits rotate like the types
    assert listed("--search", "memo 3") == [s["pending"][3]]  # any case, in the title

    table = review("list", "--persona", "collaborative", "--status", "accepted")
    assert table.returncode == 0
    assert "2 examples match (persona_id=" in table.stdout and "statuses=['accepted']" in table.stdout
    assert all(str(i) in table.stdout for i in s["gold"]) and "Memo 5" in table.stdout
    none = review("list", "--search", "no such words")
    assert none.returncode == 0 and "No examples match" in none.stdout


def test_act_on_ids_and_refuse_unknown_ones_without_changing_anything(studio_examples):
    first, second = studio_examples["pending"][:2]
    out = review("accept", str(first), str(second))
    assert out.returncode == 0 and "Accepted: 2 examples." in out.stdout
    assert {actions.get(i).status for i in (first, second)} == {"accepted"}

    typo = review("star", str(first), "9999")
    assert typo.returncode == 1 and "No example 9999 in the studio; nothing was changed." in typo.stderr
    assert not actions.get(first).gold_star

    assert review("star", str(first)).returncode == 0 and actions.get(first).gold_star
    assert review("reject", str(first)).returncode == 0
    assert (actions.get(first).status, actions.get(first).gold_star) == ("rejected", False)  # never gold
    assert review("rate", str(second), "--rating", "5").returncode == 0 and actions.get(second).rating == 5
    assert review("rate", str(second), "--rating", "none").returncode == 0 and actions.get(second).rating is None
    bad = review("rate", str(second), "--rating", "7")
    assert bad.returncode == 1 and "A rating is 1 to 5" in bad.stderr


def test_all_matching_changes_what_the_filters_match_and_skips_failed_examples(studio_examples):
    s = studio_examples
    out = review("star", "--all-matching", "--persona", "collaborative", "--status", "pending", "--status", "failed")
    assert out.returncode == 0, out.stderr
    assert "Starred: 5 examples; 1 skipped (failed during generation" in out.stdout
    assert all(actions.get(i).gold_star for i in s["pending"]) and not actions.get(s["failed"][0]).gold_star
    assert not any(actions.get(i).gold_star for i in s["theirs"])  # another persona: untouched

    rated = review("rate", "--all-matching", "--persona", "analyst", "--rating", "3")
    assert rated.returncode == 0 and "Rated 3: 2 examples." in rated.stdout
    assert [actions.get(i).rating for i in s["theirs"]] == [3, 3]

    nothing = review("accept", "--all-matching", "--search", "no such words")
    assert nothing.returncode == 0 and "nothing to do" in nothing.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["accept"], "needs example ids, or --all-matching"),
        (["accept", "1", "--all-matching"], "not both"),
        (["accept", "1", "--persona", "collaborative"], "only with --all-matching"),
        (["rate", "1"], "needs --rating"),
        (["list", "--persona", "nobody"], "nobody"),
    ],
)
def test_a_muddled_command_is_explained(args, message):
    out = review(*args)
    assert out.returncode == 1 and message in out.stderr
