"""A generation run as a non-engineer lives it: progress stage by stage, a stopped run's unfinished
examples (cancelled, out of counts, filterable, deletable, finished by a resume), review refused on
unfinished examples, defaults that fit the built-in model, and estimates from measured speed."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from sqlmodel import select

from pipeline import jobs, overview, personas
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.generation import foreground, runner, service
from pipeline.generation.config import GenerationConfig
from pipeline.models import Example
from pipeline.review import actions, filters
from tests.conftest import write_secrets
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.stage_replies import stage_aware
from tests.test_pages import open_app
from tests.test_training import dataset  # noqa: F401 - a fixture


@pytest.fixture
def persona():
    personas.seed_samples()
    return personas.get_persona("collaborative")


@pytest.fixture
def server():
    with FakeOpenAI(responder=stage_aware) as primary:
        write_secrets(f'[endpoints.primary]\napi_base = "{primary.api_base}"\nmodel = "gen"\n')
        yield primary


def config_for(persona, **overrides) -> GenerationConfig:
    values = {
        "persona_id": persona.id,
        "examples": 6,
        "concurrency": 1,
        "scenario_models": ["primary"],
        "document_models": ["primary"],
        "response_models": ["primary"],
        "timeout_s": 10,
    }
    return GenerationConfig(**{**values, **overrides})


def examples_of(job_id: int) -> list[Example]:
    with session_scope() as session:
        return list(session.exec(select(Example).where(Example.job_id == job_id).order_by(Example.slot)))


def stopped_run(persona, documents_before_stop: int = 3) -> tuple[int, list[str]]:
    """A job run the way the command line runs it, stopped (SIGTERM, as Stop sends) once that many
    documents have landed. Returns the job id and every progress message it showed."""
    job = foreground.start(config_for(persona), None, None)
    messages: list[str] = []

    def on_progress(done: int, total: int, message: str) -> None:
        messages.append(message)
        if f"documents {documents_before_stop}/" in message and not any("stop sent" in m for m in messages):
            messages.append("stop sent")
            os.kill(os.getpid(), signal.SIGTERM)  # the job context turns it into a cancel

    finished, _ = foreground.run(job, on_progress)
    assert finished.status == "cancelled"
    return job.id, messages


# --- progress, stage by stage ------------------------------------------------------------------


def test_a_stopped_run_shows_each_stage_done_of_total_never_planning(persona, server):
    job_id, messages = stopped_run(persona)

    view = service.view(job_id)
    # the third example had its scenario and document when Stop came; its response was never asked
    assert (view.stages.scenario, view.stages.document, view.stages.response) == (3, 3, 2)
    assert view.stages.total == 6 and view.ready == 2 and view.stages.cancelled == 4
    assert "scenarios 1/6 · documents 0/6 · responses 0/6" in messages  # work shows as it lands
    assert view.job.message.endswith("scenarios 3/6 · documents 3/6 · responses 2/6 · 4 cancelled")
    assert "planning" not in view.job.message


# --- a stopped run's examples --------------------------------------------------------------


def test_a_stopped_runs_unfinished_examples_are_cancelled_left_out_and_finished_by_resume(persona, server):
    job_id, _ = stopped_run(persona)
    made = examples_of(job_id)
    assert [e.status for e in made] == ["pending", "pending"] + ["cancelled"] * 4
    assert overview.studio_counts()["examples"] == 2  # Home counts finished work only
    everything = filters.ExampleFilter(job_id=job_id)
    assert filters.count(everything) == 2  # Review's "every status" leaves them out...
    assert filters.count(filters.ExampleFilter(job_id=job_id, statuses=["cancelled"])) == 4  # ...until asked for

    finished, _ = foreground.run(foreground.start(None, None, job_id), lambda *a: None)  # Resume

    assert finished.status == "succeeded"
    assert [e.status for e in examples_of(job_id)] == ["pending"] * 6
    assert overview.studio_counts()["examples"] == 6


def test_review_page_filters_and_deletes_a_stopped_runs_cancelled_examples(persona, server):
    job_id, _ = stopped_run(persona)
    at = open_app("pages/review.py")
    at.selectbox(key="review_run").set_value(job_id).run()
    at.multiselect(key="review_status").set_value(["cancelled"]).run()
    assert not at.exception
    assert any("**4 examples** match" in m.value for m in at.markdown)

    at.button(key="review_delete_cancelled").click().run()

    assert not at.exception
    assert [e.status for e in examples_of(job_id)] == ["pending", "pending"]
    assert any("No examples match" in i.value for i in at.info)


def test_review_actions_are_refused_on_an_example_still_being_generated(persona, server):
    config = config_for(persona, examples=2)
    job = jobs.submit("generation", config.model_dump(mode="json"))
    runner.ensure_slots(job.id, runner.prepare(config), config)  # planned, nothing made yet
    example = examples_of(job.id)[0]
    assert example.status == "generating"

    for act in (
        lambda: actions.set_status(example.id, "accepted"),
        lambda: actions.set_status(example.id, "rejected"),
        lambda: actions.set_gold_star(example.id, True),
        lambda: actions.set_rating(example.id, 4),
        lambda: actions.edit_response(example.id, "A better reply."),
    ):
        with pytest.raises(UserFacingError, match="is still being generated"):
            act()
    assert actions.bulk([example.id], "accept") == {"changed": 0, "skipped": 1}

    asyncio.run(runner.Generation(job.id, config, runner.prepare(config)).run())
    assert actions.set_status(example.id, "accepted").status == "accepted"  # once made, review as usual


# --- defaults and estimates -----------------------------------------------------------------


def test_generate_page_defaults_fit_the_built_in_model_and_say_why():
    at = open_app("pages/generate.py")
    assert at.slider(key="document_words_embedded").value == (50, 150)
    assert at.slider(key="response_words_embedded").value == 60
    assert at.slider(key="concurrency_embedded").value == 2
    assert any("The built-in model runs on this computer's CPU" in c.value for c in at.caption)

    at.multiselect(key="chain_scenario").set_value(["openai/gpt-4o-mini"])
    at.multiselect(key="chain_document").set_value(["openai/gpt-4o-mini"])
    at.multiselect(key="chain_response").set_value(["openai/gpt-4o-mini"]).run()
    assert at.slider(key="document_words_hosted").value == (500, 1000)  # a hosted model: the long defaults
    assert not any("The built-in model runs" in c.value for c in at.caption)


def seed_calls(model: str, tokens_per_s: float, count: int = 20) -> None:
    from pipeline.models import LLMCall

    with session_scope() as session:
        for _ in range(count):
            session.add(LLMCall(purpose="generation:document", model_used=model, completion_tokens=200,
                                latency_ms=int(200 / tokens_per_s * 1000)))  # fmt: skip


def test_the_time_estimate_comes_from_this_machines_recorded_speed(persona):
    from pipeline.generation import estimate
    from pipeline.settings import EMBEDDED_MODEL

    config = GenerationConfig(persona_id=persona.id, examples=6, document_words=(50, 150), response_words=60)
    first = estimate.estimate(config)
    assert first.rough and first.speed_note().startswith("First run: rough estimate")

    seed_calls(EMBEDDED_MODEL, tokens_per_s=20.0)  # four times the cautious first-run figure
    measured = estimate.estimate(config)

    assert not measured.rough and "20.0 tokens/s (measured here, 20 calls)" in measured.speed_note()
    assert measured.seconds == pytest.approx(first.seconds / 4, rel=0.01)
    seed_calls(EMBEDDED_MODEL, tokens_per_s=2.0, count=200)  # the recent calls count: the machine got slower
    assert estimate.estimate(config).seconds == pytest.approx(first.seconds * 2.5, rel=0.01)


def test_generate_page_shows_the_measured_time_and_a_run_over_an_hour_asks_first():
    from pipeline.settings import EMBEDDED_MODEL

    at = open_app("pages/generate.py")
    assert any(c.value.startswith("First run: rough estimate") for c in at.caption)
    seed_calls(EMBEDDED_MODEL, tokens_per_s=10.0)
    at.number_input[0].set_value(2000).run()  # ~2000 x 330 tokens at 10 tokens/s: about 18 h
    assert any("measured here" in c.value for c in at.caption)
    start = next(b for b in at.button if b.label == "Start generating")
    assert start.disabled
    confirm = at.checkbox(key="generation_confirm_long")
    assert confirm.label.startswith("Yes, start a run of about 18")

    confirm.check().run()

    assert not next(b for b in at.button if b.label == "Start generating").disabled
    at.number_input[0].set_value(10).run()  # a short run starts without asking
    assert not next(b for b in at.button if b.label == "Start generating").disabled
    assert not [c for c in at.checkbox if c.key == "generation_confirm_long"]


# --- the Train page's local estimate -----------------------------------------------------------


def test_local_training_time_comes_from_earlier_local_jobs_start_up_included(dataset):  # noqa: F811
    from datetime import timedelta

    from pipeline.models import Job, TrainingMetric, utcnow
    from pipeline.training import service as training
    from tests.test_training import TINY, tiny_config

    first = training.plan(tiny_config())
    assert first.rough and first.seconds >= training.DEFAULT_LOCAL_OVERHEAD_S  # loading alone takes that long

    earlier = jobs.submit("train_local", {"config": {"base_model": f"local/{TINY}"}})
    start = utcnow() - timedelta(minutes=10)
    with session_scope() as session:
        job = session.get(Job, earlier.id)
        job.status, job.started_at, job.finished_at = "succeeded", start, start + timedelta(seconds=100)
        session.add(job)
        for step in range(3):  # trained from 30 s to 70 s at 50 tokens/s; 60 s around it
            at = start + timedelta(seconds=30 + 20 * step)
            session.add(TrainingMetric(job_id=earlier.id, step=step, tokens_per_s=50.0, at=at))

    measured = training.plan(tiny_config(gallery_probes=0))

    assert not measured.rough
    assert measured.seconds == pytest.approx(60 + measured.billed_tokens / 50.0, rel=0.01)
    # the checkpoint gallery's replies (on by default) are counted on top
    assert training.plan(tiny_config()).seconds > measured.seconds + 1


def test_train_page_says_a_first_estimate_is_rough_and_asks_before_a_run_over_an_hour(dataset):  # noqa: F811
    from datetime import timedelta

    from pipeline.models import Job, TrainingMetric, utcnow

    at = open_app("pages/train.py")
    assert any(c.value.startswith("First run: rough estimate") for c in at.caption)
    assert not at.button(key="train_start").disabled

    slow = jobs.submit("train_local", {"config": {"base_model": ""}})  # any base: a machine this slow
    start = utcnow() - timedelta(hours=1)
    with session_scope() as session:
        job = session.get(Job, slow.id)
        job.status, job.started_at, job.finished_at = "succeeded", start, start + timedelta(seconds=100)
        session.add(job)
        session.add(TrainingMetric(job_id=slow.id, step=1, tokens_per_s=0.5, at=start + timedelta(seconds=50)))
    at.run()

    assert not any(c.value.startswith("First run") for c in at.caption)
    assert at.button(key="train_start").disabled
    at.checkbox(key="train_confirm_long").check().run()
    assert not at.button(key="train_start").disabled
    assert not at.exception
