"""The quality gate: degenerate, unrelated and out-of-character replies flagged with their reasons, on
generated and imported examples, left out of datasets by default, counted on Generate, filtered on Review."""

from __future__ import annotations

import asyncio
import json

import pytest

from pipeline import jobs, personas
from pipeline.datasets import build, importer
from pipeline.errors import UserFacingError
from pipeline.generation import outputs, quality, runner
from pipeline.generation.config import GenerationConfig
from pipeline.review import filters
from pipeline.review.filters import ExampleFilter
from tests.conftest import REPO, write_secrets
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.stage_replies import RESPONSE, stage_aware
from tests.seed import add_examples
from tests.test_pages import open_app

REPLIES = [json.loads(line) for line in (REPO / "tests/data/quality/replies.jsonl").read_text().splitlines()]
SHOUTED = "THIS PLAN WILL NOT WORK. WE NEED MORE STAFF IN THE NORTH, NOT FEWER, AND WE NEED THEM NOW!"


@pytest.fixture
def persona():
    personas.seed_samples()
    return personas.get_persona("collaborative")


@pytest.fixture
def gate(persona) -> quality.Gate:
    return quality.Gate(persona.name, persona.traits)


def caught(reasons: list[str]) -> set[str]:
    return {quality.check_of(r) for r in reasons}


# --- the checks ------------------------------------------------------------------------------------------


def test_each_check_catches_its_kind_and_good_replies_pass(gate):
    found = gate.check([(r["document"], r["reply"]) for r in REPLIES])
    for reply, reasons in zip(REPLIES, found, strict=True):
        if reply["kind"] == "good":
            assert reasons == [], reply["reply"][:60]
        else:
            assert reply["kind"] in caught(reasons), (reply["kind"], reasons)
    assert sum(r["kind"] == "good" for r in REPLIES) >= 6 and len({r["kind"] for r in REPLIES}) == 7


def test_each_reason_says_what_is_wrong_in_plain_words():
    t = quality.Thresholds()
    assert quality.text_issues("PLEASE FIX THIS TODAY, the team waits", t) == ["shouting: 60% of letters are capitals"]
    [repeated] = quality.text_issues("Plan it.\n" + "\n".join(["We should check the numbers."] * 3), t)
    assert repeated == "repetition: the line “we should check the numbers.” appears 3 times"
    assert quality.text_issues("Great news!!! Really?!?!", t) == ["runaway punctuation: “!!!” and 1 more run"]
    assert quality.text_issues("Wait... let me think about it. Is that right?", t) == []  # an ellipsis is fine
    [junk] = quality.text_issues("qzxv wrrbt kjhgf the plan dlvry", t)
    assert junk == "non-words: 67% of tokens are not words (“qzxv”, “wrrbt”, “kjhgf”)"


def test_ordinary_writing_is_not_mistaken_for_degenerate_text():
    t = quality.Thresholds()
    text = (
        "Our Q3 KPI rose 12% to $5,400 by 10am on 3rd March (see https://example.com/report). The CRM and "
        "SQL strengths we found - rhythm, clarity, trade-offs - are worth keeping. **Next steps:**\n\n"
        "- Check the numbers\n- Talk to the team\n\n| Option | Cost |\n|---|---|\n| A | low |"
    )
    assert quality.text_issues(text, t) == []


def test_the_thresholds_are_settings_from_the_environment_or_the_settings_file(monkeypatch):
    loud = "PLEASE FIX THIS TODAY, the team waits"
    monkeypatch.setenv("STUDIO_QUALITY_CAPITALS", "0.65")
    assert quality.thresholds().capitals == 0.65 and quality.text_issues(loud) == []
    monkeypatch.delenv("STUDIO_QUALITY_CAPITALS")
    write_secrets("[quality]\ncapitals = 0.55\nrelevance = 0.2\n")
    assert (quality.thresholds().capitals, quality.thresholds().relevance) == (0.55, 0.2)
    assert quality.text_issues(loud) == ["shouting: 60% of letters are capitals"]
    monkeypatch.setenv("STUDIO_QUALITY_REPEATED_LINE", "many")
    with pytest.raises(UserFacingError, match="repeated_line .* must be a whole number; it is 'many'"):
        quality.thresholds()


# --- the judge, through a test server speaking the OpenAI API ---------------------------------------------


