"""A throwaway PostgreSQL cluster for the test session: Debian's binaries, a temporary folder, a unix socket.

`Cluster.start()` runs initdb into a fresh folder (in /dev/shm when it has room) and starts the server
listening only on a socket in that folder (no TCP port, nothing shared with another test run).
PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user (Debian's
package creates it). Durability is off (fsync, synchronous commit, full-page writes): the cluster is
stopped and deleted at the end of the session, and one left by a killed session at the next start.

Each test gets its own database: a copy of a template migrated once per session (`CREATE DATABASE
... TEMPLATE`, milliseconds), or an empty one for tests that migrate it themselves; it is dropped
after the test, even when a process the test started still holds a connection.
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

TEMPLATE = "studio_template"
SUPERUSER = "postgres"
RUN_AS = "postgres"  # the OS user the server runs as when the tests run as root


class Unavailable(RuntimeError):
    """PostgreSQL is not installed or would not start; the message says which, in plain words."""


def find_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<major>/bin with initdb (or STUDIO_PG_BIN, or initdb on PATH)."""
    override = os.environ.get("STUDIO_PG_BIN")
    if override:
        return Path(override) if (Path(override) / "initdb").exists() else None
    found = sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1]
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def _memory_folder() -> str | None:
    """/dev/shm when it is writable and roomy (a container's may be 64 MB), else the usual temp folder.

    In memory, a database per test (about a thousand small files copied) takes milliseconds even
    while other processes keep the disk busy; on disk it took ten times as long under load.
    """
    shm = "/dev/shm"
    try:
        stat = os.statvfs(shm)
    except OSError:
        return None
    return shm if os.access(shm, os.W_OK) and stat.f_bavail * stat.f_frsize >= 2 * 1024**3 else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed process nobody has reaped yet is a zombie: gone all the same
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class Cluster:
    def __init__(self, bin_dir: Path, root: Path, user: str | None):
        self.bin_dir, self.root, self.user = bin_dir, root, user
        self.data = root / "data"
        self.socket_dir = root  # short path: a unix socket path is limited to ~100 characters
        self.log = root / "server.log"
        self._names = itertools.count(1)
        self._admin = None
        self._copy = ""  # how CREATE DATABASE copies the template

    # ----------------------------------------------------------------- lifecycle

    @classmethod
    def start(cls) -> Cluster:
        bin_dir = find_bin_dir()
        if bin_dir is None and os.environ.get("STUDIO_PG_BIN"):
            raise Unavailable(f"STUDIO_PG_BIN={os.environ['STUDIO_PG_BIN']} holds no initdb")
        if bin_dir is None:
            raise Unavailable(
                "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb; `make test` installs it)"
            )
        user = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(RUN_AS)
            except KeyError:
                raise Unavailable(f"running as root and there is no {RUN_AS!r} user to run the server as") from None
            if not shutil.which("runuser"):
                raise Unavailable("running as root and runuser is missing")
            user = RUN_AS
        cls._sweep(bin_dir, user)
        root = Path(tempfile.mkdtemp(prefix="studio-pg-", dir=_memory_folder()))
        (root / "owner").write_text(str(os.getpid()))
        cluster = cls(bin_dir, root, user)
        atexit.register(cluster.stop)  # a session that dies half-way leaves no server behind
        try:
            cluster._init_and_start()
            cluster._make_template()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    @classmethod
    def _sweep(cls, bin_dir: Path, user: str | None) -> None:
        """Stop and delete the clusters of test sessions that were killed (their owner process is gone)."""
        for folder in {"/dev/shm", tempfile.gettempdir()}:
            for root in Path(folder).glob("studio-pg-*"):
                try:
                    owner = int((root / "owner").read_text())
                except (OSError, ValueError):
                    continue  # not ours to judge
                if not _alive(owner):
                    cls(bin_dir, root, user).stop()

    def _run(self, *args: str, timeout: float = 120) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise Unavailable(f"{args[0]} failed ({done.returncode}): {(done.stderr or done.stdout).strip()}\n{log}")

    def _init_and_start(self) -> None:
        if self.user:
            shutil.chown(self.root, self.user)
        self._run(
            "initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8", "--no-locale",
            "--no-sync",
        )  # fmt: skip
        options = " ".join(
            [
                f"-k {self.socket_dir}",
                "-c listen_addresses=''",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
                "-c max_wal_size=256MB",
                # not UTC on purpose: stored times must not depend on the server's zone
                "-c timezone=Pacific/Auckland",
            ]
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        if not self.root.exists():
            return
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if (self.data / "postmaster.pid").exists():
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
            except (Unavailable, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    # ----------------------------------------------------------------- databases

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@/{database}?host={self.socket_dir}"

    def _sql(self, statement: str) -> None:
        self._admin_connection().execute(statement)

    def _admin_connection(self):
        import psycopg

        if self._admin is None or self._admin.closed:
            try:
                self._admin = psycopg.connect(
                    host=str(self.socket_dir), user=SUPERUSER, dbname="postgres", autocommit=True
                )
            except psycopg.OperationalError as exc:
                raise Unavailable(f"the server started but does not take connections: {exc}") from None
        return self._admin

    def _make_template(self) -> None:
        from alembic import command
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        from pipeline import db

        if self._admin_connection().info.server_version >= 150000:
            self._copy = " STRATEGY FILE_COPY"  # 15's default (WAL_LOG) is slower for a small template
        self._sql(f"CREATE DATABASE {TEMPLATE}")
        engine = create_engine(self.url(TEMPLATE), poolclass=NullPool)
        try:
            config = db._alembic_config(engine)
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        finally:
            engine.dispose()

    def create_database(self, migrated: bool = True) -> str:
        """A new database's name: a copy of the migrated template, or empty."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        self._sql(f"CREATE DATABASE {name}" + (f" TEMPLATE {TEMPLATE}{self._copy}" if migrated else ""))
        return name

    def drop_database(self, name: str) -> None:
        self._sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
