"""Recovery as users meet it: a job killed with SIGKILL, left long enough for its last heartbeat to
go stale, then resumed with the monitor running: from the page's button, from `jobs resume`, and
by a command line that runs it itself. Counted: what was lost and what was done twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlmodel import select

from pipeline import jobs
from pipeline.db import session_scope
from pipeline.generation import runner
from pipeline.jobs import runfolder
from pipeline.models import Example
from pipeline.training import service
from tests.conftest import REPO
from tests.processes import wait_for
from tests.test_generation import config_for, persona, server  # noqa: F401 - fixtures
from tests.test_training import dataset, tiny_config  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow
# a killed job's last heartbeat goes stale in 8 s, not 30 (and a live one, beating every 2 s, never does,
# even on a loaded machine)
STALE = {"STUDIO_HEARTBEAT_TIMEOUT_S": "8"}


@pytest.fixture
def no_cache(monkeypatch):
    """Every call reaches the server, so the calls made twice can be counted."""
    monkeypatch.setenv("STUDIO_LLM_CACHE", "0")


def finished(job_id: int):
    job = jobs.get(job_id)
    return job if job.status in jobs.FINISHED else None


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def kill_when(job_id: int, ready, what: str):
    """SIGKILL the job's process group once `ready(job)` holds; returns the failed record."""

    def ready_to_kill():
        job = jobs.get(job_id)
        assert job.status in jobs.ACTIVE, f"the job ended before the kill: {job.status} {job.error}"
        return job.status == "running" and job.pid and ready(job) and job

    running = wait_for(ready_to_kill, 180, what)
    os.killpg(running.pid, signal.SIGKILL)
    failed = wait_for(lambda: finished(job_id), 10, "the killed job to be marked failed")
    assert failed.status == "failed"
    assert failed.error == "process exited without finishing (killed by SIGKILL)"
    time.sleep(9)  # its last heartbeat is now older than the monitor's timeout
    return failed


def examples_of(job_id: int) -> list[Example]:
    with session_scope() as session:
        return list(session.exec(select(Example).where(Example.job_id == job_id)))


@pytest.mark.parametrize("running_monitor", [STALE], indirect=True)
def test_a_generation_killed_three_times_resumes_each_way(persona, server, no_cache, running_monitor):  # noqa: F811
    """One run, killed three times: resumed from the page's button, then `jobs resume`, then by a
    command line that runs it itself, beside the monitor. Each way must pick up the same run."""
    primary, _ = server
    primary.delay = 0.5  # each kill lands while examples are still being made
    config = config_for(persona, examples=15, concurrency=2)
    job = jobs.submit("generation", config.model_dump(mode="json"))

    for attempt, (kill_at, resume_from) in enumerate([(3, "page"), (7, "jobs resume"), (11, "generate --resume")], 1):
        killed = kill_when(job.id, lambda _, at=kill_at: runner.progress(job.id)[0] >= at, f"{kill_at} examples made")
        assert (killed.attempt, killed.executor) == (attempt, "local")  # the monitor ran each of the first three
        if resume_from == "page":
            jobs.requeue(job.id)  # what the Resume button calls
        elif resume_from == "jobs resume":
            out = cli("jobs", "resume", str(job.id))
            assert out.returncode == 0, out.stderr
        else:
            out = cli("generate", "--resume", str(job.id))  # runs it here, beside the monitor
            assert out.returncode == 0, out.stdout + out.stderr
    done = wait_for(lambda: finished(job.id), 180, "the last resumed attempt to finish")

    assert done.status == "succeeded", done.error
    assert done.attempt == 4 and done.executor == "foreground"
    made = examples_of(job.id)
    assert sorted(e.slot for e in made) == list(range(15))  # nothing lost, nothing twice
    assert all(e.status == "pending" for e in made)
    # three calls an example, each stage saved as it lands: only the calls in flight at each kill
    # (one per example being made, two at a time) are asked again
    repeated_calls = len(primary.requests) - 3 * 15
    assert 0 <= repeated_calls <= 2 * 3, f"{repeated_calls} calls repeated over three kills"


@pytest.mark.parametrize("running_monitor", [STALE], indirect=True)
def test_a_killed_training_resumes_from_its_checkpoint_with_the_monitor_running(dataset, running_monitor):  # noqa: F811
    job = service.start(tiny_config(name="killed", epochs=4, save_every=2))
    checkpoints = runfolder.run_dir(job.id) / "checkpoints"

    kill_when(job.id, lambda j: j.progress_done >= 5 and any(checkpoints.glob("checkpoint-*")), "a checkpoint")
    saved = max(int(p.name.split("-")[1]) for p in checkpoints.glob("checkpoint-*"))

    out = cli("jobs", "resume", str(job.id))
    assert out.returncode == 0, out.stderr
    done = wait_for(lambda: finished(job.id), 300, "the resumed training to finish")

    assert done.status == "succeeded", done.error
    assert (done.progress_done, done.progress_total, done.attempt) == (20, 20, 2)
    assert f"resuming from checkpoint-{saved}" in runfolder.log_tail(job.id, 400)
    curve = [m.step for m in jobs.metrics(job.id)]
    assert curve == sorted(set(curve)) and max(curve) == 20  # one point per step on the page's chart
