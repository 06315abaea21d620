"""Cloud training that outlives a provider: OpenAI labelled as closing where a backend is picked, Together
the cloud default, and "Retrain on an open base": the same snapshot (by content hash) and config on a local
or Together base, followed by an evaluation of the two side by side."""

from __future__ import annotations

import argparse
import os
import stat
from datetime import date

import pytest
from sqlmodel import select

from pipeline import jobs
from pipeline.datasets import build, purge
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.models import Job, ModelEntry
from pipeline.registry import cli as registry_cli
from pipeline.registry import retrain
from pipeline.training import providers
from pipeline.training import service as training
from pipeline.training.config import load
from tests import eval_seed
from tests.test_pages import open_app
from tests.test_training import ingested, run_job_process
from tests.tiny_model import TINY

OPENAI_BASE = "gpt-4o-mini-2024-07-18"
OPENAI_REF = f"openai/ft:{OPENAI_BASE}:acme::abc123"
BEFORE, AFTER = date(2026, 12, 2), date(2027, 1, 14)  # today, and OpenAI's shutdown of these fine-tuned models
TINY_BASE = f"local/{TINY}"


@pytest.fixture
def dataset(models) -> build.Dataset:
    """`collab-eval`: distinct examples, so its held-out prompts are not dropped as memorised."""
    return build.get_dataset(eval_seed.seed()[1])


@pytest.fixture(autouse=True)
def today(monkeypatch):
    """Today is 2026-12-02 unless a test moves it."""
    monkeypatch.setattr(providers, "today", lambda: BEFORE)


def openai_model(dataset, name: str = "collab-gpt") -> ModelEntry:
    """A model fine-tuned at OpenAI, as the training job registered it: its job, config and dataset."""
    config = load(
        {
            "dataset": dataset.name,
            "backend": "openai",
            "base_model": OPENAI_BASE,
            "name": name,
            "epochs": 2,
            "learning_rate": 1e-4,
            "lora_r": 8,
            "max_seq_length": 512,
            "seed": 7,
        }  # fmt: skip
    ).model_dump(mode="json")
    with session_scope() as session:
        job = Job(kind="train_openai", status="succeeded", params={"config": config})
        session.add(job)
        session.flush()
        entry = ModelEntry(name=name, reference=OPENAI_REF, backend="openai", base_model=OPENAI_BASE,
                           persona_id=dataset.persona_id, job_id=job.id, dataset_id=dataset.id,
                           config=config)  # fmt: skip
        session.add(entry)
        session.flush()
        session.refresh(entry)
        return entry


def without(config: dict, *names: str) -> dict:
    return {k: v for k, v in config.items() if k not in names}


# --- labels ----------------------------------------------------------------------------------------


def test_openai_is_labelled_closing_with_both_dates_and_the_source_and_together_leads_the_cloud():
    for text in (providers.OPENAI_CLOSING, providers.BACKEND_HELP):
        assert all(part in text for part in ("closing", "2026-05-07", "2027-01-14", providers.DEPRECATIONS_URL))
    assert "closing" in providers.LABELS["openai"] and "2027-01-14" in providers.LABELS["openai"]
    assert providers.CLOUD[0] == providers.CLOUD_DEFAULT == "together"
    assert providers.shut_down("openai", OPENAI_BASE, on=BEFORE) is None
    assert "2027-01-14" in providers.shut_down("openai", "", OPENAI_REF, on=AFTER)
    assert providers.shut_down("openai", "gpt-4.1-nano-2025-04-14", on=AFTER) is None  # not announced
    assert providers.shut_down("together", "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference", on=AFTER) is None


def test_the_train_page_says_openai_is_closing_and_offers_together_first_among_the_cloud(dataset):
    at = open_app("pages/train.py")
    radio = at.radio(key="train_backend")
    assert radio.value == "local"  # the built-in model stays the page's default
    assert radio.help == providers.OPENAI_CLOSING  # beside the choice: closing, both dates, the source
    assert radio.options == ["This machine", "Together (needs a key)",
                             "OpenAI (closing: shuts down 2027-01-14) (needs a key)"]  # fmt: skip
    assert not any("OpenAI fine-tuning is closing" in w.value for w in at.warning)
    radio.set_value("openai").run()
    assert not at.exception
    [notice] = [w.value for w in at.warning if "OpenAI fine-tuning is closing" in w.value]
    assert "2026-05-07" in notice and "2027-01-14" in notice and providers.DEPRECATIONS_URL in notice


def test_the_train_command_says_openai_is_closing(dataset, capsys):
    from pipeline.training import cli as training_cli

    parser = argparse.ArgumentParser(prog="pipeline")
    training_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["train", "--dataset", dataset.name, "--backend", "openai", "--prepare-only"])
    assert args.func(args) == 0
    assert f"note: {providers.OPENAI_CLOSING}" in capsys.readouterr().err
    args = parser.parse_args(["train", "--dataset", dataset.name, "--backend", "together", "--prepare-only"])
    assert args.func(args) == 0 and "closing" not in capsys.readouterr().err


