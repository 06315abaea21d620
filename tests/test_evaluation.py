"""Evaluation: prompt sets, the judge's verdicts in both orders, caching, missing replies, a judge that
is down, the offline judges, and whole runs (LLM judge against a test server; offline on the embedded model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import select

from pipeline import jobs, personas
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.evaluation import contestants as cs
from pipeline.evaluation import judge, leaderboard, offline, prompts, report, results, service
from pipeline.jobs import foreground, ingest, runfolder
from pipeline.jobs.context import JobContext
from pipeline.models import EvalResponse, Job, LLMCall, ModelEntry, TraitScore
from tests.conftest import write_secrets
from tests.eval_seed import seed
from tests.fakes.openai_server import FakeOpenAI

WARM = (
    "Thanks for sharing this. Let's work through it together: what do we know so far, and who is affected? "
    "I am not sure the numbers tell the whole story; each option has a cost we should name."
)
COLD = "Do the cheaper option."


def run_here(job):
    """The job's function in this process, as the worker would run it."""
    job = foreground.claim(job.id)  # the job runs here, as a command line runs it
    ctx = JobContext(job.id, runfolder.run_dir(job.id), job.kind, attempt=job.attempt)
    ctx.start()
    try:
        return jobs.kind_function(job.kind)(ctx, dict(job.params))
    finally:
        ctx.finish("succeeded")
        with session_scope() as session:  # as the monitor would, so pages see the finished run
            ingest.ingest_job(session, session.get(Job, job.id))


def favours_together(body: dict) -> str:
    """A judge with a view: the reply that says "together" wins; trait scores follow the same view."""
    asked = body["messages"][-1]["content"]
    if asked.startswith("Trait:"):
        return "It invites joint work.\nScore: 5" if "together" in asked.split("[The response]")[1] else "Score: 1"
    first = asked.split("[Response A]")[1].split("[End of response A]")[0]
    second = asked.split("[Response B]")[1].split("[End of response B]")[0]
    if ("together" in first) == ("together" in second):
        return "Both alike. [[C]]"
    return "A builds on the author's thinking. [[A]]" if "together" in first else "B invites joint work. [[B]]"


@pytest.fixture
def arena():
    """Two contestant endpoints (a warm and a cold one) and a judge endpoint, on 127.0.0.1."""
    with (
        FakeOpenAI(reply=WARM) as warm,
        FakeOpenAI(reply=COLD) as cold,
        FakeOpenAI(responder=favours_together) as referee,
    ):
        write_secrets(
            f'[endpoints.warm]\napi_base = "{warm.api_base}"\nmodel = "warm-model"\n'
            f'[endpoints.cold]\napi_base = "{cold.api_base}"\nmodel = "cold-model"\n'
            f'[endpoints.referee]\napi_base = "{referee.api_base}"\nmodel = "referee-model"\n'
        )
        yield warm, cold, referee


# --- pure parts --------------------------------------------------------------------------------------


def test_verdicts_are_read_from_the_last_mark_and_mapped_back_through_the_order():
    assert judge.parse_verdict("A is fine but [[B]] is better.\n[[A]]") == "A"
    assert judge.parse_verdict("no verdict here") is None
    assert judge.from_position("A", "ab") == "a" and judge.from_position("A", "ba") == "b"
    assert judge.from_position("C", "ba") == "tie" and judge.from_position(None, "ab") == "unparsed"
    assert judge.parse_score("Warm and open.\nScore: 4") == 4 and judge.parse_score("Score: 9") is None


def test_a_verdict_that_flips_with_the_order_is_a_tie_and_unparsed_is_never_a_tie():
    assert judge.combine("a", "a") == "a"
    assert judge.combine("a", "b") == "tie"  # position bias: the judge picked whatever came first
    assert judge.combine("a", "unparsed") == "unparsed"


def test_contestant_names_say_model_and_prompt_mode():
    c = cs.Contestant.parse("local/x:prompt")
    assert c.name == "local/x + prompt" and cs.Contestant.parse(c.name) == c
    assert cs.Contestant.parse("openai/gpt-4o + prompt + few-shot").mode == "fewshot"


