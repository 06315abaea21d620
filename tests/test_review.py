"""Reviewing: filters and paging in SQL, actions on one or many examples, statistics."""

from __future__ import annotations

import pytest

from pipeline import personas
from pipeline.errors import UserFacingError
from pipeline.review import actions, filters, stats
from pipeline.review.filters import ExampleFilter
from tests.seed import add_examples


@pytest.fixture
def persona():
    personas.seed_samples()
    return personas.get_persona("collaborative")


def test_each_filter_narrows_the_examples(persona):
    pending = add_examples(persona.id, 20)
    accepted = add_examples(persona.id, 10, status="accepted", start=100)
    add_examples(persona.id, 3, status="failed", start=200, failure="document stage: timed out")
    actions.bulk(accepted[:4], "star")
    actions.set_rating(accepted[0], 5)
    actions.set_rating(accepted[1], 3)
    actions.set_notes(pending[0], "needle in the notes")
    base = {"persona_id": persona.id}
    assert filters.count(ExampleFilter(**base)) == 33
    assert filters.count(ExampleFilter(**base, statuses=["accepted"])) == 10
    assert filters.count(ExampleFilter(**base, gold_star=True)) == 4
    assert filters.count(ExampleFilter(**base, min_rating=4)) == 1
    assert filters.count(ExampleFilter(**base, document_type="memo")) == 7  # every fifth of 33, from 0
    assert filters.count(ExampleFilter(**base, trait="curious")) == 7
    assert filters.count(ExampleFilter(**base, search="needle")) == 1
    assert filters.count(ExampleFilter(**base, search="NEEDLE in The")) == 1  # any case, on every backend
    assert filters.count(ExampleFilter(**base, search="100%")) == 0  # % is a character, not a wildcard
    assert filters.count(ExampleFilter(persona_id=persona.id + 1)) == 0


def test_a_trait_filter_matches_whole_trait_names_in_any_script(persona):
    [accented] = add_examples(persona.id, 1, traits_stressed=["café-ready", "warm"])
    [longer] = add_examples(persona.id, 1, start=1, traits_stressed=["warmest"])
    base = {"persona_id": persona.id}
    assert filters.ids(ExampleFilter(**base, trait="café-ready")) == [accented]  # stored as caf\u00e9 in JSON
    assert filters.ids(ExampleFilter(**base, trait="warm")) == [accented]
    assert filters.ids(ExampleFilter(**base, trait="warmest")) == [longer]


def test_pages_are_newest_first_and_carry_no_long_text(persona):
    ids = add_examples(persona.id, 120)
    flt = ExampleFilter(persona_id=persona.id)
    first, third = filters.page(flt, 1, 50), filters.page(flt, 3, 50)
    assert [r["id"] for r in first] == sorted(ids, reverse=True)[:50]
    assert len(third) == 20 and third[-1]["id"] == ids[0]
    assert "document" not in first[0] and first[0]["persona"] == "collaborative"
    assert filters.ids(flt) == sorted(ids, reverse=True)


def test_bulk_actions_change_the_selection_and_skip_failed_examples(persona):
    good = add_examples(persona.id, 3)
    [failed] = add_examples(persona.id, 1, status="failed", start=50, failure="response stage: 500")
    assert actions.bulk(good + [failed], "accept", "ada") == {"changed": 3, "skipped": 1}
    assert actions.bulk(good, "star", "bo") == {"changed": 3, "skipped": 0}
    # the last reviewer of each is recorded, and when; the failed one was not touched
    assert {actions.get(i).reviewed_by for i in good} == {"bo"} and all(actions.get(i).reviewed_at for i in good)
    assert actions.get(failed).reviewed_by == ""
    assert actions.rate_many(good[2:], 4, "cy") == {"changed": 1, "skipped": 0}
    assert actions.get(good[2]).reviewed_by == "cy"
    actions.set_notes(good[2], "a note is not a review")
    assert actions.get(good[2]).reviewed_by == "cy"
    actions.bulk(good[:1], "reject")
    rejected = actions.get(good[0])
    assert rejected.status == "rejected" and not rejected.gold_star  # a rejected example is never gold
    assert actions.get(failed).status == "failed"
    with pytest.raises(UserFacingError, match="cannot be starred"):
        actions.set_gold_star(failed, True)
    with pytest.raises(UserFacingError, match="1 to 5"):
        actions.set_rating(good[1], 6)
    with pytest.raises(UserFacingError, match="does not exist"):
        actions.get(99_999)


def test_statistics_count_statuses_lengths_coverage_and_flags(persona):
    add_examples(persona.id, 25)
    [flagged] = add_examples(persona.id, 1, start=300, flags=["near-duplicate response of example 3 (0.97)"])
    flt = ExampleFilter(persona_id=persona.id)
    assert stats.status_counts(flt) == {"pending": 26}
    assert len(stats.lengths(flt)) == 26
    grid = stats.coverage(flt)
    assert grid.values.sum() == 26 and set(grid.columns) == {"memo", "email", "report", "proposal", "analysis"}
    attention = stats.needs_attention(flt)
    assert list(attention["id"]) == [flagged] and "near-duplicate" in attention["what"][0]


def test_a_nul_character_or_an_oversized_edit_is_refused_on_every_database_and_nothing_changes(persona):
    [example] = add_examples(persona.id, 1)
    before = actions.get(example)
    with pytest.raises(UserFacingError, match=r"The edited response contains a NUL character \(line 2\)"):
        actions.edit_response(example, "A better reply.\nWith a \x00 inside.", editor="ada")
    with pytest.raises(UserFacingError, match="The edited response is 100,001 characters; the limit is 100,000"):
        actions.edit_response(example, "x" * 100_001, editor="ada")
    with pytest.raises(UserFacingError, match="The note contains a NUL character"):
        actions.set_notes(example, "check \x00 this")
    with pytest.raises(UserFacingError, match="The note is 5,001 characters; the limit is 5,000"):
        actions.set_notes(example, "n" * 5_001)
    after = actions.get(example)
    assert (after.response, after.notes, after.original_response) == (before.response, before.notes, None)
    assert actions.edits(example) == []
    # the longest allowed text is stored whole
    assert actions.set_notes(example, "n" * 5_000).notes == "n" * 5_000
    assert actions.edit_response(example, "y" * 100_000, editor="ada").response == "y" * 100_000


def test_the_quality_gate_filter_reads_the_reasons_on_every_backend(persona):
    add_examples(persona.id, 3)
    add_examples(persona.id, 2, start=10, quality_issues=["shouting: 90% of letters are capitals"])
    add_examples(
        persona.id,
        1,
        start=20,
        quality_issues=["repetition: 80% of 3-word phrases repeat an earlier one", "shouting: 70% of letters"],
    )
    base = {"persona_id": persona.id}
    assert filters.count(ExampleFilter(**base, quality="flagged")) == 3
    assert filters.count(ExampleFilter(**base, quality="passed")) == 3
    assert filters.count(ExampleFilter(**base, quality="shouting")) == 3
    assert filters.count(ExampleFilter(**base, quality="repetition")) == 1
    assert filters.count(ExampleFilter(**base, quality="non_words")) == 0
    assert len(stats.needs_attention(ExampleFilter(**base))) == 3
    with pytest.raises(UserFacingError, match="Unknown quality gate filter"):
        filters.count(ExampleFilter(**base, quality="loud"))
