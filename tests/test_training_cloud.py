"""Cloud fine-tuning through the providers' real SDKs against their documented HTTP API, served on
127.0.0.1: upload, create, status and events while it runs, the result file, cancel, failures."""

from __future__ import annotations

import json
import threading

import pytest
from sqlmodel import select

from pipeline import jobs, personas
from pipeline.datasets import build
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.jobs import foreground, ingest, runfolder
from pipeline.jobs.context import JobContext
from pipeline.models import Job, ModelEntry, TrainingMetric
from pipeline.review.filters import ExampleFilter
from pipeline.training import cloud, openai_backend, service
from pipeline.training import config as cfg
from tests.fakes.openai_finetune import FakeOpenAIFineTuning
from tests.fakes.together_finetune import FakeTogetherFineTuning
from tests.seed import add_examples


@pytest.fixture
def dataset(monkeypatch) -> str:
    monkeypatch.setenv("STUDIO_CLOUD_POLL_S", "0.01")
    personas.seed_samples()
    persona = personas.get_persona("collaborative")
    add_examples(persona.id, 12, status="accepted")
    build.save("cloud-set", build.preview(ExampleFilter(persona_id=persona.id, statuses=["accepted"]), 0.2))
    return "cloud-set"


@pytest.fixture
def serve(monkeypatch):
    """Start a fake provider and point its SDK at it: serve(FakeClass, {ENV: value or a function of the server})."""
    started = []

    def start(fake_class, env: dict, **options):
        server = fake_class(**options).__enter__()
        started.append(server)
        for name, value in env.items():
            monkeypatch.setenv(name, value(server) if callable(value) else value)
        return server

    yield start
    for server in started:
        server.__exit__()


@pytest.fixture
def openai_api(serve):
    return lambda **options: serve(
        FakeOpenAIFineTuning, {"OPENAI_BASE_URL": lambda s: s.base_url, "OPENAI_API_KEY": "sk-test"}, **options
    )


def run_here(job: Job) -> tuple[Job, str]:
    """The job kind's function in this process, with a real JobContext, as the job process runs it."""
    job = foreground.claim(job.id)  # the job runs here, as a command line runs it
    ctx = JobContext(job.id, runfolder.run_dir(job.id), job.kind, attempt=job.attempt)
    ctx.start()
    ctx.log(f"job {job.id} ({job.kind}) started")
    try:
        jobs.kind_function(job.kind)(ctx, dict(job.params))
    except UserFacingError as exc:
        ctx.finish("failed", str(exc))
    else:
        ctx.finish("cancelled" if ctx.cancelled() else "succeeded")
    with session_scope() as session:
        ingest.ingest_job(session, session.get(Job, job.id))
    return jobs.get(job.id), (runfolder.run_dir(job.id) / runfolder.LOG).read_text()


def openai_config(dataset: str, **values) -> cfg.TrainingConfig:
    return cfg.load({"dataset": dataset, "backend": "openai", "epochs": 2, "suffix": "collab", **values})