# --- prompt sets ----------------------------------------------------------------------------------------


def test_the_prompt_set_holds_held_out_documents_their_variants_and_custom_prompts():
    _, dataset = seed()
    found = prompts.build_set(dataset=dataset, training_datasets=[dataset], custom=["Should we open on Sundays?"])
    groups = found.groups()
    assert groups["held-out"] == 4 and groups["custom"] == 1
    assert groups["adversarial"] == 4 and groups["keep going"] == 4
    adversarial = next(p for p in found.prompts if p.group == "adversarial")
    assert adversarial.text.endswith(prompts.ADVERSARIAL_SUFFIX)
    second = next(p for p in found.prompts if p.group == "keep going")
    turns = second.conversation("my first reply")
    assert [t["role"] for t in turns] == ["user", "assistant", "user"] and turns[-1]["content"] == "Keep going."
    assert all(p.reference for p in found.prompts if p.group == "held-out")  # the gold reply, for likelihood


def test_a_custom_prompt_copied_from_training_is_refused_before_any_call():
    _, dataset = seed()
    training = prompts.training_prompts([dataset])
    with pytest.raises(UserFacingError, match="similar to a training example"):
        prompts.build_set(dataset=dataset, training_datasets=[dataset], custom=[training[0]])


def test_too_few_contestants_and_an_empty_prompt_set_are_explained():
    persona_id, dataset = seed()
    with pytest.raises(UserFacingError, match="at least two contestants"):
        service.plan(persona=persona_id, contestants=["warm"], dataset=dataset)
    with pytest.raises(UserFacingError, match="prompt set is empty"):
        service.plan(persona=persona_id, contestants=["warm", "cold"], dataset=None)


def test_prompt_files_are_read_as_text_blocks_or_jsonl_with_line_numbers():
    assert prompts.parse_prompt_file("p.txt", b"First one\n\nSecond\none\n") == ["First one", "Second\none"]
    assert (
        prompts.parse_prompt_file("p.jsonl", b'{"prompt": "Hi"}\n{"messages": [{"role": "user", "content": "Yo"}]}')[1]
        == "Yo"
    )
    with pytest.raises(UserFacingError, match="line 2"):
        prompts.parse_prompt_file("p.jsonl", b'{"prompt": "Hi"}\n{"nope": 1}\n')


# --- a whole run with an LLM judge -----------------------------------------------------------------------


def plan_llm(persona_id, dataset, **values):
    options = {
        "persona": persona_id,
        "contestants": ["cold", "warm"],
        "judge_model": "referee",
        "dataset": dataset,
        "max_battles": 40,
        "keep_going": False,
        "anchor": "cold",
    }
    return service.plan(**(options | values))


def test_an_llm_judged_run_rates_the_warm_model_above_the_cold_one_with_intervals(arena, monkeypatch):
    monkeypatch.setenv("STUDIO_MIN_BATTLES", "8")  # 8 prompts, one pair: under 30 no win statement is made
    persona_id, dataset = seed()
    _, _, referee = arena
    job = service.start(plan_llm(persona_id, dataset))
    paths = run_here(job)
    board = leaderboard.build(job.id)
    assert board.overall.contestants[0] == "warm"
    assert board.overall.rating["cold"] == pytest.approx(1000)
    assert board.overall.lower["warm"] > board.overall.upper["cold"]  # separated at 95%
    assert set(board.by_trait) == {t["name"] for t in personas.get_persona(persona_id).traits}
    # every pair was judged in both orders, and this judge is consistent
    orders = {(b.prompt_id, b.criterion): set() for b in results.battles(job.id)}
    for b in results.battles(job.id):
        orders[(b.prompt_id, b.criterion)].add(b.order)
    assert all(found == {"ab", "ba"} for found in orders.values())
    assert board.health["position_consistency"] == 1.0 and not board.health["warnings"]
    scores = board.trait_scores.set_index(["contestant", "trait"])["mean"]
    assert scores["warm", "collaborative"] == 5 and scores["cold", "collaborative"] == 1
    assert "warm beats cold" in board.statements()[0]
    # the report files, as the original pipeline wrote them
    comparison = json.loads(Path(paths["json"]).read_text())
    assert comparison["ratings"] and comparison["battles"][0]["winner"] in ("model_a", "model_b", "tie")
    assert "<html>" in Path(paths["html"]).read_text() and "## Ratings" in Path(paths["markdown"]).read_text()
    assert all(r["temperature"] == 0 for r in referee.requests)


