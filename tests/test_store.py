"""The store: SQLite settings on every connection, migrations, and two processes writing at once.

Every test here also runs on PostgreSQL (`[postgresql]`, see tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import func, select

from pipeline import db
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.models import Battle, Example, Job, LLMCall, Persona, utcnow
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


def test_every_connection_has_wal_busy_timeout_and_foreign_keys(backend):
    if backend == "sqlite":
        with db.get_engine().connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert connection.execute(text("PRAGMA busy_timeout")).scalar() == db.SQLITE_BUSY_TIMEOUT_MS
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    with pytest.raises(IntegrityError), session_scope() as session:  # on every backend: no row points nowhere
        session.add(Example(persona_id=999))


def test_migrations_create_every_table_at_start_up(studio, backend):
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
    assert (studio / "studio.db").exists() == (backend == "sqlite")  # PostgreSQL: nothing in the data folder
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


@pytest.mark.empty_database
def test_processes_starting_together_migrate_once(studio, backend):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # PostgreSQL's processes may run on other machines, each with a data folder (and lock file) of its own
    folders = [studio / f"host{i}" if backend == "postgresql" else studio for i in range(3)]
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", "from pipeline.db import get_engine; get_engine()"],
            env=env | {"STUDIO_DATA_DIR": str(folder)},
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        for folder in folders
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


@pytest.mark.empty_database
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
                "VALUES ('probe', 'old', 'succeeded', '{}', 1, 1, 'items', false, '', 0, '2026-01-01 00:00:00')"
            )
        )
    db.reset_engines()

    with session_scope() as session:  # first use migrates to the head
        [job] = session.exec(select(Job)).all()
    assert (job.name, job.message, job.metrics_offset, job.exit_code) == ("old", "", 0, None)


# --- queries whose SQL differs by backend (JSON, LIKE, lower(), NULL order, sums): each runs on both --


def test_the_home_page_sums_spend_and_names_the_latest_finished_evaluation():
    from pipeline import overview, personas

    assert overview.studio_counts()["spend_usd"] == 0.0  # coalesce: no calls is no spend, not None
    personas.seed_samples()
    now = utcnow()
    with session_scope() as session:
        session.add_all(
            [
                LLMCall(purpose="playground", cost_usd=0.25),
                LLMCall(purpose="playground", cost_usd=0.5),
                LLMCall(purpose="playground", cost_usd=9.0, error="500 from the provider"),
                Job(kind="evaluation", status="succeeded", message="older", finished_at=now - timedelta(hours=1)),
                Job(kind="evaluation", status="succeeded", message="newest", finished_at=now),
                Job(kind="evaluation", status="succeeded", message="no finish time"),  # NULL: last, on both
            ]
        )
    counts = overview.studio_counts()
    assert counts["spend_usd"] == pytest.approx(0.75) and counts["llm_calls"] == 2
    assert counts["last_evaluation"] == "newest" and counts["personas"] == 1


def test_job_costs_sum_each_jobs_calls():
    from pipeline import jobs

    with session_scope() as session:
        spender, idle = Job(kind="probe"), Job(kind="probe")
        session.add_all([spender, idle])
        session.flush()
        session.add_all([LLMCall(job_id=spender.id, cost_usd=0.1), LLMCall(job_id=spender.id, cost_usd=0.2)])
        session.add(LLMCall(job_id=idle.id))
    assert jobs.costs([spender.id, idle.id, 999]) == pytest.approx({spender.id: 0.3, idle.id: 0.0})


def test_personas_are_found_by_name_in_any_case_and_in_any_script():
    from pipeline import personas

    spec = {
        "description": "Plain words.",
        "system_prompt": "You are plain-spoken.",
        "traits": [{"name": "plain", "description": "Short words.", "markers": ["Short", "Clear"]}],
    }
    plain, accented = (
        personas.create_persona({**spec, "name": "Plain"}),
        personas.create_persona({**spec, "name": "Émile"}),
    )
    assert personas.get_persona("plain").id == plain.id and personas.get_persona("PLAIN").id == plain.id
    assert personas.get_persona("Émile").id == accented.id  # SQL lower() leaves É alone on SQLite
    with pytest.raises(UserFacingError, match="already exists"):
        personas.create_persona({**spec, "name": "pLAIN"})


def test_human_votes_are_counted_apart_from_judges():
    from pipeline.evaluation import service

    with session_scope() as session:
        job = Job(kind="evaluation")
        session.add(job)
        session.flush()
        for judge in ("human:ada", "human:bo", "openai/gpt-4.1-mini", "offline:embedding", "humane-judge"):
            session.add(Battle(job_id=job.id, contestant_a="a", contestant_b="b", judge=judge, verdict="a"))
    assert service.votes(job.id) == 2
