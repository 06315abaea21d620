"""Honest numbers: one battle count on every page, no rating from too few battles, Home and Models showing
the Leaderboard's own figure, charts whose axes fit their data, and cached reads that see new battles."""

from __future__ import annotations

import json
import random

from pipeline import jobs
from pipeline.db import session_scope
from pipeline.evaluation import leaderboard, service
from pipeline.models import Battle, Job, ModelEntry, TrainingMetric, utcnow
from tests.eval_seed import seed
from tests.test_evaluation import arena, plan_llm, run_here  # noqa: F401 - arena is a fixture
from tests.test_pages import open_app

BASE, TUNED = "local/smollm2-135m-instruct", "local/collab-ft"


def seeded_run(battles: dict[tuple[str, str], list[str]], anchor: str = BASE, seed_: int = 0) -> int:
    """A finished offline-judged evaluation whose battles are `battles`: per pair, one verdict each."""
    contestants = sorted({name for pair in battles for name in pair})
    with session_scope() as session:
        job = Job(kind="evaluation", name="numbers", status="succeeded", finished_at=utcnow(),
                  params={"anchor": anchor, "contestants": contestants, "judge": "offline"})  # fmt: skip
        session.add(job)
        session.flush()
        prompt = 0
        for (a, b), verdicts in battles.items():
            for verdict in verdicts:
                prompt += 1
                session.add(Battle(job_id=job.id, prompt_id=prompt, prompt=f"Prompt {prompt}", prompt_group="held-out",
                                   contestant_a=a, contestant_b=b, response_a=f"{a} says", response_b=f"{b} says",
                                   judge="offline:similarity", verdict=verdict, order="both"))  # fmt: skip
        return job.id


def mixed(n: int, wins: float, seed_: int = 0) -> list[str]:
    rng = random.Random(seed_)
    return ["a" if rng.random() < wins else rng.choice(["b", "tie"]) for _ in range(n)]


def metrics(at) -> dict[str, str]:
    return {m.label: str(m.value) for m in at.metric}


def page_text(at) -> str:
    parts = [e.value for kind in ("markdown", "info", "warning", "caption", "success") for e in at.get(kind)]
    return "\n".join(str(p) for p in parts)


def test_three_battles_show_not_enough_battles_instead_of_a_zero_width_rating():
    seeded_run({(TUNED, BASE): ["a", "a", "a"]})  # the user's case: 2112 (2112–2112), 100% (100%–100%)
    at = open_app("pages/leaderboard.py")
    assert not at.exception
    assert metrics(at)["Rated battles"] == "3"
    assert any("not enough battles yet (3 of 30) for" in w.value for w in at.warning)
    table = next(d.value for d in at.dataframe if "rating" in d.value.columns)
    assert set(table["rating"]) == {"not enough battles yet (3 of 30)"}
    assert list(table["battles"]) == [3, 3]
    text = page_text(at)
    assert "2112" not in text and "100%" not in text and "of the time" not in text
    assert not at.get("plotly_chart") or all("Ratings, with" not in c.proto.spec for c in at.get("plotly_chart"))
    assert any("from 3 battles (the judge and human votes)" in c.value for c in at.caption)

    home = open_app()
    assert not home.exception
    headline = next(i.value for i in home.info if "Last evaluation" in i.value)
    assert "not enough battles yet (3 of 30)" in headline and "from 3 battles" in headline
    assert "2112" not in headline


def test_the_minimum_is_a_setting(monkeypatch):
    monkeypatch.setenv("STUDIO_MIN_BATTLES", "3")
    seeded_run({(TUNED, BASE): ["a", "a", "b"]})
    at = open_app("pages/leaderboard.py")
    assert not at.exception
    assert not any("not enough battles" in w.value for w in at.warning)
    assert any(f"{TUNED} beats {BASE}" in m.value for m in at.markdown)


def test_a_head_to_head_claim_needs_the_minimum_between_that_pair_not_only_per_contestant():
    other = "local/other-ft"
    # every contestant has 40 or more battles, but the tuned model met the base only 10 times
    seeded_run({(TUNED, other): mixed(30, 0.6), (other, BASE): mixed(30, 0.6, 1), (TUNED, BASE): mixed(10, 0.7, 2)})
    at = open_app("pages/leaderboard.py")
    assert not at.exception
    table = next(d.value for d in at.dataframe if "rating" in d.value.columns)
    assert not any("not enough" in str(r) for r in table["rating"])  # ratings: each contestant has its 30
    said = [m.value for m in at.markdown]
    assert any(f"{TUNED} against {BASE}: not enough battles between {TUNED} and {BASE} yet (10 of 30)" in m
               for m in said)  # fmt: skip
    assert any(f"{other} beats {BASE}" in m for m in said)  # 30 battles between them: said with its interval
    assert not any(f"{TUNED} beats {BASE}" in m for m in said)