def test_an_openai_job_uploads_follows_the_events_and_registers_the_model(dataset, openai_api):
    api = openai_api()
    job, log = run_here(service.start(openai_config(dataset)))
    assert job.status == "succeeded", job.error
    assert [p for m, p in api.requests if m == "POST"][:3] == ["/files", "/files", "/fine_tuning/jobs"]
    created = api.jobs["ftjob-0001"]
    assert created["hyperparameters"] == {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": "auto"}
    assert created["validation_file"] == "file-0002" and created["suffix"] == "collab"
    with session_scope() as session:
        entry = session.exec(select(ModelEntry)).one()
        metrics = session.exec(select(TrainingMetric).where(TrainingMetric.job_id == job.id)).all()
    assert entry.reference == "openai/ft:gpt-4o-mini-2024-07-18:org-test:collab:AbC123"
    assert entry.backend == "openai" and entry.metrics["trained_tokens"] == 12345
    assert [m.step for m in metrics] == [1, 2, 3, 4] and metrics[0].loss == 2.0 and metrics[1].val_loss == 1.1
    assert "Fine-tuning job started" in log and "The job has successfully completed" in log
    info = json.loads((runfolder.run_dir(job.id) / cloud.INFO).read_text())
    assert (info["job_id"], info["status"]) == ("ftjob-0001", "succeeded")
    assert "sk-test" not in log and "sk-test" not in json.dumps(info)


def test_provider_errors_end_the_job_failed_in_plain_words(dataset, openai_api):
    openai_api(reject_upload="Invalid file format. Line 1, key 'messages': expected a list")
    job, _ = run_here(service.start(openai_config(dataset)))
    assert job.status == "failed"
    assert job.error == (
        "OpenAI could not upload the train file (400): Invalid file format. Line 1, key 'messages': expected a list"
    )
    openai_api(allowed_models={"gpt-4.1-mini-2025-04-14"})
    job, _ = run_here(service.start(openai_config(dataset)))
    assert "gpt-4o-mini-2024-07-18 is not available for fine-tuning" in job.error
    api = openai_api(outcome="failed")
    job, log = run_here(service.start(openai_config(dataset)))
    assert job.status == "failed" and "exceeded your current quota" in job.error
    assert len(api.jobs) == 1


def test_a_bad_key_and_a_missing_key_are_explained(dataset, openai_api, monkeypatch):
    openai_api()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-bad")
    job, _ = run_here(service.start(openai_config(dataset)))
    assert job.error == "OpenAI refused the API key while trying to upload the train file; check OPENAI_API_KEY."
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(UserFacingError, match="This needs OPENAI_API_KEY: put it in .*secrets.toml"):
        service.start(openai_config(dataset))  # refused before launch, with where to put the key
    # a key removed after launch: the job itself says so
    queued = jobs.submit("train_openai", {"config": openai_config(dataset).model_dump(mode="json")})
    job, _ = run_here(queued)
    assert "needs OPENAI_API_KEY" in job.error


def test_cancelling_an_openai_job_cancels_it_at_the_provider(dataset, openai_api, monkeypatch):
    api = openai_api()
    monkeypatch.setenv("STUDIO_CLOUD_POLL_S", "0.2")
    job = service.start(openai_config(dataset))
    job = foreground.claim(job.id)  # the job runs here, as a command line runs it
    ctx = JobContext(job.id, runfolder.run_dir(job.id), job.kind, attempt=job.attempt)
    ctx.start()
    threading.Timer(0.5, ctx._cancel.set).start()  # what SIGTERM from the monitor does
    openai_backend.run(ctx, dict(job.params))
    assert ctx.cancelled() and api.jobs["ftjob-0001"]["status"] == "cancelled"
    assert ("POST", "/fine_tuning/jobs/ftjob-0001/cancel") in api.requests


# --- Together ----------------------------------------------------------------------------------------


@pytest.fixture
def together_api(serve):
    return lambda **options: serve(
        FakeTogetherFineTuning, {"TOGETHER_BASE_URL": lambda s: s.root, "TOGETHER_API_KEY": "tg-test"}, **options
    )


def together_config(dataset: str, **values) -> cfg.TrainingConfig:
    return cfg.load({"dataset": dataset, "backend": "together", "epochs": 3, "learning_rate": 1e-5,
                     "suffix": "collab", **values})  # fmt: skip


def test_a_together_lora_job_uploads_follows_metrics_and_registers_the_model(dataset, together_api):
    api = together_api()
    job, log = run_here(service.start(together_config(dataset)))
    assert job.status == "succeeded", job.error
    [created] = api.created
    assert created["model"] == "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference" and created["n_epochs"] == 3
    assert created["training_type"]["type"] == "Lora" and created["training_type"]["lora_r"] == 16
    assert created["learning_rate"] == 1e-5 and created["suffix"] == "collab"
    assert created["training_file"] == "file-0001" and created["validation_file"] == "file-0002"
    assert set(api.uploads) == {"file-0001", "file-0002"}  # both files really arrived
    with session_scope() as session:
        entry = session.exec(select(ModelEntry)).one()
        metrics = session.exec(select(TrainingMetric).where(TrainingMetric.job_id == job.id)).all()
    assert entry.reference == "together_ai/user-test/Meta-Llama-3.1-8B-Instruct-Reference-collab-a1b2c3"
    assert [m.step for m in metrics] == [1, 2, 3, 4] and metrics[0].loss == 1.5 and metrics[1].val_loss == 0.85
    assert "Training started" in log
    assert "Together estimates $0.87 for 3,000 training tokens" in log  # its own estimate, before the job exists
    estimated, created = ("POST", "/v1/fine-tunes/estimate-price"), ("POST", "/v1/fine-tunes")
    assert api.requests.index(estimated) < api.requests.index(created)
    info = json.loads((runfolder.run_dir(job.id) / cloud.INFO).read_text())
    assert info["job_id"] == "ft-0001" and "tg-test" not in json.dumps(info) and "tg-test" not in log


def test_together_errors_are_explained(dataset, together_api, monkeypatch):
    together_api(outcome="error")
    job, _ = run_here(service.start(together_config(dataset)))
    assert job.status == "failed" and "the training file has no valid examples" in job.error
    together_api(models=("some/other-model",))
    job, _ = run_here(service.start(together_config(dataset)))
    assert job.status == "failed" and "is not available for fine-tuning" in job.error
    api = together_api(credit=0.5)
    job, _ = run_here(service.start(together_config(dataset)))
    assert job.status == "failed" and "Together estimates this job at $0.87" in job.error and not api.created
    monkeypatch.setenv("TOGETHER_API_KEY", "bad-key")
    job, _ = run_here(service.start(together_config(dataset)))
    assert "Together refused the API key" in job.error


def test_cancelling_a_together_job_cancels_it_there(dataset, together_api, monkeypatch):
    api = together_api()
    monkeypatch.setenv("STUDIO_CLOUD_POLL_S", "0.2")
    job = service.start(together_config(dataset))
    job = foreground.claim(job.id)  # the job runs here, as a command line runs it
    ctx = JobContext(job.id, runfolder.run_dir(job.id), job.kind, attempt=job.attempt)
    ctx.start()
    threading.Timer(0.5, ctx._cancel.set).start()
    jobs.kind_function(job.kind)(ctx, dict(job.params))
    assert api.jobs["ft-0001"]["status"] == "cancelled"
    assert ("POST", "/v1/fine-tunes/ft-0001/cancel") in api.requests


def test_together_dpo_uploads_the_preference_pairs_in_its_format(dataset, together_api):
    from pipeline.review import actions

    api = together_api()
    persona = personas.get_persona("collaborative")
    [first, *_] = add_examples(persona.id, 3, status="accepted", start=100)
    actions.edit_response(first, "A kinder reply that asks what the reader needs.", "ada")
    build.save("cloud-dpo", build.preview(ExampleFilter(persona_id=persona.id, statuses=["accepted"]), 0.0))
    job, _ = run_here(service.start(together_config("cloud-dpo", method="dpo")))
    assert job.status == "succeeded", job.error
    assert api.created[0]["training_method"]["method"] == "dpo"
    uploaded = api.uploads["file-0001"].decode()
    row = json.loads(uploaded.splitlines()[0])
    assert row["preferred_output"][0]["content"] == "A kinder reply that asks what the reader needs."
    assert set(row) == {"input", "preferred_output", "non_preferred_output"}


def test_a_cloud_job_whose_validation_loss_rises_is_warned_about(dataset, openai_api):
    """The provider trains to the end; the job says when the validation loss it reports turns upward."""
    from pipeline.jobs import board

    openai_api(valid_losses=[1.0, 0.9, 1.0, 1.1])
    job, log = run_here(service.start(openai_config(dataset)))
    assert job.status == "succeeded", job.error
    said = "validation loss has risen for 2 reports since step 2 (0.90; now 1.10)"
    assert log.count("warning: The " + said) == 1  # once, however many reports follow
    assert said in board.detail(job.id).warning  # and on Live monitoring
