"""Datasets: reading any file, OpenAI-style checks, formats, splits, snapshots, import, pairs, deletion."""

from __future__ import annotations

import json
import stat
import time
import tracemalloc

import pytest
from sqlmodel import select

from pipeline import personas
from pipeline.datasets import build, checks, formats, importer, preferences, purge, reader, targets
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.models import Dataset, Example
from pipeline.review import actions
from pipeline.review.filters import ExampleFilter
from tests.conftest import REPO
from tests.seed import add_examples

CORPUS = REPO / "tests" / "data" / "datasets"


@pytest.fixture
def persona():
    personas.seed_samples()
    return personas.get_persona("collaborative")


def check(name: str, target=targets.DEFAULT) -> checks.Report:
    return checks.check_file((CORPUS / name).read_bytes(), name, target).report


def errors(report: checks.Report) -> list[tuple]:
    return [(p.line, p.field, p.kind) for p in report.errors]


# --- the corpus: every kind of bad input, each reported with its line, field and reason ----------


def test_a_file_with_every_kind_of_bad_line_reports_each_precisely_and_keeps_the_good_ones():
    report = check("bad_mixed.jsonl")
    assert errors(report) == [
        (3, "", "invalid_json"),
        (4, "", "not_an_object"),
        (5, "messages[0].content", "content_null"),
        (6, "messages[1].role", "unknown_role"),
        (7, "messages[0].mood", "unknown_key"),
        (8, "messages", "no_assistant_message"),
        (9, "messages[1].content", "empty_content"),
        (10, "messages", "messages_not_a_list"),
        (11, "messages[0].role", "missing_role"),
        (12, "", "unknown_format"),
    ]
    assert (report.valid, report.invalid, report.blank_lines) == (2, 10, [2, 13])
    assert "wizard" in report.errors[3].message
    assert not report.ok


@pytest.mark.parametrize(
    ("name", "valid", "expected"),
    [
        ("good_openai.jsonl", 12, []),
        ("good_sharegpt.json", 3, []),
        ("good_alpaca.csv", 2, []),
        ("bom_utf8.jsonl", 1, []),
        ("utf16.jsonl", 1, []),
        ("latin1.jsonl", 1, [(2, "", "encoding")]),
        ("short_row.csv", 2, [(3, "completion", "missing_columns")]),
        ("array_broken.json", 1, [(4, "", "invalid_json")]),
        (
            "nul_and_surrogates.jsonl",  # JSON escapes for what no stored text can hold: \u0000, a lone \ud800
            2,
            [
                (2, "messages[1].content", "nul_character"),
                (3, "output", "nul_character"),
                (4, "messages[0].content", "unpaired_surrogate"),
            ],
        ),
        ("missing_columns.csv", 0, [(None, "", "unreadable_file")]),
        ("binary.bin", 0, [(None, "", "unreadable_file")]),
        ("empty.jsonl", 0, [(None, "", "unreadable_file")]),
    ],
)
def test_each_file_in_the_corpus_gives_its_valid_rows_and_exact_errors(name, valid, expected):
    report = check(name)
    assert report.valid == valid
    assert errors(report) == expected


def test_whole_file_problems_say_what_is_wrong_in_plain_words():
    assert "needs instruction + output" in check("missing_columns.csv").errors[0].message
    assert "binary" in check("binary.bin").errors[0].message
    assert "0xe9" in check("latin1.jsonl").errors[0].message
    nul, _, half = check("nul_and_surrogates.jsonl").errors
    assert "NUL character" in nul.message and "character 7" in nul.message
    assert "\\ud800" in half.message and "broken" in half.message


def test_the_report_gives_token_statistics_and_a_cost_for_every_backend():
    report = check("good_openai.jsonl", targets.get("gpt-4o-mini-2024-07-18"))
    assert report.ok and report.token_stats["examples"] == 12
    assert report.token_stats["min"] <= report.token_stats["median"] <= report.token_stats["max"]
    rows = {r["base_model"]: r for r in report.backends}
    mini = rows["gpt-4o-mini-2024-07-18"]
    assert mini["chosen"] and mini["eligible"]
    # OpenAI's "auto" epochs for 12 examples: 100 // 12 = 8 passes; billed = tokens × epochs
    assert mini["epochs"] == 8
    assert mini["billed_tokens"] == report.token_stats["total"] * 8
    assert mini["cost_usd"] == pytest.approx(mini["billed_tokens"] * 3.0 / 1e6, abs=1e-4)
    assert rows[targets.DEFAULT.base_model]["cost_usd"] == 0.0