def test_home_and_models_show_the_leaderboards_own_figure():
    job_id = seeded_run({(TUNED, BASE): mixed(40, 0.7)})
    with session_scope() as session:  # as update_registry leaves it: a snapshot that later votes make stale
        session.add(ModelEntry(name="collab-ft", reference=TUNED, backend="local", metrics={"quality": {"plain": {
            "evaluation_job": job_id, "contestant": TUNED, "rating": 1400.0, "lower": 1390.0, "upper": 1410.0,
            "win_rate_vs_base": 0.998}}}))  # fmt: skip
    board = open_app("pages/leaderboard.py")
    assert not board.exception and metrics(board)["Rated battles"] == "40"
    statement = next(m.value for m in board.markdown if f"{TUNED} beats {BASE}" in m.value)
    figure = statement.split(" of the time")[0].rsplit(" ", 1)[1] + statement.split(" of the time")[1].rstrip(".")
    table = next(d.value for d in board.dataframe if "rating" in d.value.columns)
    rating = table[table["contestant"] == TUNED]["rating"].iloc[0]  # e.g. "1148 (1040–1272)"

    home = open_app()
    headline = next(i.value for i in home.info if "Last evaluation" in i.value)
    assert f"{TUNED} leads at {rating}" in headline
    assert f"beating {BASE} {figure.replace(' (', ' of the time (', 1)}" in headline
    assert "from 40 battles (the judge and human votes)" in headline

    models = open_app("pages/models.py")
    assert not models.exception
    row = models.dataframe[0].value.set_index("name").loc["collab-ft"]
    assert row["rating (95%)"] == rating and row["beats base"] == figure
    assert row["rated from"] == "from 40 battles (the judge and human votes)"
    assert "0.998" not in str(list(row))


def test_one_battle_count_on_evaluate_live_monitoring_leaderboard_home_and_models(arena):  # noqa: F811
    persona_id, dataset = seed()
    job = service.start(plan_llm(persona_id, dataset, max_battles=3))
    run_here(job)
    with session_scope() as session:
        session.add(ModelEntry(name="warm-ft", reference="warm", backend="openai", metrics={"quality": {"plain": {
            "evaluation_job": job.id, "contestant": "warm"}}}))  # fmt: skip

    evaluate = open_app("pages/evaluate.py")
    table = next(d.value for d in evaluate.dataframe if "run" in d.value.columns)
    row = table[table["run"] == job.id].iloc[0]
    assert row["battles"] == 3 and row["done"] == "3 of 3 battles"

    monitor = open_app("pages/monitor.py")
    monitor.selectbox(key="monitor_job").select(job.id).run()
    assert not monitor.exception
    assert any(p.proto.text.startswith("3 of 3 battles") for p in monitor.get("progress"))
    assert monitor.dataframe[0].value.set_index("id").loc[job.id, "done"] == "3 / 3 battles"

    board = open_app("pages/leaderboard.py")
    assert metrics(board)["Rated battles"] == "3"
    home = open_app()
    assert "from 3 battles" in next(i.value for i in home.info if "Last evaluation" in i.value)
    models = open_app("pages/models.py")
    assert models.dataframe[0].value.set_index("name").loc["warm-ft", "rated from"].startswith("from 3 battles")
    assert leaderboard.battle_count(job.id) == 3 == jobs.get(job.id).progress_done