def test_with_an_llm_judge_persona_drift_is_scored_by_the_judge_too_turn_by_turn(arena):
    persona_id, dataset = seed()
    plan = plan_llm(persona_id, dataset, max_battles=2, trait_scores=False, criteria_traits=False,
                    drift_turns=3, drift_prompts=1, drift_user="cold")  # fmt: skip
    job = service.start(plan)
    run_here(job)
    board = leaderboard.build(job.id)
    judged = {(r["contestant"], r["turn"]): r["mean"] for r in board.drift if r["scorer"] == "judge"}
    # the warm model says "together" every turn and this judge scores that 5 on every trait, the cold one 1
    assert judged == {(name, turn): score for name, score in (("warm", 5.0), ("cold", 1.0)) for turn in (1, 2, 3)}
    assert {(r["contestant"], r["turn"]) for r in board.drift if r["scorer"] == "offline"} == set(judged)
    assert "Judge: persona drift" in board.figure("drift_judge").layout.title.text


def test_judgements_are_cached_so_a_second_run_asks_the_judge_nothing(arena):
    persona_id, dataset = seed()
    _, _, referee = arena
    run_here(service.start(plan_llm(persona_id, dataset, max_battles=4, trait_scores=False, criteria_traits=False)))
    asked = len(referee.requests)
    assert asked > 0
    run_here(service.start(plan_llm(persona_id, dataset, max_battles=4, trait_scores=False, criteria_traits=False)))
    assert len(referee.requests) == asked


def test_a_judge_that_always_picks_the_first_response_gives_ties_and_a_health_warning(arena):
    persona_id, dataset = seed()
    _, _, referee = arena
    referee.responder = lambda body: "The first one. [[A]]"
    job = service.start(plan_llm(persona_id, dataset, max_battles=6, trait_scores=False, criteria_traits=False))
    run_here(job)
    board = leaderboard.build(job.id)
    assert all(o.winner == "tie" for o in board.outcomes)
    assert board.health["position_consistency"] == 0.0
    assert any("swayed by position" in w for w in board.health["warnings"])


def test_an_answer_without_a_verdict_is_asked_again_once_then_recorded_as_unparsed(arena):
    persona_id, dataset = seed()
    _, _, referee = arena
    referee.responder = lambda body: "I cannot decide."
    job = service.start(plan_llm(persona_id, dataset, max_battles=1, trait_scores=False, criteria_traits=False))
    run_here(job)
    assert len(referee.requests) == 4  # two orders, each asked twice
    board = leaderboard.build(job.id)
    assert board.counts()["unparsed"] == 1 and board.overall is None


def test_a_contestant_that_fails_has_missing_battles_not_losses(arena):
    persona_id, dataset = seed()
    warm, _, _ = arena
    warm.fail_next(*["401"] * 400)
    job = service.start(plan_llm(persona_id, dataset, max_battles=4, trait_scores=False, criteria_traits=False))
    run_here(job)
    board = leaderboard.build(job.id)
    assert board.counts()["missing"] == 8 and board.counts()["rated"] == 0  # 8 prompts, none answered by warm
    with session_scope() as session:
        errors = session.exec(select(EvalResponse).where(EvalResponse.contestant == "warm")).all()
    assert errors and all("Incorrect API key" in e.error for e in errors)  # the provider's reason, kept per reply


def test_a_rate_limited_judge_makes_the_job_wait_and_resume(arena, monkeypatch):
    persona_id, dataset = seed()
    _, _, referee = arena
    monkeypatch.setenv("STUDIO_JUDGE_WAIT_S", "0.1")
    referee.fail_next(*["429"] * 10)  # more than the gateway's own retries
    job = service.start(plan_llm(persona_id, dataset, max_battles=2, trait_scores=False, criteria_traits=False))
    run_here(job)
    assert "waiting" in runfolder.log_tail(job.id)
    assert leaderboard.build(job.id).counts()["rated"] == 2