# --- plan and start --------------------------------------------------------------------------------


def test_open_bases_are_the_built_in_model_local_models_and_togethers_catalog(models):
    bases = retrain.open_bases()
    assert bases["local"][0] == "local/smollm2-135m-instruct" and TINY_BASE in bases["local"]
    assert bases["together"] == ["meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"]


def test_retrain_on_open_base_creates_the_job_with_the_same_dataset_hash_and_config(dataset):
    old = openai_model(dataset)
    plan = retrain.plan_retrain(old.name, "local", TINY_BASE)
    assert (plan.dataset, plan.dataset_hash) == ("collab-eval", dataset.content_hash)
    assert plan.can_start and set(plan.changed) == {"backend", "base_model", "name"}
    assert plan.config.name == f"collab-gpt-on-{TINY}"
    assert plan.old_answers is False and "OPENAI_API_KEY" in plan.old_left_out  # no key in the tests

    job = retrain.start_retrain(old.id, "local", TINY_BASE, started_by="ada")

    assert (job.kind, job.status, job.started_by) == ("train_local", "queued", "ada")
    origin = job.params["retrain"]
    assert origin["dataset_hash"] == dataset.content_hash == retrain.snapshot_hash(build.get_dataset("collab-eval"))
    assert (origin["model_id"], origin["dataset"]) == (old.id, "collab-eval")
    new = job.params["config"]
    assert (new["backend"], new["base_model"], new["dataset"]) == ("local", TINY_BASE, "collab-eval")
    assert without(new, "backend", "base_model", "name") == without(old.config, "backend", "base_model", "name")


def test_together_is_refused_without_its_key_and_planned_with_it(dataset, monkeypatch):
    old = openai_model(dataset)
    plan = retrain.plan_retrain(old.id, "together")
    assert plan.config.base_model == "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"
    assert not plan.can_start and any("TOGETHER_API_KEY" in p for p in plan.summary()["problems"])
    with pytest.raises(UserFacingError, match="TOGETHER_API_KEY"):
        retrain.start_retrain(old.id, "together")
    monkeypatch.setenv("TOGETHER_API_KEY", "tg-test")
    assert retrain.plan_retrain(old.id, "together").can_start
    with pytest.raises(UserFacingError, match="choose local or together"):
        retrain.plan_retrain(old.id, "openai")


def test_retrain_is_refused_when_the_snapshot_changed_or_is_gone_or_was_never_recorded(dataset):
    old = openai_model(dataset)
    train_file = build.file_path(dataset, "openai", "train")
    original = train_file.read_text(encoding="utf-8")
    os.chmod(train_file, stat.S_IRUSR | stat.S_IWUSR)
    train_file.write_text("".join(original.splitlines(keepends=True)[1:]), encoding="utf-8")  # one example less
    with pytest.raises(UserFacingError, match="no longer matches its content hash"):
        retrain.plan_retrain(old.id, "local", TINY_BASE)
    assert not jobs.list_jobs()[0].params.get("retrain")  # only the old model's job: nothing was queued

    train_file.unlink()
    with pytest.raises(UserFacingError, match="train file is gone"):
        retrain.plan_retrain(old.id, "local", TINY_BASE)

    purge.delete_dataset("collab-eval", "collab-eval")
    with pytest.raises(UserFacingError, match=r"\(collab-eval\) has been deleted"):
        retrain.start_retrain(old.id, "local", TINY_BASE)

    with session_scope() as session:
        bare = ModelEntry(name="bare", reference="local/bare", backend="local", config={"epochs": 1}, job_id=None)
        session.add(bare)
    with pytest.raises(UserFacingError, match="bare has no recorded dataset"):
        retrain.plan_retrain("bare", "local")
    with pytest.raises(UserFacingError, match="was not fine-tuned by the studio"):
        retrain.plan_retrain("smollm2-135m-instruct", "local")


# --- the evaluation that follows -------------------------------------------------------------------


def registered(job: Job, name: str) -> ModelEntry:
    """The new model as the training job registers it (without training: the hook is what is tested)."""
    config = job.params["config"]
    with session_scope() as session:
        entry = ModelEntry(name=name, reference=f"local/{name}", backend="local", base_model=config["base_model"],
                           persona_id=None, job_id=job.id, dataset_id=build.get_dataset(config["dataset"]).id,
                           config=config)  # fmt: skip
        session.add(entry)
        session.flush()
        session.refresh(entry)
        return entry


def evaluations() -> list[Job]:
    with session_scope() as session:
        return list(session.exec(select(Job).where(Job.kind == "evaluation").order_by(Job.id)).all())