def test_a_new_battle_shows_on_the_next_rerun_through_the_cache(arena):  # noqa: F811
    persona_id, dataset = seed()
    job = service.start(plan_llm(persona_id, dataset, max_battles=3))
    run_here(job)
    with session_scope() as session:
        session.add(ModelEntry(name="warm-ft", reference="warm", backend="openai", metrics={"quality": {"plain": {
            "evaluation_job": job.id, "contestant": "warm"}}}))  # fmt: skip
    at = open_app("pages/leaderboard.py")
    models = open_app("pages/models.py")
    evaluate = open_app("pages/evaluate.py")
    assert metrics(at)["Rated battles"] == "3"
    assert leaderboard.board(job.id) is leaderboard.board(job.id)  # a rerun with nothing new reads the cache
    for voter in ("ana", "ben"):
        service.vote(service.next_match(job.id, voter), "A", voter)
    for page in (at, models, evaluate):
        page.run()
        assert not page.exception
    assert metrics(at)["Rated battles"] == "5" and metrics(at)["Human votes"] == "2"
    table = next(d.value for d in evaluate.dataframe if "run" in d.value.columns)
    assert table[table["run"] == job.id]["battles"].iloc[0] == 5
    row = models.dataframe[0].value.set_index("name").loc["warm-ft"]
    assert row["rated from"] == "from 5 battles (the judge and human votes)"
    assert row["rating (95%)"] == "not enough battles yet (5 of 30)"


def test_a_training_run_with_one_logged_step_draws_a_point_on_a_readable_scale():
    with session_scope() as session:
        job = Job(kind="train_local", name="one step", status="running", progress_done=1, progress_total=10,
                  progress_unit="steps", started_at=utcnow(), heartbeat_at=utcnow())  # fmt: skip
        session.add(job)
        session.flush()
        session.add(TrainingMetric(job_id=job.id, step=1, loss=2.5, learning_rate=0.0, tokens_per_s=120.0))
    at = open_app("pages/monitor.py")
    assert not at.exception
    [chart] = at.get("plotly_chart")
    layout = json.loads(chart.proto.spec)["layout"]
    assert layout["xaxis"]["range"] == [0, 2] and layout["xaxis2"]["range"] == [0, 2]  # step 1 mid-axis
    assert layout["yaxis"]["range"] == [1.25, 3.75]  # loss 2.5 mid-axis
    assert layout["yaxis2"]["range"] == [0, 1]  # a learning rate of 0: not -1..1
    assert layout["yaxis3"]["range"] == [60, 180]  # 120 tokens/s mid-axis


def test_compare_leaves_out_figures_that_are_zero_for_every_model_and_says_so():
    from pipeline import personas
    from tests.test_registry import add_model

    personas.seed_samples()
    add_model("collab-ft", personas.get_persona("collaborative").id)
    at = open_app("pages/models.py")
    assert not at.exception
    assert at.multiselect(key="models_compare").value == ["smollm2-135m-instruct", "collab-ft"]
    # both are local: $0 per 1M tokens each, which drew a chart of two invisible bars
    assert any("Not drawn, 0 for every model picked: $ per 1M output tokens." in c.value for c in at.caption)
    [chart] = at.get("plotly_chart")
    titles = [a["text"] for a in json.loads(chart.proto.spec)["layout"]["annotations"]]
    assert "$ per 1M output tokens" not in titles and "Size on disk (MB)" in titles
    drawn: dict[str, list] = {}
    for trace in json.loads(chart.proto.spec)["data"]:
        drawn.setdefault(trace.get("xaxis", "x"), []).extend(trace["y"])
    assert all(any(drawn_values) for drawn_values in drawn.values()), drawn  # no small chart is empty or all zero


def test_the_leaderboard_says_in_words_when_persona_likelihood_ranks_the_contestants_otherwise():
    from pipeline.jobs import runfolder

    job_id = seeded_run({(TUNED, BASE): mixed(40, 0.8)})  # the judge: the fine-tuned model well ahead
    folder = runfolder.run_dir(job_id)
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {"contestant": BASE, "mean": -3.4, "lower": -3.5, "upper": -3.3, "examples": 4, "tokens": 200},
        {"contestant": TUNED, "mean": -3.9, "lower": -4.0, "upper": -3.8, "examples": 4, "tokens": 200},
    ]
    (folder / "likelihood.json").write_text(json.dumps(rows))
    at = open_app("pages/leaderboard.py")
    assert not at.exception
    said = [i.value for i in at.info if "rank the contestants differently" in i.value]
    assert said, [i.value for i in at.info]
    assert f"the judge puts {TUNED} first" in said[0] and f"persona likelihood puts {BASE} first" in said[0]
    assert "They measure different things" in said[0]

    rows.reverse()
    rows[0]["mean"], rows[1]["mean"] = -3.2, -3.9  # now both put the fine-tuned model first
    (folder / "likelihood.json").write_text(json.dumps(rows))
    at.run()
    assert not any("rank the contestants differently" in i.value for i in at.info)