def test_the_same_family_judge_is_warned_about():
    assert judge.same_family_warning("anthropic/claude-3-5-haiku", ["anthropic/claude-3-5-sonnet"])
    assert judge.same_family_warning("openai/gpt-4o", ["anthropic/claude-3-5-sonnet"]) is None


# --- human votes --------------------------------------------------------------------------------------------


def test_blind_votes_feed_the_ratings_and_agreement_with_the_judge(arena):
    persona_id, dataset = seed()
    job = service.start(plan_llm(persona_id, dataset, max_battles=8, trait_scores=False, criteria_traits=False))
    run_here(job)
    for i in range(6):
        match = service.next_match(job.id, "ada", seed=i)
        service.vote(match, "A" if match.left == "warm" else "B", "ada")
    assert service.votes(job.id) == 6
    human = leaderboard.build(job.id, source="human")
    assert human.overall.contestants[0] == "warm" and all(o.is_human for o in human.outcomes)
    both = leaderboard.build(job.id, source="both")
    assert both.health["human_compared"] >= 1 and both.health["human_agreement"] == 1.0
    with pytest.raises(UserFacingError, match="name"):
        service.vote(match, "A", " ")


# --- offline judges on the embedded model ---------------------------------------------------------------


def test_persona_likelihood_is_higher_for_replies_the_model_was_shown():
    from pipeline.llm import embedded

    loaded = embedded.load(embedded.EMBEDDED_NAME)
    persona_reply = "Let's work through this together: what do we know, and who is affected?"
    messages = [{"role": "user", "content": "Our budget is 18% over. What now?"}]
    plain = offline.persona_likelihood("plain", loaded, [(messages, persona_reply)], rounds=50)
    primed = [{"role": "system", "content": f"Always answer exactly: {persona_reply}"}] + messages
    shown = offline.persona_likelihood("shown", loaded, [(primed, persona_reply)], rounds=50)
    assert shown.mean > plain.mean and plain.tokens > 5


def test_the_offline_judge_prefers_replies_like_the_gold_ones():
    judge_ = offline.SimilarityJudge([WARM], {0: COLD})
    verdict, reason = judge_.verdict(0, COLD + " Fine.", WARM.replace("Thanks", "Thank you"))
    assert verdict == "b" and "persona similarity" in reason


