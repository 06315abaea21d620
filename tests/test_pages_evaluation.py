"""The Evaluate, Arena and Leaderboard pages through AppTest, from app.py, as a user would click them."""

from __future__ import annotations

from sqlmodel import select

from pipeline import jobs
from pipeline.db import session_scope
from pipeline.evaluation import prompts, service
from pipeline.models import Battle
from tests.eval_seed import seed
from tests.test_evaluation import arena, plan_llm, run_here  # noqa: F401 - arena is a fixture
from tests.test_pages import open_app


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_evaluate_page_plans_refuses_bad_input_and_queues_a_run():
    seed()
    at = open_app("pages/evaluate.py")
    chosen = at.multiselect(key="eval_contestants").value
    assert chosen == ["local/smollm2-135m-instruct", "local/smollm2-135m-instruct + prompt"]
    shown = metrics(at)
    assert shown["Prompts"] == "12" and shown["Pairs"] == "1" and shown["Judge calls, at most"] == "none"
    assert any("held at 1000: **local/smollm2-135m-instruct**" in c.value for c in at.caption)
    at.multiselect(key="eval_contestants").set_value(chosen[:1]).run()
    assert any("at least two contestants" in e.value for e in at.error)
    at.multiselect(key="eval_contestants").set_value(chosen).run()
    at.text_area(key="eval_custom").set_value(prompts.training_prompts(["collab-eval"])[0]).run()
    assert any("similar to a training example" in e.value for e in at.error)
    at.text_area(key="eval_custom").set_value("Should we open the shop on Sundays?").run()
    assert metrics(at)["Prompts"] == "13"
    assert at.selectbox(key="eval_drift_user").disabled  # no drift turns, no simulated user to pick
    at.number_input(key="eval_drift").set_value(3).run()
    assert at.selectbox(key="eval_drift_user").value == "local/smollm2-135m-instruct"
    at.button(key="eval_start").click().run()
    assert not at.exception
    [job] = jobs.list_jobs()
    assert job.kind == "evaluation" and job.status == "queued" and len(job.params["prompts"]) == 13
    assert (job.params["drift_turns"], job.params["drift_user"]) == (3, "local/smollm2-135m-instruct")
    assert any(f"Queued evaluation {job.id}" in s.value for s in at.success)
    table = next(d.value for d in at.dataframe if "run" in d.value.columns)
    assert list(table["run"]) == [job.id]


def test_leaderboard_shows_ratings_intervals_health_and_the_battles_behind_them(arena, monkeypatch):  # noqa: F811
    monkeypatch.setenv("STUDIO_MIN_BATTLES", "8")  # under the minimum, no rating is shown (test_honest_numbers.py)
    persona_id, dataset = seed()
    job = service.start(plan_llm(persona_id, dataset, max_battles=8, trait_scores=True))
    run_here(job)
    at = open_app("pages/leaderboard.py")
    assert any("LLM judge: referee" in i.value for i in at.info)
    assert metrics(at)["Rated battles"] == "8"
    assert any("warm beats cold" in m.value for m in at.markdown)
    table = next(d.value for d in at.dataframe if "rating" in d.value.columns)
    assert list(table["contestant"]) == ["warm", "cold"] and table["rating"].iloc[1] == "1000 (the base, held there)"
    assert metrics(at)["Position consistency"] == "100%"
    assert len(at.expander) >= 8  # the drill-down: one per battle between the two
    at.button(key="board_write").click().run()
    assert not at.exception
    labels = [b.proto.label for b in at.get("download_button")]
    assert any(label.startswith("Download elo_comparison_") for label in labels)
    assert "Download report.html" in labels


def test_leaderboard_without_any_run_says_where_to_start():
    at = open_app("pages/leaderboard.py")
    assert any("Evaluate page" in i.value for i in at.info)


def test_arena_hides_the_models_until_the_vote_and_records_it(arena):  # noqa: F811
    persona_id, dataset = seed()
    job = service.start(plan_llm(persona_id, dataset, max_battles=2, trait_scores=False, criteria_traits=False))
    run_here(job)
    at = open_app("pages/arena.py")
    page_text = " ".join(m.value for m in at.markdown)
    assert "**A**" in page_text and "warm" not in page_text.split("**A**")[0]  # no model named before the vote
    assert not at.success
    at.text_input(key="arena_voter").set_value("ada").run()
    at.button(key="arena_vote_A").click().run()
    assert not at.exception
    assert "A was **" in at.success[0].value
    with session_scope() as session:
        [vote] = session.exec(select(Battle).where(Battle.judge == "human:ada")).all()
    assert vote.verdict == "a" and vote.job_id == job.id
    at.button(key="arena_next").click().run()
    assert not at.success and at.button(key="arena_vote_B")


def test_arena_asks_for_a_name_before_counting_a_vote(arena):  # noqa: F811
    persona_id, dataset = seed()
    run_here(service.start(plan_llm(persona_id, dataset, max_battles=1, trait_scores=False, criteria_traits=False)))
    at = open_app("pages/arena.py")
    at.button(key="arena_vote_Tie").click().run()
    assert any("Type your name" in e.value for e in at.error)
    assert service.votes(1) == 0


def test_evaluate_page_in_a_fresh_studio_says_where_prompts_come_from():
    at = open_app("pages/evaluate.py")
    assert any("validation split" in i.value for i in at.info) and not at.error
    at.text_area(key="eval_custom").set_value("How should we tell the team about the merger?").run()
    assert metrics(at)["Prompts"] == "1" and not at.error
