"""Jobs on a real Ray cluster: a head node started on 127.0.0.1 for this module (`ray start --head --block`,
its own temporary folder and ports, stopped at the end), and a real monitor with STUDIO_EXECUTOR=ray.

The head runs with a node's environment: this project's virtualenv first on its PATH (as a node whose
`ray start` ran in an activated virtualenv), none of the studio's settings and no keys. Each job's node
data folder is a folder of its own (STUDIO_RAY_DATA_DIR), so nothing of a Ray job lands in the studio's
data folder: its progress, metrics, log lines and heartbeats reach the shared database only.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from sqlmodel import select

from pipeline import jobs, personas
from pipeline.db import session_scope
from pipeline.jobs import board, ray_cluster, runfolder
from pipeline.models import Example, JobLogLine, ModelEntry
from tests.conftest import write_secrets
from tests.processes import start_monitor, stop_monitor, wait_for
from tests.ray_head import Head, command_lines, free_ports

pytestmark = pytest.mark.slow

MONITOR_KEY = "sk-ant-monitor-only-0123456789abcdef"  # in the monitor's environment: must never travel
FILE_KEY = "sk-openai-from-the-file-0123456789abcdef"  # in the studio's secrets.toml: must never travel
DB_PASSWORD = "db-password-never-shipped"


@pytest.fixture(scope="module")
def head():
    started = Head()
    yield started
    started.stop()


@pytest.fixture
def node(tmp_path) -> Path:
    """The data folder the cluster's nodes use: not the studio's."""
    folder = tmp_path / "node"
    folder.mkdir()
    return folder


@pytest.fixture
def on_ray(head, node, studio, monkeypatch):
    """A monitor that hands every job to the Ray head; the studio's other processes know the address too."""
    monkeypatch.setenv("RAY_ADDRESS", head.address)
    monitor = start_monitor(STUDIO_EXECUTOR="ray", STUDIO_RAY_DATA_DIR=str(node))
    yield monitor
    if monitor.poll() is None:
        stop_monitor(monitor)


def finished(job_id: int):
    job = jobs.get(job_id)
    return job if job.status in jobs.FINISHED else None


def running_with_progress(job_id: int):
    job = jobs.get(job_id)
    return job if job.status == "running" and job.progress_done > 0 else None


def no_run_folder_here(job_id: int) -> bool:
    return not runfolder.run_dir(job_id).exists()


def entrypoint_pids(head, job_id: int, attempt: int) -> list[int]:
    """The job's own process on the node (`python -m pipeline.jobs run ID --attempt N`), found by its command line
    among the head's descendants only: another test's local job with the same id must never be hit."""
    wanted = ["-m", "pipeline.jobs", "run", str(job_id), "--attempt", str(attempt)]
    return [
        pid
        for pid, argv in command_lines().items()
        if argv
        and "python" in Path(argv[0]).name
        and argv[1 : 1 + len(wanted)] == wanted
        and descends_from(pid, head.process.pid)
    ]


def descends_from(pid: int, root: int) -> bool:
    while pid > 1:
        if pid == root:
            return True
        try:  # /proc/PID/stat: "pid (comm) state ppid …"; comm may hold spaces, so split after its ")"
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
    return False