@pytest.fixture
def referee():
    """A judge that finds the markers only in replies that say "together"."""

    def scores(body):
        response = body["messages"][-1]["content"].split("[The response]")[1]
        return "It invites joint work.\nScore: 4" if "together" in response else "No marker shows.\nScore: 1"

    with FakeOpenAI(responder=scores) as server:
        write_secrets(f'[endpoints.referee]\napi_base = "{server.api_base}"\nmodel = "referee-model"\n')
        yield server


def test_with_a_judge_configured_the_judge_decides_the_persona_check(persona, referee, monkeypatch):
    monkeypatch.setenv("STUDIO_QUALITY_JUDGE_MODEL", "referee")
    gate = quality.Gate(persona.name, persona.traits)
    assert gate.judge == "referee"
    flat = next(r for r in REPLIES if r["kind"] == "persona")
    reasons = asyncio.run(gate.acheck(flat["document"], flat["reply"]))
    assert reasons == ["no persona markers: the judge (referee) scored it 1/5 on the markers: No marker shows."]
    # a reply the offline score would flag passes when the judge finds a marker
    terse = "Fine. Do it together with finance."
    offline = quality.Gate(persona.name, persona.traits, quality.Thresholds(judge_model="off"))
    assert "persona" in caught(offline.check([("Memo: cut the budget.", terse)])[0])
    assert asyncio.run(gate.acheck("Memo: cut the budget.", terse)) == []
    asked = referee.requests[0]["messages"][-1]["content"]
    assert 'Uses "we" and "let\'s" when proposing next steps' in asked  # the persona's markers, all of them
    assert "Names the people affected by a decision" in asked


def test_a_judge_that_is_down_leaves_the_offline_score_standing(persona, referee, monkeypatch):
    monkeypatch.setenv("STUDIO_QUALITY_JUDGE_MODEL", "referee")
    referee.fail_next(*["401"] * 4)
    flat = next(r for r in REPLIES if r["kind"] == "persona")
    reasons = asyncio.run(quality.Gate(persona.name, persona.traits).acheck(flat["document"], flat["reply"]))
    assert reasons and reasons[0].startswith("no persona markers: 0 of the markers' words")


def test_without_a_key_no_judge_is_asked():
    assert quality.judge_model(quality.Thresholds()) is None  # "auto", and no provider key is set


# --- generated and imported examples ---------------------------------------------------------------------


def test_generated_replies_are_gated_as_saved_and_counted_in_the_run_files(persona, monkeypatch):
    monkeypatch.setenv("STUDIO_LLM_CACHE", "0")  # the same question gets the next reply, not the first again
    replies = iter([SHOUTED, RESPONSE, RESPONSE, SHOUTED])

    def responder(body):
        asked = body["messages"][-1]["content"]
        return stage_aware(body) if asked.startswith(("Invent", "Write")) else next(replies)

    with FakeOpenAI(responder=responder) as server:
        write_secrets(f'[endpoints.primary]\napi_base = "{server.api_base}"\nmodel = "gen"\n')
        config = GenerationConfig(
            persona_id=persona.id,
            examples=4,
            concurrency=1,
            scenario_models=["primary"],
            document_models=["primary"],
            response_models=["primary"],
            min_response_words=10,
        )
        job = jobs.submit("generation", config.model_dump(mode="json"))
        asyncio.run(runner.Generation(job.id, config, runner.prepare(config)).run())

    assert runner.gate_counts(job.id) == {"flagged": 2, "by_check": {**dict.fromkeys(quality.CHECKS, 0), "shouting": 2}}
    paths = outputs.write(job.id, config, None, persona.name)
    assert len(paths["training"].read_text().splitlines()) == 2  # the shouted replies stay out
    detailed = json.loads(paths["detailed"].read_text())
    assert [d["quality_issues"] for d in detailed][0] == ["shouting: 100% of letters are capitals"]
    assert [d["status"] for d in detailed] == ["pending"] * 4  # still reviewable
    gate = json.loads(paths["metadata"].read_text())["statistics"]["quality_gate"]
    assert gate["flagged"] == 2 and gate["by_check"]["shouting"] == 2