def test_a_succeeded_retrain_queues_the_evaluation_of_new_against_old_while_the_old_answers(dataset, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    old = openai_model(dataset)
    job = retrain.start_retrain(old.id, "local", TINY_BASE)
    new = registered(job, job.params["config"]["name"])
    log: list[str] = []

    made = retrain.after_training(job.id, new, log.append)

    assert made is not None, log
    assert made.kind == "evaluation" and made.status == "queued"
    assert made.params["contestants"] == [new.reference, OPENAI_REF]
    assert made.params["dataset"] == "collab-eval" and made.params["judge"] == "offline"
    assert made.params["persona_id"] == old.persona_id and made.params["retrain"]["training_job"] == job.id
    assert made.name == f"Retrain check: {new.name} vs collab-gpt"
    assert f"queued evaluation job {made.id}" in log[-1]
    assert retrain.after_training(job.id, new, log.append) is None and len(evaluations()) == 1  # once only
    plain = training.start(retrain.plan_retrain(old.id, "local", TINY_BASE).config)  # no "retrain" parameter
    assert retrain.after_training(plain.id, new, log.append) is None  # an ordinary training: nothing follows


def test_past_its_shutdown_the_old_model_is_left_out_and_the_new_one_meets_its_base(dataset, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setattr(providers, "today", lambda: AFTER)
    old = openai_model(dataset)
    plan = retrain.plan_retrain(old.id, "local", TINY_BASE)
    assert not plan.old_answers and "shut down gpt-4o-mini" in plan.old_left_out and "2027-01-14" in plan.evaluation
    job = retrain.start_retrain(old.id, "local", TINY_BASE)
    new = registered(job, job.params["config"]["name"])
    log: list[str] = []

    made = retrain.after_training(job.id, new, log.append)

    assert made.params["contestants"] == [TINY_BASE, new.reference]
    assert "collab-gpt left out: OpenAI shut down gpt-4o-mini" in made.name and "2027-01-14" in made.name
    assert any("collab-gpt left out" in line and "2027-01-14" in line for line in log)


def test_a_real_retrain_registers_the_new_model_then_queues_its_evaluation(dataset):
    """End to end on the tiny model, in a job process as the monitor starts it: no OpenAI key here, so the old
    model is left out and the new one meets its base."""
    old = openai_model(dataset)
    job = retrain.start_retrain(old.id, "local", TINY_BASE)
    process = run_job_process(job.id)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    assert ingested(job.id).status == "succeeded"
    with session_scope() as session:
        new = session.exec(select(ModelEntry).where(ModelEntry.job_id == job.id)).one()
    assert (new.reference, new.dataset_id) == (f"local/collab-gpt-on-{TINY}", dataset.id)
    [made] = evaluations()
    assert made.params["contestants"] == [TINY_BASE, new.reference] and made.status == "queued"
    assert "OPENAI_API_KEY" in made.name


# --- command line and page -------------------------------------------------------------------------


def models_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="pipeline")
    registry_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["models", *argv])
    return args.func(args)


def test_models_retrain_command_plans_then_queues(dataset, capsys):
    old = openai_model(dataset)
    assert models_cli("retrain", old.name, "--backend", "local", "--base", TINY_BASE, "--plan-only") == 0
    err = capsys.readouterr().err
    assert f"dataset collab-eval (content hash {dataset.content_hash[:12]}" in err and "backend openai → local" in err
    assert [j.kind for j in jobs.list_jobs()] == ["train_openai"]  # the plan started nothing

    assert models_cli("retrain", old.name, "--base", TINY_BASE) == 0
    out = capsys.readouterr().out
    [job] = [j for j in jobs.list_jobs() if j.kind == "train_local"]
    assert f"Queued training job {job.id}" in out and job.params["retrain"]["dataset_hash"] == dataset.content_hash
    with pytest.raises(UserFacingError, match="TOGETHER_API_KEY"):
        models_cli("retrain", old.name, "--backend", "together")


def test_the_models_page_shows_the_retrain_plan_and_queues_the_job(dataset):
    old = openai_model(dataset)
    at = open_app("pages/models.py")
    at.selectbox(key="models_pick").set_value(old.name).run()
    at.selectbox(key="models_retrain_local").set_value(TINY_BASE).run()
    assert not at.exception
    shown = " ".join(m.value for m in at.markdown)
    assert f"content hash `{dataset.content_hash[:12]}`" in shown and f"collab-gpt-on-{TINY}" in shown
    assert "collab-gpt left out: its provider key (OPENAI_API_KEY) is not set" in shown
    settings = next(d.value for d in at.dataframe if "setting" in d.value.columns)
    assert dict(zip(settings["setting"], settings["value"], strict=True))["epochs"] == "2"

    at.button(key="models_retrain").click().run()

    assert not at.exception
    [job] = [j for j in jobs.list_jobs() if j.kind == "train_local"]
    [success] = [s.value for s in at.success]
    assert success.startswith(f"Queued training job {job.id}.") and "evaluated against its base" in success
    assert job.params["retrain"]["model"] == "collab-gpt"


def test_the_models_page_says_why_a_model_cannot_be_retrained():
    at = open_app("pages/models.py")  # only the embedded model
    assert not at.exception
    assert any("was not fine-tuned by the studio" in i.value for i in at.info)
