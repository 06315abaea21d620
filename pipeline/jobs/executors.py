"""Where a job's process runs: starting it, asking whether it is alive, cancelling it.

The monitor speaks to executors only through this interface, so a job runs on this machine or on
a Ray cluster without the monitor changing.

LocalExecutor       the default: `python -m pipeline.jobs run ID --attempt N` as a child of the
                    monitor in its own process group; SIGTERM asks it to stop, SIGKILL makes it.
ForegroundExecutor  a job a command line runs in its own process: the monitor never starts one,
                    but watches it by pid and passes a cancel on to it.
RayExecutor         (ray_cluster.py; STUDIO_EXECUTOR=ray and RAY_ADDRESS) the same command as a Ray job on
                    an existing cluster, followed with the Jobs API's status and stopped with stop_job;
                    the job reports straight into the shared database (no run folder on this machine).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable

from pipeline import settings
from pipeline.jobs import runfolder
from pipeline.models import Job


class Executor(ABC):
    name: str
    run_folder: bool = True  # the job writes data/runs/<id>/ on this machine, which the monitor watches

    @abstractmethod
    def start(self, job: Job, env: dict[str, str]) -> int | None:
        """Start the job's current attempt; returns its pid where it has one on this machine."""

    @abstractmethod
    def why_dead(self, job: Job) -> str | None:
        """None while the attempt's process lives; else what happened to it, in plain words."""

    @abstractmethod
    def cancel(self, job: Job, force: bool) -> None:
        """Ask the attempt to stop (it saves what it has), or with `force`, stop it at once."""

    def waiting(self, job: Job) -> str | None:
        """Words when the attempt is still waiting to be started where it runs (a cluster setting it up,
        or short of resources): no start grace runs out meanwhile. None: not waiting."""
        return None

    def exit_code(self, job: Job) -> int | None:
        return None

    def finished(self) -> dict[int, int]:
        """Exit codes of attempts this executor started that have ended since last asked."""
        return {}

    def forget(self, job_id: int) -> None:  # noqa: B027 - optional: most executors keep nothing
        """The job's row is final: let go of whatever was kept for it."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop(send: Callable[[int, int], None], pid: int | None, force: bool) -> None:
    """Ask a process to stop (SIGTERM: it saves what it has), or with `force` make it (SIGKILL)."""
    if pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone, or not ours
            send(pid, signal.SIGKILL if force else signal.SIGTERM)


def _signal_words(code: int) -> str:
    if code < 0:
        return f"process exited without finishing (killed by {signal.Signals(-code).name})"
    return f"process exited without finishing (exit code {code})"


class LocalExecutor(Executor):
    name = "local"

    def __init__(self) -> None:
        self.children: dict[int, subprocess.Popen] = {}

    def start(self, job: Job, env: dict[str, str]) -> int:
        folder = runfolder.run_dir(job.id)
        with open(folder / runfolder.LOG, "ab") as out:
            child = subprocess.Popen(
                [sys.executable, "-m", "pipeline.jobs", "run", str(job.id), "--attempt", str(job.attempt)],
                cwd=settings.PROJECT_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a cancel reaches its children too
            )
        self.children[job.id] = child
        return child.pid

    def why_dead(self, job: Job) -> str | None:
        child = self.children.get(job.id)
        if child is not None and child.pid == job.pid:
            code = child.poll()
            return None if code is None else _signal_words(code)
        if job.pid and not pid_alive(job.pid):
            return "process exited without finishing (it was gone when the monitor checked)"
        return None

    def exit_code(self, job: Job) -> int | None:
        child = self.children.get(job.id)
        return child.poll() if child is not None else None

    def cancel(self, job: Job, force: bool) -> None:
        _stop(os.killpg, job.pid, force)  # the whole process group: a cancel reaches its children too

    def finished(self) -> dict[int, int]:
        return {job_id: code for job_id, child in self.children.items() if (code := child.poll()) is not None}

    def forget(self, job_id: int) -> None:
        child = self.children.pop(job_id, None)
        if child is not None:
            try:
                child.wait(timeout=5)  # reap it
            except subprocess.TimeoutExpired:
                pass


class ForegroundExecutor(Executor):
    """A command line's own process: one pid, not a process group of the monitor's making."""

    name = "foreground"

    def start(self, job: Job, env: dict[str, str]) -> int | None:
        raise RuntimeError("A foreground job is started by the command line that runs it, never by the monitor.")

    def why_dead(self, job: Job) -> str | None:
        if job.pid and not pid_alive(job.pid):
            return "the command line running it exited without finishing (it was gone when the monitor checked)"
        return None

    def cancel(self, job: Job, force: bool) -> None:
        _stop(os.kill, job.pid, force)  # that one process: it is not a group of the monitor's making


def build(name: str) -> Executor:
    """The executor of this name. STUDIO_EXECUTOR picks the one the monitor starts jobs with."""
    if name == LocalExecutor.name:
        return LocalExecutor()
    if name == ForegroundExecutor.name:
        return ForegroundExecutor()
    if name == "ray":
        from pipeline.jobs.ray_cluster import RayExecutor  # imports ray itself only when a cluster is asked

        return RayExecutor()
    raise ValueError(
        f"Unknown executor {name!r}: the studio runs jobs with 'local' (this machine) or 'ray' (a Ray cluster)."
    )
