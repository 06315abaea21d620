"""The store: SQLite settings on every connection, migrations, and two processes writing at once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlmodel import func, select

from pipeline import db
from pipeline.db import session_scope
from pipeline.models import Job, LLMCall, Persona
from tests.conftest import REPO

WRITER = textwrap.dedent(
    """
    import sys
    from pipeline.db import session_scope
    from pipeline.models import LLMCall
    for i in range(int(sys.argv[2])):
        with session_scope() as session:  # one small transaction per row, as jobs write
            session.add(LLMCall(purpose=sys.argv[1], prompt_tokens=i))
    print("done")
    """
)


def test_every_connection_has_wal_busy_timeout_and_foreign_keys():
    with db.get_engine().connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == db.SQLITE_BUSY_TIMEOUT_MS
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_migrations_create_every_table_at_start_up(studio):
    engine = db.get_engine()
    tables = set(inspect(engine).get_table_names())
    assert {
        "persona",
        "job",
        "example",
        "dataset",
        "trainingmetric",
        "modelentry",
        "deploymentevent",
        "battle",
        "traitscore",
        "llmcall",
        "alembic_version",
    } <= tables
    assert (studio / "studio.db").exists()
    with engine.connect() as connection:
        current = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    head = ScriptDirectory.from_config(db._alembic_config(engine)).get_current_head()
    assert current == head and head is not None


def test_a_failed_unit_of_work_leaves_nothing_behind():
    try:
        with session_scope() as session:
            session.add(Persona(name="half", system_prompt="x"))
            session.flush()
            raise RuntimeError("crash mid-way")
    except RuntimeError:
        pass
    with session_scope() as session:
        assert session.exec(select(func.count()).select_from(Persona)).one() == 0


def test_two_processes_writing_at_once_never_see_database_is_locked(studio):
    db.get_engine()  # migrate first, as the app does before anything else starts
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, name, "150"],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("first", "second")
    ]
    outcomes = [w.communicate(timeout=300) for w in writers]

    for writer, (out, err) in zip(writers, outcomes, strict=True):
        assert writer.returncode == 0, err
        assert "database is locked" not in err
        assert out.strip() == "done"
    with session_scope() as session:
        counts = dict(session.exec(select(LLMCall.purpose, func.count()).group_by(LLMCall.purpose)).all())
    assert counts == {"first": 150, "second": 150}


def test_processes_starting_together_migrate_once(studio):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", "from pipeline.db import get_engine; get_engine()"],
            env=env,
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for starter in starters:
        _, err = starter.communicate(timeout=120)
        assert starter.returncode == 0, err
    with db.get_engine().connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1


def test_models_and_migrations_agree():
    """A table or column changed in models.py without a migration fails here (`python -m pipeline db revision`)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    with db.get_engine().connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert diff == []


def test_an_older_database_with_jobs_upgrades_in_place(studio):
    from alembic import command

    engine = db.get_engine(migrate=False)
    config = db._alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        connection.execute(
            text(
                "INSERT INTO job (kind, name, status, params, progress_done, progress_total, progress_unit, "
                "cancel_requested, started_by, cost_usd, created_at) "
                "VALUES ('probe', 'old', 'succeeded', '{}', 1, 1, 'items', 0, '', 0, '2026-01-01 00:00:00')"
            )
        )
    db.reset_engines()

    with session_scope() as session:  # first use migrates to the head
        [job] = session.exec(select(Job)).all()
    assert (job.name, job.message, job.metrics_offset, job.exit_code) == ("old", "", 0, None)