# --- a worker check, keys, the page ------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)
def test_a_worker_check_runs_on_ray_and_reports_into_the_database_with_no_run_folder_here(
    head, node, studio, backend, monkeypatch
):
    if backend == "postgresql":  # the studio's URL carries a password (the test server trusts its socket)
        url = os.environ["DATABASE_URL"].replace("://postgres@", f"://postgres:{DB_PASSWORD}@")
        monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", MONITOR_KEY)
    write_secrets(f'OPENAI_API_KEY = "{FILE_KEY}"\n')
    monitor = start_monitor(STUDIO_EXECUTOR="ray", RAY_ADDRESS=head.address, STUDIO_RAY_DATA_DIR=str(node))
    try:
        submitted = jobs.submit("probe", {"rate": 10, "seconds": 2}, started_by="tester")
        done = wait_for(lambda: finished(submitted.id), 90, "the worker check to finish on Ray")
        where = board.detail(done.id).where  # this process has no RAY_ADDRESS: the running monitor says where
    finally:
        stop_monitor(monitor)

    assert (done.status, done.error, done.executor) == ("succeeded", None, "ray")
    assert (done.progress_done, done.progress_total, done.progress_unit) == (20, 20, "lines")
    assert done.heartbeat_at is not None and done.pid is None
    assert sorted(m.step for m in jobs.metrics(done.id)) == list(range(21))  # progress at 0, lines 1..20
    assert no_run_folder_here(done.id)  # nothing on the submitting side: the node wrote its own
    assert (node / "runs" / str(done.id)).is_dir()
    submission = ray_cluster.submission_id(done)
    assert head.status(submission) == "SUCCEEDED"

    assert where == f"Attempt 1 · ran on the Ray cluster at {head.address} (submission {submission})"
    said, _ = board.split_log(board.detail(done.id).log)
    assert f"job {done.id} (probe) attempt 1 started" in said and "job succeeded" in said  # log lines from the database

    info = head.client.get_job_info(submission)
    shipped = json.dumps({"runtime_env": info.runtime_env, "metadata": info.metadata, "entrypoint": info.entrypoint})
    ray_log = head.client.get_job_logs(submission)
    with session_scope() as session:
        stored = " ".join(session.exec(select(JobLogLine.line).where(JobLogLine.job_id == done.id)))
    for secret in (MONITOR_KEY, FILE_KEY, DB_PASSWORD):
        assert secret not in shipped and secret not in ray_log and secret not in stored
    env_vars = info.runtime_env["env_vars"]
    assert not [name for name in env_vars if "KEY" in name]
    assert (env_vars["STUDIO_JOB_REPORTING"], env_vars["STUDIO_DATA_DIR"]) == ("database", str(node))
    assert info.metadata == {"studio_job": str(done.id), "attempt": "1", "kind": "probe"}
    assert info.entrypoint == f"python -m pipeline.jobs run {done.id} --attempt 1"


def test_the_live_page_says_the_job_runs_on_ray(head, on_ray):
    from tests.test_pages import open_app

    submitted = jobs.submit("probe", {"rate": 5, "seconds": 60})
    running = wait_for(lambda: running_with_progress(submitted.id), 90, "the job to run on Ray")
    at = open_app("pages/monitor.py")
    captions = " ".join(c.value for c in at.caption)
    assert f"Attempt 1 · runs on the Ray cluster at {head.address} (submission studio-{running.id}-1-" in captions
    assert at.metric[0].value.endswith("running]")

    next(b for b in at.button if b.label == "Cancel this job").click().run()  # the studio's cancel: stop_job
    cancelled = wait_for(lambda: finished(submitted.id), 30, "the job to stop")
    assert (cancelled.status, cancelled.error) == ("cancelled", None)  # it saved and said so itself
    assert 0 < cancelled.progress_done < cancelled.progress_total
    assert "cancel requested" in board.detail(cancelled.id).log
    assert wait_for(lambda: head.status(ray_cluster.submission_id(cancelled)) == "STOPPED", 15, "Ray's STOPPED")


# --- faults ------------------------------------------------------------------------------------


def test_a_ray_job_killed_on_its_node_fails_within_ten_seconds_and_resumes_from_the_page(head, on_ray):
    from tests.test_pages import open_app

    submitted = jobs.submit("probe", {"rate": 5, "seconds": 6})
    running = wait_for(lambda: running_with_progress(submitted.id), 90, "the job to run on Ray")
    first = ray_cluster.submission_id(running)
    pids = entrypoint_pids(head, running.id, 1)
    assert pids, "the job's process on the node"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)

    wait_for(lambda: head.status(first) == "FAILED", 30, "Ray to report the job failed")
    said_at = time.monotonic()
    failed = wait_for(lambda: finished(submitted.id), 10, "the studio to mark it failed")
    assert time.monotonic() - said_at < 10
    assert failed.status == "failed"
    assert (
        failed.error
        == f"the Ray job {first} ended on its node: its process exited without finishing (killed by SIGKILL)"
    )

    at = open_app("pages/monitor.py")
    assert [e.value for e in at.error] == [f"This job failed: {failed.error}"]
    next(b for b in at.button if b.label == "Resume this job").click().run()
    assert not at.exception

    resumed = wait_for(lambda: finished(submitted.id), 90, "the second attempt to finish")
    assert (resumed.status, resumed.attempt, resumed.error) == ("succeeded", 2, None)
    assert (resumed.progress_done, resumed.progress_total) == (30, 30)
    second = ray_cluster.submission_id(resumed)
    assert second != first
    wait_for(lambda: head.status(second) == "SUCCEEDED", 15, "Ray to see the second attempt's process exit")
    assert no_run_folder_here(resumed.id)


