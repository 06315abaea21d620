"""Persona preference pairs: the base model's own plain reply to each prompt as *rejected*, the persona's
reply as *chosen*, added to the dataset's preference file so DPO (local and Together) trains on them."""

from __future__ import annotations

import json

import pytest
from sqlmodel import select

from pipeline.datasets import build, persona_pairs
from pipeline.db import session_scope
from pipeline.jobs import runfolder
from pipeline.llm import embedded
from pipeline.models import LLMCall
from pipeline.training import service
from tests.test_pages import open_app
from tests.test_training import dataset, ingested, run_job_process, tiny_config  # noqa: F401 - dataset: a fixture

pytestmark = pytest.mark.slow


def pairs_in(name: str) -> list[dict]:
    path = build.file_path(build.get_dataset(name), "dpo")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_the_plain_model_answers_each_prompt_once_and_dpo_trains_on_the_pairs(dataset):  # noqa: F811
    items = persona_pairs.prompts_and_replies(build.get_dataset(dataset))
    job = persona_pairs.start(dataset, f"local/{embedded.EMBEDDED_NAME}", max_tokens=8)
    # a previous attempt had answered fifteen prompts: a resume asks only for the rest
    folder = runfolder.run_dir(job.id)
    folder.mkdir(parents=True, exist_ok=True)
    earlier = [{"index": i, "rejected": f"Plain answer {i}."} for i in range(15)]
    (folder / persona_pairs.REJECTED).write_text("".join(json.dumps(r) + "\n" for r in earlier))

    process = run_job_process(job.id)
    assert process.wait(timeout=600) == 0, process.stderr.read()
    job = ingested(job.id)
    assert job.status == "succeeded", job.error
    with session_scope() as session:
        asked = session.exec(select(LLMCall).where(LLMCall.job_id == job.id)).all()
    assert len(asked) == len(items) - 15 and all(c.purpose == "persona pairs" for c in asked)

    pairs = pairs_in(dataset)
    persona = [p for p in pairs if p.get("source") == "persona vs plain"]
    assert len(persona) == len(items)
    assert [(p["prompt"], p["chosen"]) for p in persona] == items  # the persona's reply is always chosen
    assert persona[0]["rejected"] == "Plain answer 0."
    assert len(pairs) == len(persona) + 1  # the reviewer's edit pair is kept beside them
    counts = build.get_dataset(dataset).counts
    assert counts["persona_pairs"] == len(items) and counts["preference_pairs"] == len(items) + 1

    plan = service.plan(tiny_config(method="dpo"))
    assert plan.preference_pairs == len(items) + 1 and plan.can_start
    trained = service.start(tiny_config(method="dpo", name="tiny-prefers"))
    process = run_job_process(trained.id)
    assert process.wait(timeout=300) == 0, process.stderr.read()
    assert ingested(trained.id).status == "succeeded"


def test_datasets_page_makes_persona_pairs_from_a_saved_dataset(dataset):  # noqa: F811
    at = open_app("pages/datasets.py")
    at.tabs  # noqa: B018 - the saved-datasets tab is drawn with the others
    assert any("0 such pairs" in c.value for c in at.caption)
    assert at.selectbox(key="saved_pairs_model").value == f"local/{embedded.EMBEDDED_NAME}"
    at.button(key="saved_pairs_start").click().run()
    assert not at.exception
    [queued] = [s.value for s in at.success if "Queued job" in s.value]
    assert "answers 19 prompts" in queued