def test_openai_needs_ten_examples_and_fewer_is_an_error_for_that_backend():
    data = b"".join(json.dumps(formats.to_row(conversation(i), "openai")).encode() + b"\n" for i in range(5))
    report = checks.check_file(data, "five.jsonl", targets.get("gpt-4o-mini-2024-07-18")).report
    assert [p.kind for p in report.errors] == ["too_few_examples"]
    local = checks.check_file(data, "five.jsonl", targets.DEFAULT).report
    assert local.ok and "few_examples" in [p.kind for p in local.warnings]


def test_an_example_longer_than_the_base_models_context_is_an_error_with_its_count():
    long_reply = "word " * 3000
    data = (
        json.dumps(formats.to_row(conversation(1), "openai"))
        + "\n"
        + json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": long_reply}]})
    ).encode()
    report = checks.check_file(data, "long.jsonl", targets.DEFAULT).report
    [problem] = report.errors
    assert (problem.line, problem.kind) == (2, "too_many_tokens")
    assert "2,048" in problem.message and "tokens" in problem.message


def test_a_50_mb_file_is_read_whole_and_its_bad_lines_reported(persona):
    good = json.dumps(
        {"messages": [{"role": "user", "content": "Q " + "x" * 1800}, {"role": "assistant", "content": "A " * 80}]}
    )
    lines = [good.replace("Q ", f"Q{i} ") for i in range(25_000)]
    lines[100] = '{"messages": [broken'
    lines[20_000] = "[]"
    data = ("\n".join(lines) + "\n").encode()
    assert len(data) > 50_000_000
    result = importer.import_file(data, "big.jsonl", persona.id)
    assert [(p.line, p.kind) for p in result.report.errors] == [(101, "invalid_json"), (20_001, "not_an_object")]
    assert result.added == 24_998


def test_a_file_over_the_upload_limit_is_refused_before_reading(monkeypatch):
    monkeypatch.setattr(reader, "MAX_BYTES", 1000)
    report = checks.check_file(b"{}\n" * 500, "big.jsonl").report
    assert report.errors[0].kind == "unreadable_file" and "limit" in report.errors[0].message


# --- formats -----------------------------------------------------------------------------------


def conversation(i: int, system: bool = False, turns: int = 1) -> list[dict]:
    messages = [{"role": "system", "content": "Be candid."}] if system else []
    for t in range(turns):
        messages += [{"role": "user", "content": f"Q{i}.{t}"}, {"role": "assistant", "content": f"A{i}.{t}"}]
    return messages


@pytest.mark.parametrize("fmt", list(formats.FORMATS))
@pytest.mark.parametrize(("system", "turns"), [(False, 1), (True, 1), (True, 3)])
def test_every_format_gives_back_the_same_conversation(fmt, system, turns):
    messages = conversation(7, system, turns)
    row = formats.to_row(messages, fmt, strings=formats.single_turn(messages))
    assert formats.detect(row) == fmt
    assert formats.from_row(json.loads(json.dumps(row)))[0] == messages


def test_the_formats_look_as_each_tool_expects():
    messages = conversation(1, system=True)
    assert formats.to_row(messages, "sharegpt")["conversations"][1] == {"from": "human", "value": "Q1.0"}
    assert formats.to_row(messages, "alpaca") == {
        "instruction": "Q1.0",
        "input": "",
        "output": "A1.0",
        "system": "Be candid.",
    }
    assert formats.to_row(conversation(1), "prompt_completion") == {"prompt": "Q1.0", "completion": "A1.0"}
    assert formats.to_row(messages, "chatml")["text"].startswith("<|im_start|>system\nBe candid.<|im_end|>\n")


# --- building a dataset --------------------------------------------------------------------------


def test_split_is_seeded_and_stratified_by_document_type(persona):
    add_examples(persona.id, 100, status="accepted")
    flt = ExampleFilter(persona_id=persona.id, statuses=["accepted"])
    first = build.preview(flt, 0.2, seed=1)
    again = build.preview(flt, 0.2, seed=1)
    other = build.preview(flt, 0.2, seed=2)
    ids = [e.id for e in first.validation]
    assert ids == [e.id for e in again.validation]
    assert ids != [e.id for e in other.validation]
    assert len(first.validation) == 20
    per_type = {}
    for e in first.validation:
        per_type[e.document_type] = per_type.get(e.document_type, 0) + 1
    assert sorted(per_type.values()) == [4, 4, 4, 4, 4]  # 20 of each of the five types, 20% each


def test_small_sets_still_get_their_share_of_validation(persona):
    add_examples(persona.id, 20, status="accepted")
    plan = build.preview(ExampleFilter(persona_id=persona.id, statuses=["accepted"]), 0.1)
    assert (len(plan.train), len(plan.validation)) == (18, 2)