def test_a_ray_job_stopped_on_the_cluster_saves_and_ends_cancelled(head, on_ray):
    submitted = jobs.submit("probe", {"rate": 5, "seconds": 60})
    running = wait_for(lambda: running_with_progress(submitted.id), 90, "the job to run on Ray")
    submission = ray_cluster.submission_id(running)
    head.client.stop_job(submission)  # someone stops it from Ray's dashboard or command line, not from the studio

    stopped = wait_for(lambda: finished(submitted.id), 30, "the studio to record it")
    assert (stopped.status, stopped.error) == ("cancelled", None)  # SIGTERM: it saved what it had and said so
    assert 0 < stopped.progress_done < stopped.progress_total
    assert "cancel requested" in board.detail(stopped.id).log
    assert wait_for(lambda: head.status(submission) == "STOPPED", 15, "Ray's STOPPED")


def test_a_job_whose_node_reads_another_database_fails_with_its_last_words(head, node, tmp_path):
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere' / 'studio.db'}"  # a wrong STUDIO_RAY_DATABASE_URL: not the studio's
    ray = {"STUDIO_EXECUTOR": "ray", "RAY_ADDRESS": head.address, "STUDIO_RAY_DATA_DIR": str(node)}
    monitor = start_monitor(**ray, STUDIO_RAY_DATABASE_URL=elsewhere)
    try:
        submitted = jobs.submit("probe", {"rate": 5, "seconds": 1})
        failed = wait_for(lambda: finished(submitted.id), 90, "the job to fail")
    finally:
        stop_monitor(monitor)
    submission = ray_cluster.submission_id(failed)
    assert (failed.status, failed.error) == (
        "failed",
        f"the Ray job {submission} ended on its node: its process exited without finishing (exit code 2); "
        f"its last output: error: There is no job {failed.id}.",  # what it said before it could report
    )


def test_an_unreachable_cluster_fails_the_job_in_plain_words_and_the_monitor_goes_on(studio):
    (port,) = free_ports(1)  # nothing listens there
    monitor = start_monitor(STUDIO_EXECUTOR="ray", RAY_ADDRESS=f"http://127.0.0.1:{port}")
    try:
        first = jobs.submit("probe", {"rate": 5, "seconds": 1})
        failed = wait_for(lambda: finished(first.id), 60, "the job to fail")
        second = jobs.submit("probe", {"rate": 5, "seconds": 1})
        also = wait_for(lambda: finished(second.id), 60, "the next job to be handled too")
        assert monitor.poll() is None  # the monitor goes on
    finally:
        stop_monitor(monitor)
    expected = (
        f"The Ray cluster at http://127.0.0.1:{port} could not be reached: connection refused "
        "(is the head node running, and is RAY_ADDRESS its dashboard address, port 8265?)."
    )
    assert (failed.status, failed.error) == ("failed", expected)
    assert (also.status, also.error) == ("failed", expected)
    assert no_run_folder_here(first.id)


# --- real work: a generation on the built-in model, a tiny training ------------------------------


def test_a_small_generation_on_the_built_in_model_runs_on_ray(on_ray, node):
    from pipeline.generation import service

    personas.seed_samples()
    persona = personas.get_persona("collaborative")
    params = {
        "persona_id": persona.id,
        "examples": 1,
        "concurrency": 1,
        "document_words": [30, 60],
        "response_words": 30,
        "min_document_words": 5,
        "min_response_words": 5,
    }
    submitted = service.start(params, started_by="tester")
    done = wait_for(lambda: finished(submitted.id), 240, "the generation to finish on Ray")

    assert (done.status, done.error, done.executor) == ("succeeded", None, "ray")
    assert (done.progress_done, done.progress_total) == (1, 1)
    with session_scope() as session:
        made = list(session.exec(select(Example).where(Example.job_id == done.id)))
    assert len(made) == 1 and made[0].status in ("pending", "failed")
    if made[0].status == "pending":
        assert made[0].stage_models["response"] == "local/smollm2-135m-instruct"
    assert no_run_folder_here(done.id)


@pytest.fixture
def shared_store(tmp_path, monkeypatch) -> Path:
    """A storage URI the studio and the nodes share (a file:// folder here): set before the monitor starts, which
    passes it on to each job."""
    folder = tmp_path / "store"
    folder.mkdir()
    monkeypatch.setenv("STUDIO_STORAGE_URI", folder.as_uri())
    return folder


