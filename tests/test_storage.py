"""The storage seam (pipeline/storage.py): the default data folder, a folder URI, and an object store through
fsspec's memory:// filesystem, read on two "nodes" (two caches); refusals in words; URIs masked."""

from __future__ import annotations

import json
import shutil
import uuid

import pytest

from pipeline import db, jobs, personas, settings, storage
from pipeline.datasets import build, persona_pairs, purge
from pipeline.errors import UserFacingError
from pipeline.evaluation import leaderboard, report
from pipeline.llm import catalog, embedded
from pipeline.review.filters import ExampleFilter
from tests.conftest import write_secrets
from tests.seed import add_examples
from tests.tiny_model import TINY


@pytest.fixture
def memory_store(monkeypatch, tmp_path):
    """An object store (fsspec's in-process memory filesystem), read through this test's first cache."""
    import fsspec

    root = f"memory://studio-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("STUDIO_STORAGE_URI", root)
    monkeypatch.setenv("STUDIO_STORAGE_CACHE", str(tmp_path / "node-a"))
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root.removeprefix("memory:/")):
        fs.rm(root.removeprefix("memory:/"), recursive=True)


def on_node(monkeypatch, tmp_path, name: str) -> storage.Store:
    """The same store seen from another machine: a cache of its own."""
    monkeypatch.setenv("STUDIO_STORAGE_CACHE", str(tmp_path / name))
    return storage.current()


def test_unset_means_the_data_folder_in_todays_layout(studio):
    store = storage.current()
    assert store.default and not store.remote
    assert storage.local("datasets", "d1") == settings.data_dir() / "datasets" / "d1"
    assert storage.local("models", "m") == settings.models_dir() / "m"
    assert storage.local("exports", "x.zip") == settings.data_dir() / "exports" / "x.zip"
    assert storage.local("reports", "7") == settings.data_dir() / "runs" / "7"  # a job's reports: its run folder
    storage.check()  # nothing to probe
    with storage.publishing("datasets", "d1", read_only=True) as folder:
        (folder / "train.jsonl").write_text("{}\n")
    made = settings.data_dir() / "datasets" / "d1" / "train.jsonl"
    assert made.read_text() == "{}\n" and not made.stat().st_mode & 0o222
    assert storage.names("datasets") == ["d1"]  # no staging folder left beside it
    storage.remove("datasets", "d1")  # read-only files too
    assert not storage.exists("datasets", "d1")