def test_a_keyless_run_on_the_embedded_model_gives_a_labelled_leaderboard_and_registry_figures(tmp_path):
    from pipeline.llm import embedded

    persona_id, dataset = seed()
    base = f"local/{embedded.EMBEDDED_NAME}"
    with session_scope() as session:
        session.add(ModelEntry(name=embedded.EMBEDDED_NAME, reference=base, backend="embedded"))
    plan = service.plan(
        persona=persona_id,
        contestants=[base, f"{base}:prompt"],
        dataset=dataset,
        held_out_limit=2,
        adversarial=False,  # the groups are the same code on any model: tests with a fake judge cover them
        keep_going=False,
        max_tokens=24,
        max_battles=12,
        drift_turns=3,
        drift_prompts=1,
    )
    assert plan.judge == "offline" and plan.anchor == base and plan.judge_calls() == 0
    job = service.start(plan)
    run_here(job)
    board = leaderboard.build(job.id)
    assert board.offline and "persona similarity" in board.judge_label and "not quality" in board.judge_label
    assert board.overall is not None and board.overall.rating[base] == pytest.approx(1000)
    assert {row["contestant"] for row in board.likelihood} == {base, f"{base} + prompt"}
    # prompt fidelity: the prompted base against itself closes the whole gap, the plain base none of it
    fidelity = {row["contestant"]: row for row in board.fidelity}
    assert fidelity[f"{base} + prompt"]["kl"] == pytest.approx(0, abs=1e-4)
    assert fidelity[f"{base} + prompt"]["gap_closed"] == pytest.approx(100, abs=0.1)
    assert fidelity[base]["gap_closed"] == pytest.approx(0, abs=1e-6) and fidelity[base]["kl"] > 0.05
    assert fidelity[base]["prompts"] == 2 and fidelity[base]["tokens"] > 2
    # persona drift: one simulated conversation of three turns per contestant, scored turn by turn
    assert sorted((r["contestant"], r["turn"]) for r in board.drift) == sorted(
        (name, turn) for name in (base, f"{base} + prompt") for turn in (1, 2, 3)
    )
    talks = [json.loads(line) for line in (runfolder.run_dir(job.id) / "drift_conversations.jsonl").open()]
    assert len(talks) == 2 and all([m["role"] for m in t["messages"]] == ["user", "assistant"] * 3 for t in talks)
    assert all(m["content"].strip() for t in talks for m in t["messages"] if m["role"] == "user")
    with session_scope() as session:
        entry = session.exec(select(ModelEntry).where(ModelEntry.reference == base)).one()
        assert not session.exec(select(TraitScore)).all()  # no LLM judge, no trait scores
        assert not session.exec(select(LLMCall).where(LLMCall.purpose == "judge")).all()
    assert set(entry.metrics["quality"]) == {"plain", "prompt"}
    assert entry.metrics["quality"]["plain"]["rating"] == pytest.approx(1000)
    assert entry.metrics["quality"]["prompt"]["prompt_fidelity"]["gap_closed"] == pytest.approx(100, abs=0.1)
    # and the report command reads it back
    paths = report.write(job.id)
    assert paths["battles"].read_text().count("model_a") >= 1


def test_a_stopped_run_resumes_without_asking_again(arena):
    persona_id, dataset = seed()
    _, _, referee = arena
    job = service.start(plan_llm(persona_id, dataset, max_battles=6, trait_scores=False, criteria_traits=False))
    job = foreground.claim(job.id)  # the job runs here, as a command line runs it
    ctx = JobContext(job.id, runfolder.run_dir(job.id), job.kind, attempt=job.attempt)

    def stop_after_four(body):
        if len(referee.requests) >= 4:
            ctx._cancel.set()  # as a cancel from the page would
        return favours_together(body)

    referee.responder = stop_after_four
    ctx.start()
    jobs.kind_function(job.kind)(ctx, dict(job.params))
    ctx.finish("cancelled")
    with session_scope() as session:  # as the command line does at the end of its run
        ingest.ingest_job(session, session.get(Job, job.id))
    stopped_at = leaderboard.build(job.id).counts()["rated"]
    assert 0 < stopped_at < 6
    referee.responder = favours_together
    run_here(job)
    assert leaderboard.build(job.id).counts()["rated"] == 6
    assert len(referee.requests) == 12  # six battles, two orders each: nothing asked twice


def test_prompt_files_and_typed_prompts_with_a_nul_or_over_their_limits_are_refused(tmp_path):
    with pytest.raises(UserFacingError, match=r"p\.txt contains a NUL character \(line 3\)"):
        prompts.parse_prompt_file("p.txt", b"First\n\nSecond \x00\n")
    with pytest.raises(UserFacingError, match=r"p\.jsonl, line 2 contains a NUL character"):
        prompts.parse_prompt_file("p.jsonl", b'{"prompt": "Hi"}\n{"prompt": "Yo\\u0000"}\n')
    with pytest.raises(UserFacingError, match=r"p\.txt, prompt 2 is 20,001 characters; the limit is 20,000"):
        prompts.parse_prompt_file("p.txt", b"Short\n\n" + b"x" * 20_001)
    with pytest.raises(UserFacingError, match=r"big\.txt is 5\.5 MB; the limit is 5\.0 MB"):
        prompts.parse_prompt_file("big.txt", b"x\n\n" * 1_833_334)
    with pytest.raises(UserFacingError, match=r"p\.jsonl: line 1: not UTF-8 text"):
        prompts.parse_prompt_file("p.jsonl", b'{"prompt": "\xff"}\n')