def test_a_tiny_local_training_runs_on_ray(models, studio, node, shared_store, on_ray):
    from pipeline.datasets import build
    from pipeline.review import actions
    from pipeline.review.filters import ExampleFilter
    from pipeline.training import service
    from tests.seed import add_examples
    from tests.test_training import tiny_config

    personas.seed_samples()
    persona = personas.get_persona("collaborative")
    ids = add_examples(persona.id, 24, status="accepted")
    actions.edit_response(ids[0], "A warmer reply: what would help you most here?", "ada")
    build.save("collab-train", build.preview(ExampleFilter(persona_id=persona.id, statuses=["accepted"]), 0.2))
    assert (shared_store / "datasets" / "collab-train").is_dir() and not (node / "datasets").exists()

    submitted = service.start(tiny_config(name="tiny-on-ray"))
    done = wait_for(lambda: finished(submitted.id), 300, "the training to finish on Ray")

    assert (done.status, done.error, done.executor) == ("succeeded", None, "ray")
    steps = jobs.metrics(done.id)
    assert [m.step for m in steps] == [1, 2, 3, 4, 5]
    assert all(m.loss is not None for m in steps)
    with session_scope() as session:
        entry = session.exec(select(ModelEntry).where(ModelEntry.name == "tiny-on-ray")).one()
    assert (entry.reference, entry.job_id) == ("local/tiny-on-ray", done.id)
    # the node read the dataset from the store and wrote the adapter there; the registry reads it back from it
    assert (shared_store / "models" / "tiny-on-ray" / "adapter_config.json").exists()
    assert not (models / "tiny-on-ray").exists() and not (node / "models" / "tiny-on-ray").exists()
    from pipeline.llm import embedded

    assert embedded.model_path("tiny-on-ray") == shared_store / "models" / "tiny-on-ray"
    assert no_run_folder_here(done.id)
    assert (node / "runs" / str(done.id) / "config.yaml").exists()  # its checkpoints stay on the node


# --- in-process: what travels with a job, and a monitor with no cluster named -------------------


def test_only_settings_that_hold_no_secret_travel_with_a_job(monkeypatch, studio):
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://studio:hunter2-password@db.internal:5432/studio")
    monkeypatch.setenv("ANTHROPIC_API_KEY", MONITOR_KEY)
    monkeypatch.setenv("STUDIO_RAY_DATA_DIR", "/srv/studio")
    source = {
        "STUDIO_QUALITY_MIN_WORDS": "5",  # a setting jobs read: travels
        "STUDIO_MODELS_DIR": "/srv/models",
        "STUDIO_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/secret-path",  # the monitor's, and a secret
        "STUDIO_SECRETS_FILE": "/home/ada/studio/secrets.toml",  # this machine's file
        "STUDIO_STORAGE_URI": "s3://user:password@bucket/studio",  # credentials in a URL
        "STUDIO_EXPORT_TOKEN": "anything",  # a name that says secret
        "STUDIO_NOTE": f"prefix {MONITOR_KEY}",  # a key's value inside
        "ANTHROPIC_API_KEY": MONITOR_KEY,
        "PATH": "/usr/bin",
    }
    env = ray_cluster.job_environment(source)
    assert env == {
        "STUDIO_QUALITY_MIN_WORDS": "5",
        "STUDIO_MODELS_DIR": "/srv/models",
        "STUDIO_JOB_REPORTING": "database",
        "DATABASE_URL": "postgresql+psycopg://studio@db.internal:5432/studio",
        "STUDIO_DATA_DIR": "/srv/studio",
        "RAY_JOB_STOP_WAIT_TIME_S": "30",
        "PYTHONUNBUFFERED": "1",
    }
    shipped = ray_cluster.runtime_environment(source)
    assert shipped["env_vars"] == env
    assert {"/.venv", "/data", "/.streamlit"} <= set(shipped["excludes"])  # .streamlit: secrets.toml never uploaded


def test_a_ray_monitor_without_an_address_fails_jobs_saying_what_to_set(monkeypatch, studio):
    from pipeline.jobs import monitor

    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    submitted = jobs.submit("probe")
    monitor.Monitor(executor_name="ray").start_queued()

    failed = jobs.get(submitted.id)
    assert (failed.status, failed.executor) == ("failed", "ray")
    assert failed.error == (
        "STUDIO_EXECUTOR=ray needs RAY_ADDRESS: the Ray cluster's dashboard address, such as http://head-node:8265."
    )
    assert no_run_folder_here(failed.id)
