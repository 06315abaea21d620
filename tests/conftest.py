"""Shared fixtures: every test gets its own data folder, no provider keys, and a fresh engine.

The converted embedded model is shared (data/models in the checkout) so it is converted once.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline import db, settings
from tests.fakes.openai_server import FakeOpenAI

REPO = Path(__file__).resolve().parent.parent
SHARED_MODELS = REPO / "data" / "models"
KEY_VARS = ["ANTHROPIC_API_KEY", "OPENAI_API_KEY", "TOGETHER_API_KEY", "TOGETHERAI_API_KEY", "DATABASE_URL"]


@pytest.fixture(autouse=True)
def studio(tmp_path, monkeypatch) -> Path:
    """An empty studio in a temporary folder, with no keys configured."""
    data = tmp_path / "data"
    monkeypatch.setenv("STUDIO_DATA_DIR", str(data))
    monkeypatch.setenv("STUDIO_MODELS_DIR", str(SHARED_MODELS))
    monkeypatch.setenv("STUDIO_SECRETS_FILE", str(tmp_path / "secrets.toml"))
    monkeypatch.setenv("STUDIO_AUTOSTART_MONITOR", "0")  # tests that need a monitor start their own
    for var in KEY_VARS:
        monkeypatch.delenv(var, raising=False)
    db.reset_engines()
    yield data
    db.reset_engines()


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
