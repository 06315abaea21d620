"""Shared fixtures: every test gets its own data folder, no provider keys, and a fresh engine.

The converted embedded model is shared (data/models in the checkout) so it is converted once.

The store, jobs, review, datasets and registry tests run twice, as `test_x[sqlite]` and
`test_x[postgresql]`: the second time against a throwaway PostgreSQL cluster started for the session
(tests/postgres.py), each test in a fresh database of its own named by DATABASE_URL. Where PostgreSQL
is not installed or does not start, the `[postgresql]` runs are skipped and the skip says why.
"""

from __future__ import annotations

import os
import subprocess
from fnmatch import fnmatch
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One worker per core (make test): each worker's torch, and the job processes it starts, use one
    # thread. Two processes with a thread per core each on the same cores mostly wait on each other.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest

from pipeline import db, settings
from tests import postgres
from tests.fakes.openai_server import FakeOpenAI

REPO = Path(__file__).resolve().parent.parent
SHARED_MODELS = REPO / "data" / "models"
KEY_VARS = ["ANTHROPIC_API_KEY", "OPENAI_API_KEY", "TOGETHER_API_KEY", "TOGETHERAI_API_KEY", "DATABASE_URL"]

BACKENDS = ["sqlite", "postgresql"]
# test modules (file name patterns) that run on both backends; every other module runs on SQLite only
BOTH_BACKENDS = ["test_store.py", "test_monitor.py", "test_jobs*.py", "test_review.py", "test_datasets.py",
                 "test_registry.py", "test_access.py", "test_personas.py"]  # fmt: skip


# Files holding the longest tests (real model runs, killed and resumed jobs, the browser walk), run
# first: `make test` hands whole files to its workers in this order (--no-loadscope-reorder), so no
# worker starts a seven-minute file when the others are nearly done.
SLOWEST_FIRST = ["test_browser_flow.py", "test_resume.py", "test_training.py", "test_generation.py",
                 "test_evaluation.py", "test_gguf_export.py", "test_data_curve.py", "test_ray.py", "test_bake.py",
                 "test_persona_pairs.py", "test_cli.py", "test_monitor.py", "test_browser.py"]  # fmt: skip


def pytest_collection_modifyitems(items):
    rank = {name: place for place, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its order


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames and any(fnmatch(metafunc.definition.path.name, p) for p in BOTH_BACKENDS):
        metafunc.parametrize("backend", BACKENDS, indirect=True)


@pytest.fixture(scope="session")
def postgres_cluster():
    """Started on the first `[postgresql]` test, stopped and deleted at the end of the session."""
    try:
        cluster = postgres.Cluster.start()
    except (postgres.Unavailable, OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"PostgreSQL unavailable, its runs are skipped: {exc}")
    yield cluster
    cluster.stop()


@pytest.fixture
def backend(request) -> str:
    """The store this test runs on: "sqlite", or "postgresql" for the second run of the modules above."""
    return getattr(request, "param", "sqlite")


@pytest.fixture(autouse=True)
def studio(tmp_path, monkeypatch, request, backend) -> Path:
    """An empty studio in a temporary folder, with no keys configured."""
    data = tmp_path / "data"
    monkeypatch.setenv("STUDIO_DATA_DIR", str(data))
    monkeypatch.setenv("STUDIO_MODELS_DIR", str(SHARED_MODELS))
    monkeypatch.setenv("STUDIO_SECRETS_FILE", str(tmp_path / "secrets.toml"))
    monkeypatch.setenv("STUDIO_AUTOSTART_MONITOR", "0")  # tests that need a monitor start their own
    monkeypatch.setenv("OLLAMA_API_BASE", "http://127.0.0.1:9")  # never a real Ollama: tests start a fake
    for var in KEY_VARS:
        monkeypatch.delenv(var, raising=False)
    cluster = database = None
    if backend == "postgresql":
        cluster = request.getfixturevalue("postgres_cluster")
        # a copy of the migrated template, or an empty database for a test that migrates it step by step
        database = cluster.create_database(migrated=request.node.get_closest_marker("empty_database") is None)
        monkeypatch.setenv("DATABASE_URL", cluster.url(database))  # processes the test starts inherit it
    db.reset_engines()
    yield data
    db.reset_engines()
    if database:
        cluster.drop_database(database)


def write_secrets(text: str) -> None:
    path = settings.secrets_file()
    path.write_text(text, encoding="utf-8")
    # mtime resolution can hide a rewrite within the same tick; the cache is keyed on it
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


@pytest.fixture
def endpoints():
    """Two OpenAI-compatible servers on 127.0.0.1, added to the studio as models `primary` and `backup`."""
    with FakeOpenAI(reply="Primary answer.") as primary, FakeOpenAI(reply="Backup answer.") as backup:
        write_secrets(
            f'[endpoints.primary]\napi_base = "{primary.api_base}"\nmodel = "primary-model"\n'
            f'[endpoints.backup]\napi_base = "{backup.api_base}"\nmodel = "backup-model"\n'
        )
        yield primary, backup


@pytest.fixture
def models(tmp_path, monkeypatch) -> Path:
    """A models folder of this test's own (adapters land here), with the shared embedded model linked in,
    and the tiny model for fast training and export tests."""
    from pipeline.llm import embedded
    from tests.tiny_model import make_tiny_model

    folder = tmp_path / "models"
    folder.mkdir()
    (folder / embedded.EMBEDDED_NAME).symlink_to(SHARED_MODELS / embedded.EMBEDDED_NAME)
    monkeypatch.setenv("STUDIO_MODELS_DIR", str(folder))
    make_tiny_model()
    return folder
