"""The monitor with real processes and real files: a monitor process, job subprocesses, watchdog."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from sqlmodel import select

from pipeline import jobs
from pipeline.db import session_scope
from pipeline.jobs import ingest, monitor, runfolder, states
from pipeline.models import Job, TrainingMetric
from tests.conftest import REPO
from tests.processes import start_monitor, stop_monitor, wait_for

pytestmark = pytest.mark.slow


def job(job_id: int) -> Job:
    return jobs.get(job_id)


def metric_steps(job_id: int) -> list[int]:
    with session_scope() as session:
        return list(session.exec(select(TrainingMetric.step).where(TrainingMetric.job_id == job_id)))


def finished(job_id: int) -> Job | None:
    current = job(job_id)
    return current if current.status in jobs.FINISHED else None


def test_a_queued_job_runs_to_success_with_its_metrics_ingested(running_monitor):
    submitted = jobs.submit("probe", {"rate": 20, "seconds": 1}, started_by="tester")
    assert submitted.status == "queued"

    done = wait_for(lambda: finished(submitted.id), 60, "the job to finish")

    assert done.status == "succeeded" and done.error is None
    assert (done.progress_done, done.progress_total, done.progress_unit) == (20, 20, "lines")
    assert done.started_by == "tester"
    wait_for(lambda: job(submitted.id).exit_code == 0, 10, "the process's exit code")  # recorded when reaped
    wait_for(lambda: len(metric_steps(submitted.id)) == 21, 10, "every line ingested")
    assert sorted(metric_steps(submitted.id)) == list(range(21))  # progress at 0, then lines 1..20
    assert "job succeeded" in runfolder.log_tail(submitted.id)


def test_a_job_killed_with_sigkill_is_failed_with_the_reason_within_ten_seconds(running_monitor):
    submitted = jobs.submit("probe", {"rate": 5, "seconds": 120})
    running = wait_for(
        lambda: (j := job(submitted.id)).status == "running" and j.progress_done > 0 and j, 60, "the job to be running"
    )

    os.killpg(running.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    failed = wait_for(lambda: finished(submitted.id), 10, "the job to be marked failed")

    assert time.monotonic() - killed_at < 10
    assert failed.status == "failed"
    assert failed.error == "process exited without finishing (killed by SIGKILL)"
    assert failed.exit_code == -signal.SIGKILL


def test_cancel_stops_a_running_job_cleanly(running_monitor):
    submitted = jobs.submit("probe", {"rate": 5, "seconds": 120})
    wait_for(lambda: job(submitted.id).progress_done > 0, 60, "the job to make progress")

    jobs.request_cancel(submitted.id)
    cancelled = wait_for(lambda: finished(submitted.id), 20, "the job to stop")

    assert cancelled.status == "cancelled" and cancelled.error is None
    assert 0 < cancelled.progress_done < cancelled.progress_total
    assert "cancel requested" in runfolder.log_tail(submitted.id)


def test_a_queued_job_cancelled_before_it_starts_never_runs(running_monitor, monkeypatch):
    blockers = [jobs.submit("probe", {"rate": 5, "seconds": 120}) for _ in range(2)]  # fill both slots
    waiting = jobs.submit("probe", {"rate": 5, "seconds": 1})
    wait_for(lambda: all(job(b.id).status == "running" for b in blockers), 60, "both slots busy")

    jobs.request_cancel(waiting.id)
    cancelled = wait_for(lambda: finished(waiting.id), 10, "the queued job to be cancelled")
    assert cancelled.error == "cancelled before it started" and cancelled.pid is None
    for blocker in blockers:
        jobs.request_cancel(blocker.id)
    wait_for(lambda: all(finished(b.id) for b in blockers), 30, "the blockers to stop")


def test_a_restarted_monitor_adopts_running_jobs_and_duplicates_no_metrics(running_monitor):
    submitted = jobs.submit("probe", {"rate": 10, "seconds": 8})
    wait_for(lambda: len(metric_steps(submitted.id)) > 10, 60, "some metrics ingested")

    stop_monitor(running_monitor)  # the job keeps running and writing
    time.sleep(1.5)
    second = start_monitor()
    try:
        done = wait_for(lambda: finished(submitted.id), 60, "the adopted job to finish")
    finally:
        stop_monitor(second)

    assert done.status == "succeeded"
    lines = (runfolder.run_dir(submitted.id) / runfolder.METRICS).read_text().splitlines()
    assert sorted(metric_steps(submitted.id)) == sorted({json.loads(line)["step"] for line in lines})
    assert len(metric_steps(submitted.id)) == 81  # 80 lines and the progress sample at 0, each once


def test_a_garbled_metrics_line_is_skipped_and_logged_and_the_rest_ingested(running_monitor, studio):
    submitted = jobs.submit("probe", {"rate": 10, "seconds": 3})
    wait_for(lambda: metric_steps(submitted.id), 60, "the first metrics")
    runfolder.append_metric(runfolder.run_dir(submitted.id), {"step": 10_000, "loss": 1.0})
    with open(runfolder.run_dir(submitted.id) / runfolder.METRICS, "a") as handle:
        handle.write('{"step": 5, "loss": \n')  # a torn write

    done = wait_for(lambda: finished(submitted.id), 60, "the job to finish")

    assert done.status == "succeeded"
    wait_for(lambda: 10_000 in metric_steps(submitted.id), 10, "the line after the garbled one")
    assert len(metric_steps(submitted.id)) == 32  # 30 lines, progress at 0, and the extra good line
    assert "skipped a garbled metrics line" in (studio / "logs" / "monitor.log").read_text()


def test_a_deleted_run_folder_fails_the_job_and_the_monitor_keeps_going(running_monitor):
    import shutil

    doomed = jobs.submit("probe", {"rate": 5, "seconds": 120})
    wait_for(lambda: job(doomed.id).progress_done > 0, 60, "the job to run")
    shutil.rmtree(runfolder.run_dir(doomed.id))

    failed = wait_for(lambda: finished(doomed.id), 15, "the job to be failed")
    assert failed.status == "failed" and failed.error == "its run folder was deleted"

    after = jobs.submit("probe", {"rate": 20, "seconds": 0.5})
    assert wait_for(lambda: finished(after.id), 60, "the next job").status == "succeeded"


@pytest.mark.parametrize("running_monitor", [{"STUDIO_HEARTBEAT_TIMEOUT_S": "3"}], indirect=True)
def test_a_job_whose_heartbeat_stops_is_failed(running_monitor):
    submitted = jobs.submit("probe", {"rate": 5, "seconds": 120})
    running = wait_for(lambda: (j := job(submitted.id)).progress_done > 0 and j, 60, "the job to run")
    os.killpg(running.pid, signal.SIGSTOP)  # alive, but frozen: no more heartbeats

    failed = wait_for(lambda: finished(submitted.id), 20, "the frozen job to be failed")
    assert failed.error == "no heartbeat for 3 s: the job stopped responding"


@pytest.mark.parametrize("running_monitor", [{"STUDIO_CANCEL_GRACE_S": "2"}], indirect=True)
def test_a_job_that_ignores_a_cancel_is_stopped_by_force(running_monitor):
    submitted = jobs.submit("probe", {"rate": 5, "seconds": 120})
    running = wait_for(lambda: (j := job(submitted.id)).progress_done > 0 and j, 60, "the job to run")
    os.killpg(running.pid, signal.SIGSTOP)  # a stopped process cannot act on SIGTERM

    jobs.request_cancel(submitted.id)
    stopped = wait_for(lambda: finished(submitted.id), 20, "the job to be stopped")
    assert stopped.status == "cancelled"
    assert stopped.error == "did not stop within 2 s of the cancel; stopped by force"


def test_a_second_monitor_for_the_same_folder_exits_with_a_clear_message(running_monitor, studio):
    second = subprocess.run(
        [sys.executable, "-m", "pipeline.jobs.monitor"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 1
    assert f"Another monitor (pid {running_monitor.pid}) is already running for {studio}" in second.stderr
    assert running_monitor.poll() is None  # the first one carries on


# --- in-process: ingest details and the cloud poller's schedule ------------------------------


def test_ingest_reads_only_whole_lines_and_resumes_from_its_offset():
    submitted = jobs.submit("probe")
    folder = runfolder.run_dir(submitted.id)
    folder.mkdir(parents=True)
    runfolder.append_metric(folder, {"step": 1, "loss": 2.0})
    with open(folder / runfolder.METRICS, "a") as handle:
        handle.write('{"step": 2, "loss": 1.')  # still being written

    with session_scope() as session:
        row = session.get(Job, submitted.id)
        assert ingest.ingest_job(session, row) == 1
    with open(folder / runfolder.METRICS, "a") as handle:
        handle.write('5}\n{"step": 2, "val_loss": 1.7}\n')  # the same step again, with another value
    with session_scope() as session:
        row = session.get(Job, submitted.id)
        assert ingest.ingest_job(session, row) == 1
        assert ingest.ingest_job(session, row) == 0  # nothing new: nothing added

    with session_scope() as session:
        rows = {m.step: m for m in session.exec(select(TrainingMetric).where(TrainingMetric.job_id == submitted.id))}
    assert (rows[2].loss, rows[2].val_loss) == (1.5, 1.7)  # merged into one row
    assert job(submitted.id).metrics_offset == (folder / runfolder.METRICS).stat().st_size


def test_cloud_jobs_are_polled_with_backoff_after_failures():
    answers = iter(
        [
            RuntimeError("503 from provider"),
            RuntimeError("503 again"),
            {"done": 3, "total": 10, "unit": "steps", "metrics": [{"step": 3, "loss": 0.9}]},
        ]
    )

    def poll(_job):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monitor.register_cloud_poller("cloud_test", monitor.CloudPoller(poll, interval_s=1.0, max_interval_s=60))
    try:
        with session_scope() as session:
            cloud = Job(kind="cloud_test", status="running")
            session.add(cloud)
            session.flush()
            cloud_id = cloud.id
        worker = monitor.Monitor()
        intervals = []
        for _ in range(3):
            worker.polls.setdefault(cloud_id, monitor._PollState()).next_at = 0  # due now
            worker.poll_cloud()
            intervals.append(worker.polls[cloud_id].interval)
    finally:
        monitor.CLOUD_POLLERS.pop("cloud_test")

    assert intervals == [2.0, 4.0, 1.0]  # doubled after each failure, back to normal after a success
    polled = job(cloud_id)
    assert (polled.progress_done, polled.progress_total) == (3, 10)
    assert metric_steps(cloud_id) == [3]


def test_the_app_starts_the_monitor_when_none_is_running(monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("STUDIO_AUTOSTART_MONITOR", "1")
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    assert not at.exception
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    assert "Background worker starting" in sidebar or "Background worker running" in sidebar
    try:
        wait_for(monitor.is_alive, 30, "the monitor the app started")
        again = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
        sidebar = " ".join(m.value for m in again.sidebar.markdown)
        assert ":green[:material/check_circle:] Background worker running" in sidebar  # a green tick
        assert monitor.ensure_running() is False  # one is enough
    finally:
        os.kill(int(monitor.lock_path().read_text()), signal.SIGTERM)
        wait_for(lambda: not monitor.is_alive(), 20, "the monitor to stop")


def test_a_job_killed_during_start_up_is_reported_as_killed(running_monitor):
    submitted = jobs.submit("probe", {"rate": 5, "seconds": 60})
    starting = wait_for(lambda: (j := job(submitted.id)).pid and j, 60, "the job's process to be started")
    os.killpg(starting.pid, signal.SIGKILL)  # still importing: it has not reported once

    failed = wait_for(lambda: finished(submitted.id), 10, "the job to be marked failed")
    assert failed.error == "process exited without finishing (killed by SIGKILL)"
    assert failed.attempt == 1 and failed.exit_code == -signal.SIGKILL


FOREGROUND = """
import sys
from pipeline import jobs
from pipeline.jobs import foreground, probe
job = jobs.submit("probe", {"rate": 10, "seconds": float(sys.argv[1])}, run_here=True)
print(job.id, flush=True)
final, _ = foreground.run(job, probe.run, lambda *a: None)
print(final.status, final.error, flush=True)
"""


def test_a_command_line_job_runs_beside_the_monitor_which_watches_and_can_cancel_it(running_monitor):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    alone = subprocess.run([sys.executable, "-c", FOREGROUND, "2"], cwd=REPO, env=env, capture_output=True, text=True)
    job_id = int(alone.stdout.split()[0])
    assert alone.stdout.split()[1:] == ["succeeded", "None"], alone.stderr  # the monitor left it alone
    assert (job(job_id).executor, job(job_id).status) == ("foreground", "succeeded")

    cancelled = subprocess.Popen(
        [sys.executable, "-c", FOREGROUND, "120"], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
    )
    job_id = int(cancelled.stdout.readline())
    wait_for(lambda: job(job_id).progress_done > 0, 60, "the command line's job to make progress")
    jobs.request_cancel(job_id)  # the Cancel button: the monitor passes it on to that process

    assert cancelled.wait(timeout=30) == 0
    assert job(job_id).status == "cancelled"
    assert "cancel requested" in runfolder.log_tail(job_id)


def test_a_started_job_that_never_reports_is_failed_after_the_start_grace():
    submitted = jobs.submit("probe")
    assert states.transition(submitted.id, "queued", "running", executor="local")  # claimed; nothing started
    runfolder.prepare(submitted.id, 1)
    worker = monitor.Monitor(start_grace_s=1)

    worker.check_running()
    assert job(submitted.id).status == "running"  # within its grace
    time.sleep(1.3)
    worker.check_running()

    failed = job(submitted.id)
    assert (failed.status, failed.error) == ("failed", "it did not report within 1 s of being started")