def test_imported_replies_are_gated_and_the_import_says_how_many(persona):
    rows = [
        {"messages": [{"role": "user", "content": r["document"]}, {"role": "assistant", "content": r["reply"]}]}
        for r in REPLIES
    ]
    data = "\n".join(json.dumps(r) for r in rows).encode()
    result = importer.import_file(data, "mixed.jsonl", persona.id)
    bad = sum(r["kind"] != "good" for r in REPLIES)
    assert result.added == len(REPLIES) and result.flagged == bad
    assert f"{bad} of them flagged by the quality gate" in result.summary()
    flagged = filters.examples(ExampleFilter(persona_id=persona.id, statuses=["pending"], quality="flagged"))
    assert {e.response for e in flagged} == {r["reply"] for r in REPLIES if r["kind"] != "good"}


def test_a_large_import_gets_the_text_checks_and_says_the_others_were_skipped(persona, monkeypatch):
    monkeypatch.setenv("STUDIO_QUALITY_IMPORT_EMBEDDING_LIMIT", "2")
    rows = [
        {"messages": [{"role": "user", "content": r["document"]}, {"role": "assistant", "content": r["reply"]}]}
        for r in REPLIES
        if r["kind"] in ("good", "shouting", "unrelated")
    ]
    result = importer.import_file("\n".join(json.dumps(r) for r in rows).encode(), "big.jsonl", persona.id)
    assert result.flagged == 2  # the shouting ones; the unrelated ones needed the embedding checks
    assert "relevance and persona checks were skipped" in result.summary()


def test_flagged_examples_are_left_out_of_a_built_dataset_unless_included(persona):
    add_examples(persona.id, 8, status="accepted")
    add_examples(persona.id, 2, status="accepted", start=50, quality_issues=["shouting: 90% of letters are capitals"])
    flt = ExampleFilter(persona_id=persona.id, statuses=["accepted"])
    plan = build.preview(flt)
    assert len(plan.train) + len(plan.validation) == 8 and plan.flagged_left_out == 2
    dataset = build.save("gated", plan)
    manifest = json.loads((build.datasets_dir() / dataset.name / "manifest.json").read_text())
    assert manifest["quality_gate"] == {"include_flagged": False, "flagged_left_out": 2}
    everything = build.preview(flt, include_flagged=True)
    assert len(everything.train) + len(everything.validation) == 10 and everything.flagged_left_out == 0


# --- the pages ---------------------------------------------------------------------------------------------


def test_the_generate_page_counts_what_the_gate_caught(persona):
    job = jobs.submit("generation", {"persona_id": persona.id, "examples": 4}, name="Generation: 4 examples")
    add_examples(persona.id, 2, job_id=job.id)
    add_examples(persona.id, 1, job_id=job.id, start=10, quality_issues=["shouting: 90% of letters are capitals"])
    add_examples(
        persona.id,
        1,
        job_id=job.id,
        start=20,
        quality_issues=["repetition: the line “x y z” appears 4 times", "shouting: 80% of letters are capitals"],
    )
    at = open_app("pages/generate.py")
    assert not at.exception
    assert "· 2 flagged by the quality gate" in at.get("progress")[0].proto.text
    assert any("2 flagged by the quality gate: repetition 1 · shouting 2" in c.value for c in at.caption), [
        c.value for c in at.caption
    ]


def test_the_review_page_filters_flagged_replies_and_shows_why(persona):
    add_examples(persona.id, 5)
    [loud] = add_examples(persona.id, 1, start=10, quality_issues=["shouting: 90% of letters are capitals"])
    [odd] = add_examples(persona.id, 1, start=20, quality_issues=["non-words: 40% of tokens are not words (“qzx”)"])
    at = open_app("pages/review.py")
    header = next(m.value for m in at.markdown if "examples** match" in m.value)
    assert header.startswith("**7 examples** match")
    at.selectbox(key="review_quality").set_value("flagged").run()
    assert not at.exception
    header = next(m.value for m in at.markdown if "examples** match" in m.value)
    assert header.startswith("**2 examples** match")
    assert set(at.dataframe[0].value["quality gate"]) == {
        "shouting: 90% of letters are capitals",
        "non-words: 40% of tokens are not words (“qzx”)",
    }
    at.selectbox(key="review_quality").set_value("shouting").run()
    assert next(m.value for m in at.markdown if "examples** match" in m.value).startswith("**1 examples** match")
    assert [w.value for w in at.warning] == ["Quality gate: shouting: 90% of letters are capitals"]
    at.selectbox(key="review_quality").set_value("passed").run()
    assert next(m.value for m in at.markdown if "examples** match" in m.value).startswith("**5 examples** match")
    assert loud and odd
