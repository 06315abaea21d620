"""The job system's state machine and claims: every illegal change refused, races won exactly once,
reports of an earlier attempt ignored, keys checked where the job will run."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time

import pytest

from pipeline import jobs
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.jobs import foreground, ingest, keys, runfolder, states
from pipeline.models import Job
from tests.conftest import REPO, write_secrets

STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"]
ILLEGAL = [(a, b) for a, b in itertools.product(STATUSES, STATUSES) if not states.allowed(a, b)]


def force_status(job_id: int, status: str) -> None:
    """Put a row in a status directly (test setup only: the code under test never does this)."""
    from sqlalchemy import update

    with session_scope() as session:
        session.connection().execute(update(Job).where(Job.id == job_id).values(status=status))


@pytest.mark.parametrize(("source", "target"), ILLEGAL)
def test_the_state_machine_refuses_every_illegal_transition(source, target):
    job = jobs.submit("probe")
    force_status(job.id, source)

    with pytest.raises(states.IllegalTransition, match=f"cannot go from {source} to {target}"):
        states.transition(job.id, source, target)

    assert jobs.get(job.id).status == source  # nothing written


def test_the_allowed_transitions_are_exactly_the_documented_ones():
    allowed = {(a, b) for a, b in itertools.product(STATUSES, STATUSES) if states.allowed(a, b)}
    assert allowed == {
        ("queued", "running"),
        ("queued", "cancelled"),
        ("running", "succeeded"),
        ("running", "failed"),
        ("running", "cancelled"),
        ("failed", "queued"),
        ("cancelled", "queued"),
        ("succeeded", "queued"),  # a finished generation resumes to retry its failed examples
    }


def test_a_transition_from_a_status_the_row_has_left_changes_nothing():
    job = jobs.submit("probe")
    assert states.transition(job.id, "queued", "running", executor="local")
    assert not states.transition(job.id, "queued", "running", executor="local")  # second claim loses
    assert states.transition(job.id, "running", "failed", error="boom")
    assert not states.transition(job.id, "running", "succeeded")  # a late "succeeded" cannot overwrite it
    final = jobs.get(job.id)
    assert (final.status, final.error, final.attempt) == ("failed", "boom", 1)


def test_a_report_for_an_earlier_attempt_changes_nothing():
    job = jobs.submit("probe")
    states.transition(job.id, "queued", "running", executor="local")
    folder = runfolder.prepare(job.id)
    stale = {"attempt": 1, "status": "running", "done": 3, "total": 9, "heartbeat": time.time() - 600}
    runfolder.write_status(folder, stale)
    states.transition(job.id, "running", "failed", attempt=1, error="killed")
    jobs.requeue(job.id)
    assert not (folder / runfolder.STATUS).exists()  # a requeued job starts from a clean status file
    assert states.transition(job.id, "queued", "running", executor="local")

    # attempt 1's last words, written again (a straggler), and a status with an old heartbeat only
    runfolder.write_status(folder, {**stale, "status": "failed", "error": "attempt 1 died"})
    with session_scope() as session:
        ingest.ingest_job(session, session.get(Job, job.id))
    runfolder.write_status(folder, {"status": "cancelled", "heartbeat": time.time() - 600})
    with session_scope() as session:
        ingest.ingest_job(session, session.get(Job, job.id))

    current = jobs.get(job.id)
    assert (current.status, current.attempt, current.heartbeat_at, current.error) == ("running", 2, None, None)

    runfolder.write_status(
        folder, {"attempt": 2, "status": "succeeded", "done": 9, "total": 9, "heartbeat": time.time()}
    )
    with session_scope() as session:
        ingest.ingest_job(session, session.get(Job, job.id))
    assert jobs.get(job.id).status == "succeeded"


RACER = """
import json, os, sys, time
from pipeline.errors import UserFacingError
from pipeline.jobs import foreground, states
job_ids, start_at, how = json.loads(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
time.sleep(max(start_at - time.time(), 0))
won = []
for job_id in job_ids:
    if how == "transition":
        if states.transition(job_id, "queued", "running", executor="local", pid=os.getpid()):
            won.append(job_id)
    else:
        try:
            foreground.claim(job_id)
            won.append(job_id)
        except UserFacingError as exc:
            assert "running in" in str(exc) or "just started" in str(exc), exc
print(json.dumps(won))
"""


def test_a_job_that_finishes_while_the_monitor_reads_it_keeps_its_last_metrics(monkeypatch):
    """The job writes its last metric line, then its final status, between two reads of the monitor."""
    job = jobs.submit("probe")
    states.transition(job.id, "queued", "running", executor="local")
    folder = runfolder.prepare(job.id)
    runfolder.append_metric(folder, {"step": 1, "loss": 2.0})
    runfolder.write_status(folder, {"attempt": 1, "status": "running", "done": 1, "total": 2, "heartbeat": time.time()})
    read_status = runfolder.read_status

    def the_job_finishes_now(path):
        runfolder.append_metric(folder, {"step": 2, "loss": 1.0})
        runfolder.write_status(folder, {"attempt": 1, "status": "succeeded", "done": 2, "total": 2,
                                        "heartbeat": time.time()})  # fmt: skip
        return read_status(path)

    monkeypatch.setattr(runfolder, "read_status", the_job_finishes_now)
    with session_scope() as session:
        ingest.ingest_job(session, session.get(Job, job.id))
    assert jobs.get(job.id).status == "succeeded"
    assert [m.step for m in jobs.metrics(job.id)] == [1, 2]  # the row says finished only with its whole curve


@pytest.mark.parametrize("how", ["transition", "command line"])
def test_claims_raced_from_several_processes_are_won_exactly_once(how):
    ids = [jobs.submit("probe").id for _ in range(20)]
    start_at = time.time() + 4  # every racer has imported and connected by then
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, json.dumps(ids), str(start_at), how],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    wins = []
    for racer in racers:
        out, err = racer.communicate(timeout=120)
        assert racer.returncode == 0, err
        wins.append(json.loads(out.strip().splitlines()[-1]))

    claimed = sorted(job_id for won in wins for job_id in won)
    assert claimed == ids  # each job claimed once, by exactly one racer
    for job_id in ids:
        job = jobs.get(job_id)
        assert (job.status, job.attempt) == ("running", 1)
        if how == "command line":
            assert runfolder.run_dir(job_id).is_dir()  # made before the row said running


def test_a_second_claim_from_the_command_line_is_told_where_the_job_runs():
    job = jobs.submit("probe")
    foreground.claim(job.id)  # this process (pytest) now owns it, and is alive
    with pytest.raises(UserFacingError, match=rf"Job {job.id} is running in another command"):
        foreground.claim(job.id)


def test_a_job_whose_command_line_died_is_recorded_as_such_and_resumed_by_the_next_claim():
    job = jobs.submit("probe")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    states.transition(job.id, "queued", "running", executor="foreground", pid=dead.pid)

    resumed = foreground.claim(job.id)

    assert (resumed.status, resumed.attempt, resumed.pid) == ("running", 2, os.getpid())


def test_a_job_run_here_is_claimed_at_submit_and_never_queued():
    job = jobs.submit("probe", run_here=True)
    assert (job.status, job.executor, job.pid, job.attempt) == ("running", "foreground", os.getpid(), 1)
    assert json.loads((runfolder.run_dir(job.id) / runfolder.STATUS).read_text())["attempt"] == 1


def test_a_key_only_in_the_submitting_shell_is_refused_for_a_queued_job(monkeypatch):
    monkeypatch.setattr(keys, "_command_line", True)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-only-in-this-shell")
    params = {"response_models": ["anthropic/claude-haiku-4-5", "local/smollm2-135m-instruct"]}

    with pytest.raises(UserFacingError) as refused:
        jobs.submit("generation", params)
    message = str(refused.value)
    assert "ANTHROPIC_API_KEY" in message and "secrets.toml" in message
    assert "sk-ant-only-in-this-shell" not in message

    assert jobs.submit("generation", params, run_here=True).status == "running"  # run here: this shell's keys

    write_secrets('ANTHROPIC_API_KEY = "sk-ant-in-the-file"\n')
    assert jobs.submit("generation", params).status == "queued"  # the worker reads the file too


def test_a_running_monitor_without_the_key_refuses_it_and_one_with_it_accepts(monkeypatch):
    from pipeline.jobs import monitor

    monkeypatch.setenv("TOGETHER_API_KEY", "tg-here")
    monkeypatch.setattr(monitor, "is_alive", lambda: True)
    monkeypatch.setattr(monitor, "state", lambda: {"keys": ["OPENAI_API_KEY"]})
    with pytest.raises(UserFacingError, match="TOGETHER_API_KEY"):
        jobs.submit("train_together", {"config": {}})

    monkeypatch.setattr(monitor, "state", lambda: {"keys": ["TOGETHER_API_KEY"]})
    assert jobs.submit("train_together", {"config": {}}).status == "queued"


def test_keys_needed_come_from_the_kind_and_every_model_named():
    params = {"contestants": [{"model": "openai/gpt-4.1-mini"}], "judge": "anthropic/claude-sonnet-4-5"}
    assert keys.needed("evaluation", params) == {"OPENAI_API_KEY", "ANTHROPIC_API_KEY"}
    assert keys.needed("train_together", {}) == {"TOGETHER_API_KEY"}
    assert keys.needed("generation", {"response_models": ["local/smollm2-135m-instruct"]}) == set()


def test_a_job_reporting_to_the_database_needs_no_run_folder(tmp_path):
    from pipeline.jobs import probe
    from pipeline.jobs.context import JobContext
    from pipeline.jobs.reporting import DatabaseReporter

    job = jobs.submit("probe")
    assert states.transition(job.id, "queued", "running", executor="remote")  # as an executor elsewhere claims it
    job = jobs.get(job.id)
    ctx = JobContext(job.id, tmp_path / "elsewhere", job.kind, attempt=job.attempt, reporter=DatabaseReporter(job.id))
    ctx.start()
    probe.run(ctx, {"rate": 50, "seconds": 0.2})
    ctx.finish("succeeded")

    done = jobs.get(job.id)
    assert (done.status, done.progress_done, done.progress_total, done.progress_unit) == ("succeeded", 10, 10, "lines")
    assert done.heartbeat_at is not None
    assert sorted(m.step for m in jobs.metrics(job.id)) == list(range(11))  # progress at 0, lines 1..10
    assert not runfolder.run_dir(job.id).exists()


def test_the_log_shows_the_jobs_own_words_and_keeps_warnings_and_progress_bars_apart():
    from pipeline.jobs.board import split_log

    log = (
        "2026-12-02 08:14:18 job 1 (probe) attempt 1 started\n"
        "/venv/lib/x.py:12: FutureWarning: something is deprecated\n"
        "  warnings.warn(\n"
        "Generating:  50%|#####     | 1/2 [00:01<00:01]\n"
        "2026-12-02 08:14:20 failed with an unexpected error:\n"
        "Traceback (most recent call last):\n"
        "ValueError: boom\n"
        "2026-12-02 08:14:21 job failed"
    )
    said, technical = split_log(log)
    assert said.splitlines() == [
        "2026-12-02 08:14:18 job 1 (probe) attempt 1 started",
        "2026-12-02 08:14:20 failed with an unexpected error:",
        "Traceback (most recent call last):",
        "ValueError: boom",
        "2026-12-02 08:14:21 job failed",
    ]
    assert "FutureWarning" in technical and "Generating:" in technical and "job" not in technical
