"""Artifacts at a storage URI, end to end: a dataset, a trained model, an export and evaluation reports written
through a `file://` URI in another folder, read back by the registry (on this machine and on a second one that
shares only the database and the URI); the local data folder holds none of them."""

from __future__ import annotations

import pytest

from pipeline import db, jobs, settings
from pipeline.datasets import build
from pipeline.evaluation import service as evaluation
from pipeline.jobs import foreground, runfolder
from pipeline.llm import catalog, chat, embedded
from pipeline.registry import export_job, figures, lifecycle
from pipeline.training import service
from tests.eval_seed import seed
from tests.test_evaluation import arena, plan_llm, run_here  # noqa: F401 - arena is a fixture
from tests.test_training import ingested, run_job_process, tiny_config
from tests.tiny_model import TINY


@pytest.fixture
def shared(tmp_path, monkeypatch, models):
    """The store: a folder outside the data folder, named by a file:// URI (every node would mount it)."""
    folder = tmp_path / "shared"
    monkeypatch.setenv("STUDIO_STORAGE_URI", folder.as_uri())
    return folder


def files(folder) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


@pytest.mark.usefixtures("arena")  # the contestant and judge endpoints of the evaluation tests
def test_artifacts_written_through_a_file_uri_are_read_back_by_the_registry(shared, models, tmp_path, monkeypatch):
    persona_id, dataset = seed()
    assert "train.jsonl" in files(shared / "datasets" / dataset)

    # training in a process of its own, as the worker starts it: it finds the URI in its environment
    job = service.start(tiny_config(dataset=dataset, name="tiny-shared"))
    process = run_job_process(job.id)
    assert process.wait(timeout=300) == 0, process.stderr.read()
    assert ingested(job.id).status == "succeeded"
    assert {"adapter_config.json", "adapter_model.safetensors"} <= files(shared / "models" / "tiny-shared")

    # the registry lists it, and it loads and chats from the URI's folder
    entry = lifecycle.get("tiny-shared")
    assert entry.reference == "local/tiny-shared" and entry.metrics["size_bytes"] > 0
    assert "local/tiny-shared" in catalog.available_models()
    assert embedded.model_path("tiny-shared") == shared / "models" / "tiny-shared"
    assert figures.summary(entry)["name"] == "tiny-shared"
    assert chat([{"role": "user", "content": "Hello"}], ["local/tiny-shared"], max_tokens=4).text is not None

    # an export lands there, and what it made is published beside the reports
    exported = export_job.start("tiny-shared", "adapter", run_here=True)
    finished, _ = foreground.run(exported, jobs.kind_function("export"), lambda *a: None)
    assert finished.status == "succeeded", finished.error
    assert files(shared / "exports") == {"tiny-shared-adapter.zip"}
    assert files(shared / "reports" / str(exported.id)) == {"export.json"}

    # an evaluation's reports too
    judged = evaluation.start(plan_llm(persona_id, dataset, max_battles=2, trait_scores=False, criteria_traits=False,
                                       drift_turns=0))  # fmt: skip
    run_here(judged)
    reports = files(shared / "reports" / str(judged.id))
    assert {"report.md", "report.html", "battles.jsonl"} <= reports and any(f.startswith("elo_") for f in reports)

    # this machine's data folder holds none of those artifacts (only its database and run folders)
    data = settings.data_dir()
    assert not (data / "datasets").exists() and not (data / "exports").exists() and not (data / "models").exists()
    assert sorted(p.name for p in models.iterdir()) == sorted([embedded.EMBEDDED_NAME, TINY])  # the bases only

    # a second machine: its own data folder (no run folders), the same database and the same store
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{data / 'studio.db'}")
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path / "node-b"))
    db.reset_engines()
    assert not runfolder.run_dir(exported.id).exists()
    assert export_job.latest(entry.id).result["file"] == "tiny-shared-adapter.zip"
    assert build.file_path(build.get_dataset(dataset), "openai", "train").is_relative_to(shared)
    assert "local/tiny-shared" in catalog.available_models()
    assert embedded.load("tiny-shared").model is not None