def test_a_saved_dataset_is_an_immutable_snapshot_in_every_format(persona):
    add_examples(persona.id, 30, status="accepted")
    add_examples(persona.id, 5, status="rejected", start=500)
    flt = ExampleFilter(persona_id=persona.id, statuses=["accepted"])
    plan = build.preview(flt, 0.1, include_system_prompt=True)
    dataset = build.save("collab-v1", plan, created_by="ada")
    folder = build.datasets_dir() / "collab-v1"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["content_hash"] == dataset.content_hash
    assert manifest["counts"] == dataset.counts and dataset.counts["train"] + dataset.counts["validation"] == 30
    assert manifest["filter"]["statuses"] == ["accepted"]
    train = [json.loads(line) for line in (folder / "train.jsonl").read_text().splitlines()]
    assert train[0]["messages"][0] == {"role": "system", "content": persona.system_prompt}
    for fmt in formats.FORMATS:  # every format file reads back as the same conversations
        data = build.file_path(dataset, fmt).read_bytes()
        assert checks.check_file(data, f"x.{fmt}.jsonl", None).conversations == [r["messages"] for r in train]
    assert all(not (p.stat().st_mode & stat.S_IWUSR) for p in folder.iterdir())
    with pytest.raises(UserFacingError, match="exists already"):
        build.save("collab-v1", plan)
    with pytest.raises(UserFacingError, match="exactly these examples"):
        build.save("collab-v2", plan)


def test_building_leaves_out_the_system_prompt_by_default_and_uses_edited_responses(persona):
    [first, *_] = add_examples(persona.id, 12, status="accepted")
    actions.edit_response(first, "A better, warmer reply that asks what the team needs.", "ada")
    plan = build.preview(ExampleFilter(persona_id=persona.id, statuses=["accepted"]), 0.0)
    by_id = dict(zip([e.id for e in plan.train], plan.train_messages, strict=True))
    assert [m["role"] for m in by_id[first]] == ["user", "assistant"]
    assert by_id[first][-1]["content"].startswith("A better, warmer reply")


def test_bad_names_and_failed_checks_are_refused_and_nothing_is_written(persona):
    add_examples(persona.id, 3, status="accepted", response="word " * 3000)
    plan = build.preview(ExampleFilter(persona_id=persona.id, statuses=["accepted"]), 0.0)
    assert [p.kind for p in plan.report.errors] == ["too_many_tokens"] * 3
    with pytest.raises(UserFacingError, match="error"):
        build.save("long-ones", plan)
    with pytest.raises(UserFacingError, match="cannot be a dataset name"):
        build.save("../../etc", plan)
    assert not build.datasets_dir().exists() or not any(build.datasets_dir().iterdir())
    with pytest.raises(UserFacingError, match="No examples match"):
        build.preview(ExampleFilter(persona_id=persona.id, statuses=["rejected"]))


# --- import ------------------------------------------------------------------------------------


def test_import_adds_the_valid_rows_skips_duplicates_and_touches_nothing_stored(persona):
    [existing] = add_examples(persona.id, 1, status="accepted", gold_star=True, rating=5)
    before = actions.get(existing)
    result = importer.import_file((CORPUS / "bad_mixed.jsonl").read_bytes(), "../../bad_mixed.jsonl", persona.id)
    assert (result.added, result.duplicates, result.report.invalid) == (2, 0, 10)
    again = importer.import_file((CORPUS / "bad_mixed.jsonl").read_bytes(), "bad_mixed.jsonl", persona.id)
    assert (again.added, again.duplicates) == (0, 2)
    after = actions.get(existing)
    assert after.model_dump() == before.model_dump()
    with session_scope() as session:
        imported = session.query(Example).filter(Example.source == "imported").all()
    assert len(imported) == 2
    assert {e.scenario["source_file"] for e in imported} == {"bad_mixed.jsonl"}  # a label, never a path
    assert imported[0].response == "Answer 1." and imported[0].token_count > 0


def test_import_reports_a_nul_or_a_broken_escape_like_any_bad_line_and_adds_the_clean_rows(persona):
    # PostgreSQL refuses NUL in text: one such line once failed the whole import with a raw DataError
    result = importer.import_file((CORPUS / "nul_and_surrogates.jsonl").read_bytes(), "nul.jsonl", persona.id)
    assert (result.added, result.report.invalid) == (2, 3)
    assert [(p.line, p.kind) for p in result.report.errors] == [
        (2, "nul_character"),
        (3, "nul_character"),
        (4, "unpaired_surrogate"),
    ]
    with session_scope() as session:
        responses = session.exec(select(Example.response).order_by(Example.id)).all()
    assert responses == ["Answer 1.", "Answer 5 \U0001f600"]  # a proper pair is one character, kept


def test_import_in_a_chosen_format_reports_rows_of_another_shape(persona):
    result = importer.import_file((CORPUS / "good_openai.jsonl").read_bytes(), "x.jsonl", persona.id, "alpaca")
    assert result.added == 0 and {p.kind for p in result.report.errors} == {"missing_content"}