def test_a_folder_uri_is_read_and_written_in_place(studio, tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    monkeypatch.setenv("STUDIO_STORAGE_URI", shared.as_uri())
    storage.check()
    with storage.publishing("models", "m1") as folder:
        (folder / "adapter_config.json").write_text("{}")
    assert storage.local("models", "m1") == shared / "models" / "m1"  # the folder itself: no copy
    written = storage.write_file("reports", "12/report.md", "# hi")
    assert written == shared / "reports" / "12" / "report.md"
    zipped = tmp_path / "x.zip"
    zipped.write_bytes(b"PK")
    assert storage.put_file("exports", "x.zip", zipped, move=True) == shared / "exports" / "x.zip"
    assert not zipped.exists()
    assert not (settings.data_dir() / "models").exists() and not (settings.data_dir() / "exports").exists()
    # a plain path means the same folder; the setting can also come from secrets.toml's [storage]
    monkeypatch.delenv("STUDIO_STORAGE_URI")
    write_secrets(f'[storage]\nuri = "{shared}"\n')
    assert storage.local("exports", "x.zip").read_bytes() == b"PK"


def test_reads_fall_back_to_the_data_folder_for_what_was_made_before_the_uri(studio, tmp_path, monkeypatch):
    old = settings.data_dir() / "datasets" / "old"
    old.mkdir(parents=True)
    (old / "manifest.json").write_text("{}")
    monkeypatch.setenv("STUDIO_STORAGE_URI", str(tmp_path / "shared"))
    assert storage.local("datasets", "old") == old and storage.exists("datasets", "old")
    assert storage.names("datasets") == ["old"]
    storage.remove("datasets", "old")
    assert not old.exists()


def test_an_object_store_publishes_whole_folders_and_another_node_fetches_them(memory_store, tmp_path, monkeypatch):
    a = storage.current()
    assert a.remote and not a.default
    with storage.publishing("models", "adapter", read_only=False) as folder:
        (folder / "adapter_config.json").write_text(json.dumps({"r": 4}))
        (folder / "merged").mkdir()
        (folder / "merged" / "config.json").write_text("{}")
    here = storage.local("models", "adapter")
    assert here.is_relative_to(tmp_path / "node-a")
    assert json.loads((here / "adapter_config.json").read_text()) == {"r": 4}  # the writer kept its copy

    b = on_node(monkeypatch, tmp_path, "node-b")
    assert b is not a and b.names("models") == ["adapter"]
    fetched = storage.local("models", "adapter")
    assert fetched.is_relative_to(tmp_path / "node-b")
    assert (fetched / "merged" / "config.json").read_text() == "{}"

    # node A replaces it (a rerun under the same name); node B sees the new version once its check is due
    on_node(monkeypatch, tmp_path, "node-a")
    with storage.publishing("models", "adapter") as folder:
        (folder / "adapter_config.json").write_text(json.dumps({"r": 8}))
    on_node(monkeypatch, tmp_path, "node-b")
    b._fresh.clear()
    again = storage.local("models", "adapter")
    assert json.loads((again / "adapter_config.json").read_text()) == {"r": 8}
    assert not (again / "merged").exists()  # the old copy is gone, not merged into

    # a file added to a folder entry (a report, a dataset's extra pairs) bumps its version
    storage.write_file("reports", "5/report.md", "one")
    on_node(monkeypatch, tmp_path, "node-a")
    assert storage.local("reports", "5/report.md").read_text() == "one"
    storage.write_file("reports", "5/likelihood.json", "[]")
    on_node(monkeypatch, tmp_path, "node-b")
    b._fresh.clear()
    folder = storage.local("reports", "5")
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["likelihood.json", "report.md"]

    # single files (exports) and removal
    zipped = tmp_path / "m.zip"
    zipped.write_bytes(b"zip")
    storage.put_file("exports", "m.zip", zipped)
    on_node(monkeypatch, tmp_path, "node-a")
    assert storage.local("exports", "m.zip").read_bytes() == b"zip"
    storage.remove("models", "adapter")
    on_node(monkeypatch, tmp_path, "node-b")
    b._fresh.clear()
    assert not storage.exists("models", "adapter") and not storage.local("models", "adapter").exists()


def test_a_missing_driver_is_refused_at_submit_with_what_to_install(studio, monkeypatch):
    monkeypatch.setenv("STUDIO_STORAGE_URI", "s3://AKIAEXAMPLE:very-secret@bucket/studio")
    with pytest.raises(UserFacingError) as caught:
        jobs.submit("probe", {"points": 1})
    message = str(caught.value)
    assert "s3://***@bucket/studio could not be reached from this machine" in message
    assert "s3fs" in message and "pip install s3fs" in message
    assert "very-secret" not in message and "AKIAEXAMPLE" not in message
    assert jobs.list_jobs() == []  # nothing queued


def test_an_unwritable_folder_is_refused_at_submit(studio, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    monkeypatch.setenv("STUDIO_STORAGE_URI", (blocker / "studio").as_uri())
    with pytest.raises(UserFacingError, match="could not be reached from this machine: .*Make the folder writable"):
        jobs.submit("probe", {"points": 1})
    monkeypatch.setenv("STUDIO_STORAGE_URI", "nope://bucket/x")
    with pytest.raises(UserFacingError, match="fsspec knows no nope:// storage"):
        storage.check()


def test_uris_are_masked_wherever_they_are_shown():
    assert storage.mask("s3://key:secret@bucket/studio") == "s3://***@bucket/studio"
    assert storage.mask("sftp://ada@host/studio") == "sftp://***@host/studio"
    assert storage.mask("az://c/studio?sig=abc&se=1") == "az://c/studio?***"
    assert storage.mask("failed for gs://u:p@b/x: denied") == "failed for gs://***@b/x: denied"
    with pytest.raises(UserFacingError):
        storage.local("models", "../escape")


def test_a_store_that_refuses_this_machine_names_the_credentials_to_set(studio, monkeypatch):
    import fsspec
    from fsspec.implementations.memory import MemoryFileSystem

    class Denied(MemoryFileSystem):
        protocol = "denied"

        def pipe_file(self, path, value, **kwargs):
            raise PermissionError("Access Denied (no credentials)")

    fsspec.register_implementation("denied", Denied, clobber=True)
    monkeypatch.setenv("STUDIO_STORAGE_URI", "denied://bucket/studio")
    with pytest.raises(UserFacingError) as caught:
        jobs.submit("probe", {"points": 1})
    message = str(caught.value)
    assert message.startswith("The storage at denied://bucket/studio could not be reached from this machine: ")
    assert "PermissionError: Access Denied (no credentials)" in message
    assert "Set its credentials on this machine" in message


def test_a_dataset_a_model_and_a_report_in_an_object_store_are_read_on_another_node(
    memory_store, models, tmp_path, monkeypatch
):
    personas.seed_samples()
    persona = personas.get_persona("collaborative")
    add_examples(persona.id, 12, status="accepted")
    dataset = build.save("remote-set", build.preview(ExampleFilter(persona_id=persona.id, statuses=["accepted"]), 0.25))
    with storage.publishing("models", "tiny-remote") as folder:  # a full model put in the store
        shutil.copytree(models / TINY, folder, dirs_exist_ok=True)
    report.save_likelihood(tmp_path / "run-7", [{"contestant": "a", "mean": -1.5}], job_id=7)
    assert not (settings.data_dir() / "datasets").exists()  # nothing in the data folder but the cache

    # another machine: the same database and store, its own data folder and cache
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{settings.data_dir() / 'studio.db'}")
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path / "node-b-data"))
    on_node(monkeypatch, tmp_path, "node-b")
    db.reset_engines()
    train = build.file_path(build.get_dataset("remote-set"), "openai", "train")
    assert train.is_relative_to(tmp_path / "node-b") and len(train.read_text().splitlines()) == 9
    assert not train.stat().st_mode & 0o222  # a snapshot stays read-only in the cache too
    assert leaderboard.likelihood(7) == [{"contestant": "a", "mean": -1.5}]
    assert "local/tiny-remote" in catalog.available_models()
    loaded = embedded.load("tiny-remote")
    assert loaded.model.config.hidden_size == 32
    assert embedded.model_path("tiny-remote").is_relative_to(tmp_path / "node-b")

    # node B adds a file to the snapshot (the persona pairs); node A reads the new version
    persona_pairs.save(dataset, [("prompt", "chosen reply")], {0: "plain reply"})
    on_node(monkeypatch, tmp_path, "node-a")
    storage.current()._fresh.clear()
    pairs = build.folder("remote-set") / persona_pairs.PERSONA_PAIRS
    assert pairs.is_relative_to(tmp_path / "node-a") and "plain reply" in pairs.read_text()
    purge.delete_dataset("remote-set", "remote-set")
    assert not storage.current().exists("datasets", "remote-set") and not build.folder("remote-set").exists()


def test_the_command_line_says_where_artifacts_go_and_checks_this_machine(studio, tmp_path, monkeypatch, capsys):
    from pipeline.__main__ import main

    monkeypatch.setenv("STUDIO_STORAGE_URI", (tmp_path / "shared").as_uri())
    assert main(["storage"]) == 0
    assert f"{tmp_path / 'shared'}\nThis machine can write there and read it back." in capsys.readouterr().out
    monkeypatch.setenv("STUDIO_STORAGE_URI", "gs://u:p@bucket/studio")
    assert main(["storage", "check"]) == 1
    err = capsys.readouterr().err
    assert "gs://***@bucket/studio could not be reached" in err and "gcsfs" in err and "u:p" not in err
