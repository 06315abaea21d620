"""The store: one engine per process, SQLite PRAGMAs on every connection, migrations at start-up."""

from __future__ import annotations

import fcntl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

from pipeline import settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
MIGRATION_LOCK_KEY = 0x5354_5544  # the PostgreSQL advisory lock held while migrating ("STUD")

_engines: dict[str, Engine] = {}
_migrated: set[str] = set()
_lock = threading.Lock()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (the app) and a writer (monitor, jobs) work at once;
    # busy_timeout makes a second writer wait instead of failing with "database is locked".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def get_engine(migrate: bool = True) -> Engine:
    """The process's engine for the current DATABASE_URL, migrated to the newest schema."""
    url = settings.database_url()
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = _make_engine(url)
        if migrate and url not in _migrated:
            if not _at_head(engine):
                upgrade(engine)
            _migrated.add(url)
    return engine


def head_revision() -> str:
    """The newest migration's id: migrations are named by their id (0001_..., 0002_..., see new_revision)."""
    return max(path.name.split("_", 1)[0] for path in (MIGRATIONS_DIR / "versions").glob("[0-9]*.py"))


def _at_head(engine: Engine) -> bool:
    """Whether the database is already migrated: a start-up that skips importing alembic (0.3 s)."""
    try:
        with engine.connect() as connection:
            found = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except Exception:  # noqa: BLE001 - no such table yet (a new database), or any doubt: migrate
        return False
    return found == [head_revision()]


def _alembic_config(engine: Engine):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


@contextmanager
def _migration_lock() -> Iterator[None]:
    """Processes starting together (app, monitor, jobs) must not run the same migration twice."""
    lock_path = settings.data_dir() / ".migrate.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade(engine: Engine) -> None:
    from alembic import command

    cfg = _alembic_config(engine)
    with _migration_lock(), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # processes sharing a PostgreSQL server need not share a data folder (and its lock file):
            # the second waits here until the first has committed, then finds nothing left to do
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


def new_revision(message: str) -> Path:
    """Autogenerate a migration from the difference between models.py and the current database."""
    from alembic import command

    engine = get_engine()
    cfg = _alembic_config(engine)
    versions = MIGRATIONS_DIR / "versions"
    rev_id = f"{len(list(versions.glob('[0-9]*.py'))) + 1:04d}"
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        script = command.revision(cfg, message=message, autogenerate=True, rev_id=rev_id)
    return Path(script.path)


def reset_engines() -> None:
    """Forget cached engines (tests switch data folders between cases)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _migrated.clear()


@contextmanager
def session_scope() -> Iterator[Session]:
    """One unit of work: committed on success, rolled back whole on any error."""
    with Session(get_engine(), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