def chat_line(reply: str, question: str = "Q") -> str:
    return json.dumps({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]})


def test_import_refuses_the_lines_longer_than_the_target_models_context_by_line_number(persona):
    lines = [
        chat_line("Fits."),
        chat_line("word " * 3000),  # about 3,000 tokens: counted, over the embedded model's 2,048
        chat_line("x" * 300_000),  # over 128 characters per token × 2,048: refused without counting
        chat_line("Also fits.", "Q2"),
    ]
    data = "\n".join(lines).encode()
    result = importer.import_file(data, "long.jsonl", persona.id, target=targets.DEFAULT)
    assert result.added == 2 and result.report.invalid == 2
    assert [(p.line, p.kind) for p in result.report.errors] == [(2, "too_many_tokens"), (3, "too_many_tokens")]
    two, three = (p.message for p in result.report.errors)
    assert f"tokens; {targets.DEFAULT.base_model} trains on at most 2,048" in two
    assert three.startswith("300,0") and "characters, so at least" in three and "at most 2,048" in three
    assert "2 invalid line(s) skipped" in result.summary()
    with session_scope() as session:
        stored = session.exec(select(Example.response).order_by(Example.id)).all()
    assert stored == ["Fits.", "Also fits."]
    # by default the limit is the longest context any backend trains on: the 3,000-token reply goes in
    again = importer.import_file(data, "long.jsonl", persona.id)
    assert again.added == 2 and again.duplicates == 2 and again.report.errors == []


def test_a_10_mb_line_is_reported_in_seconds_and_little_memory_without_being_tokenized(persona):
    data = (chat_line("Fits.") + "\n" + chat_line("x" * 10_000_000) + "\n").encode()
    tracemalloc.start()
    started = time.monotonic()
    try:
        result = importer.import_file(data, "huge.jsonl", persona.id)
        report = checks.check_file(data, "huge.jsonl", targets.TARGETS[2]).report  # validating, 65,536 tokens
        elapsed, (_, peak) = time.monotonic() - started, tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 10 and peak < 200 * 1024 * 1024
    assert result.added == 1 and [(p.line, p.kind) for p in result.report.errors] == [(2, "too_many_tokens")]
    assert "10,000,001 characters, so at least 78,125 tokens" in result.report.errors[0].message
    assert [(p.line, p.kind) for p in report.errors if p.line] == [(2, "too_many_tokens")] and report.valid == 1


# --- edits and preference pairs ----------------------------------------------------------------


def test_edits_keep_the_original_record_who_and_when_and_give_preference_pairs(persona):
    [one, two] = add_examples(persona.id, 2, status="accepted")
    original = actions.get(one).response
    actions.edit_response(one, "First rewrite.", "ada")
    actions.edit_response(one, "Second rewrite, better.", "ben")
    actions.edit_response(two, actions.get(two).response, "ada")  # unchanged: not an edit
    history = actions.edits(one)
    assert [(e.editor, e.after) for e in history] == [("ada", "First rewrite."), ("ben", "Second rewrite, better.")]
    assert history[0].before == original and history[0].at <= history[1].at
    example = actions.get(one)
    assert example.original_response == original and example.messages[-1]["content"] == "Second rewrite, better."
    [pair] = preferences.pairs_for_persona(persona.id)
    assert pair["chosen"] == "Second rewrite, better." and pair["rejected"] == original
    assert pair["prompt"] == example.messages[0]["content"]
    plan = build.preview(ExampleFilter(persona_id=persona.id, statuses=["accepted"]), 0.0)
    dataset = build.save("with-pairs", plan)
    assert dataset.counts["preference_pairs"] == 1
    lines = build.file_path(dataset, "dpo").read_text().splitlines()
    assert set(json.loads(lines[0])) >= {"prompt", "chosen", "rejected"}


def test_an_empty_edit_is_refused():
    with pytest.raises(UserFacingError, match="cannot be empty"):
        actions.edit_response(1, "   ")


# --- deleting ------------------------------------------------------------------------------------


def test_deleting_a_personas_data_needs_its_name_and_removes_rows_and_files(persona):
    ids = add_examples(persona.id, 12, status="accepted")
    actions.edit_response(ids[0], "Edited.", "ada")
    build.save("to-delete", build.preview(ExampleFilter(persona_id=persona.id, statuses=["accepted"])))
    with pytest.raises(UserFacingError, match="to confirm"):
        purge.delete_persona_data(persona.id, "collab")
    assert purge.delete_persona_data(persona.id, "collaborative") == {"examples": 12, "datasets": 1}
    assert not (build.datasets_dir() / "to-delete").exists()
    with session_scope() as session:
        assert session.query(Example).count() == 0 and session.query(Dataset).count() == 0
    assert personas.get_persona("collaborative")  # the persona itself stays
