"""Jobs on an existing Ray cluster: the executor behind the seam when STUDIO_EXECUTOR=ray.

The monitor submits each attempt through Ray's Jobs API, at the cluster's dashboard address
(RAY_ADDRESS, such as http://head:8265):

  entrypoint     `python -m pipeline.jobs run ID --attempt N`, with the node's python (STUDIO_RAY_PYTHON)
  submission id  studio-<job>-<attempt>-<8 hex from the job's creation time>: one per attempt, the same
                 whoever computes it, so a restarted monitor (or the page) finds the attempt again
  runtime env    working_dir: this project's code, without data/, .venv, tests, docs or .streamlit (where
                 secrets.toml lives); env_vars: STUDIO_JOB_REPORTING=database (no run folder here: progress,
                 metrics, log lines and heartbeats go straight into the shared database), DATABASE_URL
                 without its password, the nodes' data folder, and the studio's other non-secret settings
  resources      one CPU a job (STUDIO_RAY_NUM_CPUS); a local training or data-size curve asks for a GPU
                 when the cluster has one, else STUDIO_RAY_TRAIN_CPUS (2) CPUs, at most a node's worth

It follows each attempt with the status API (at most once a second per job) and cancels it with
stop_job: Ray sends SIGTERM, the job saves what it has and records its end, and Ray kills it after
STUDIO_CANCEL_GRACE_S (passed as RAY_JOB_STOP_WAIT_TIME_S). No key is ever put in the runtime
environment, the metadata or the entrypoint: each node reads its own (its environment when `ray start`
ran, or the secrets file STUDIO_SECRETS_FILE names there), and the database password comes from the
node's PGPASSWORD or ~/.pgpass.

Ray is imported only when a cluster is asked something: the rest of the studio never pays for it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shlex
import signal
import time
from dataclasses import dataclass
from datetime import UTC

from pipeline import settings
from pipeline.errors import UserFacingError
from pipeline.jobs.executors import Executor
from pipeline.models import Job

log = logging.getLogger("pipeline.monitor")

PENDING, RUNNING, STOPPED, SUCCEEDED, FAILED = "PENDING", "RUNNING", "STOPPED", "SUCCEEDED", "FAILED"
TERMINAL = (STOPPED, SUCCEEDED, FAILED)
GPU_KINDS = ("train_local", "data_curve")

# Shipped with every job: the code. Anchored at the project root (gitignore syntax); .gitignore is honoured too.
EXCLUDES = [
    "/.git",
    "/.ci",
    "/.venv",
    "/data",
    "/tests",
    "/docs",
    "/bench",
    "/.streamlit",  # secrets.toml: never uploaded
    ".env",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".ruff_cache",
]
# The studio's settings a job on a node does not need, or that name this machine, or that hold a secret.
NOT_FORWARDED = {
    "STUDIO_DATA_DIR",  # replaced by the nodes' data folder
    "STUDIO_SECRETS_FILE",  # this machine's file: a node names its own
    "STUDIO_WEBHOOK_URL",  # a Slack webhook's path is its secret; the monitor posts, not the job
    "STUDIO_PUBLIC_URL",
    "STUDIO_EXECUTOR",
    "STUDIO_JOB_REPORTING",
    "STUDIO_AUTOSTART_MONITOR",
    "STUDIO_HEARTBEAT_TIMEOUT_S",
    "STUDIO_START_GRACE_S",
    "STUDIO_CANCEL_GRACE_S",
    "STUDIO_BOARD_CACHE",
}
NOT_FORWARDED_PREFIXES = ("STUDIO_RAY_", "STUDIO_MONITOR_", "STUDIO_CONCURRENCY_")
SECRET_WORDS = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
URL_WITH_PASSWORD = re.compile(r"://[^/@\s:]*:[^/@\s]+@")


def address() -> str:
    """The cluster's dashboard address, as the Ray SDK reads it (RAY_API_SERVER_ADDRESS, else RAY_ADDRESS)."""
    found = os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS") or ""
    found = found.strip().rstrip("/")
    if found and "://" not in found:
        found = f"http://{found}"
    return found


def shown(address_: str) -> str:
    """An address as words may show it: without any user:password@ in it."""
    return re.sub(r"://[^/@]*@", "://", address_)


def submission_id(job: Job) -> str:
    """The Ray submission id of the job's current attempt: unique on a cluster that several studios share
    (the job's creation time, to the microsecond, is in it), and the same in every process that asks."""
    created = job.created_at
    if created is not None and created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    token = hashlib.sha256(f"{job.id}|{created.isoformat() if created else ''}".encode()).hexdigest()[:8]
    return f"studio-{job.id}-{job.attempt}-{token}"


def where(job: Job) -> str:
    """Where the job's attempt runs, in words, for the monitoring page."""
    if not (at := address()):
        from pipeline.jobs import monitor

        at = str(monitor.state().get("ray_address") or "")  # the running monitor's, when this process has none
    cluster = f"the Ray cluster at {shown(at)}" if at else "the Ray cluster"
    return f"{cluster} (submission {submission_id(job)})"


def database_url_for_nodes() -> str:
    """The shared database as the nodes reach it (STUDIO_RAY_DATABASE_URL, else this process's), without
    its password: a node gets that from its own PGPASSWORD or ~/.pgpass, never from Ray's job record."""
    from sqlalchemy.engine import URL, make_url

    url = make_url(os.environ.get("STUDIO_RAY_DATABASE_URL") or settings.database_url())
    if url.password is not None:  # URL.set(password=None) would keep it: None there means "unchanged"
        url = URL.create(url.drivername, url.username, None, url.host, url.port, url.database, url.query)
    return url.render_as_string(hide_password=False)


def _holds_secret(name: str, value: str) -> bool:
    return bool(SECRET_WORDS.search(name) or URL_WITH_PASSWORD.search(value) or settings.redact(value) != value)


def job_environment(source: dict[str, str]) -> dict[str, str]:
    """The env_vars a job gets on a node: what it needs to report into the shared database, and the
    studio's settings from `source` (the monitor's environment), never a key or a password."""
    env = {
        name: value
        for name, value in source.items()
        if name.startswith("STUDIO_")
        and name not in NOT_FORWARDED
        and not name.startswith(NOT_FORWARDED_PREFIXES)
        and not _holds_secret(name, value)
    }
    env.update(
        STUDIO_JOB_REPORTING="database",
        DATABASE_URL=database_url_for_nodes(),
        STUDIO_DATA_DIR=os.environ.get("STUDIO_RAY_DATA_DIR") or str(settings.data_dir()),
        RAY_JOB_STOP_WAIT_TIME_S=str(int(float(os.environ.get("STUDIO_CANCEL_GRACE_S") or 30))),
        PYTHONUNBUFFERED="1",
    )
    if os.environ.get("STUDIO_RAY_MODELS_DIR"):
        env["STUDIO_MODELS_DIR"] = os.environ["STUDIO_RAY_MODELS_DIR"]
    return env


def runtime_environment(source: dict[str, str]) -> dict:
    return {"working_dir": str(settings.PROJECT_ROOT), "excludes": list(EXCLUDES), "env_vars": job_environment(source)}


def entrypoint(job: Job) -> str:
    python = os.environ.get("STUDIO_RAY_PYTHON") or "python"
    return f"{shlex.quote(python)} -m pipeline.jobs run {int(job.id)} --attempt {int(job.attempt)}"


def _exit_words(code: int) -> str:
    if code < 0 or code > 128:  # killed by a signal: -N from Python, 128+N through a shell
        number = -code if code < 0 else code - 128
        try:
            return f"its process exited without finishing (killed by {signal.Signals(number).name})"
        except ValueError:
            pass
    return f"its process exited without finishing (exit code {code})"


def _last_output(message: str, limit: int = 300) -> str:
    """The last line of the job's output that Ray quotes in a failed job's message, keys masked."""
    lines = [part.strip() for part in (message or "").splitlines()[1:] if part.strip()]  # [0]: Ray's own words
    return _first_words(lines[-1], limit) if lines else ""


def _first_words(message: str, limit: int = 300) -> str:
    line = next((part.strip() for part in (message or "").splitlines() if part.strip()), "")
    line = settings.redact(line)
    return line if len(line) <= limit else line[: limit - 1] + "…"


@dataclass
class _Seen:
    submission: str
    at: float
    status: str | None  # None: the cluster could not be asked
    message: str = ""
    exit_code: int | None = None
    missing: bool = False


class RayExecutor(Executor):
    name = "ray"
    run_folder = False  # the job reports straight into the database: nothing of it on this machine
    poll_s = 1.0  # ask the cluster about a job at most this often
    retry_s = 10.0  # after the cluster did not answer, ask it nothing (about any job) for this long
    timeout_s = (5.0, 120.0)  # connect, read (a first submit uploads the code)

    def __init__(self, address_: str | None = None) -> None:
        self.address = (address_ or address()).rstrip("/")
        self.shown = shown(self.address)
        self._client = None
        self._seen: dict[int, _Seen] = {}
        self._tracked: dict[int, str] = {}
        self._gpus: tuple[float, float, float] | None = None  # (checked at, GPUs in the cluster, CPUs of a node)
        self._warned_at = 0.0
        self._quiet_until = 0.0  # the cluster did not answer: each pass must not wait on it again

    # --- the cluster ---------------------------------------------------------------------------

    def _unreachable(self, exc: BaseException) -> UserFacingError:
        return UserFacingError(f"The Ray cluster at {self.shown} could not be reached: {_reason(exc)}.")

    def client(self):
        """A JobSubmissionClient whose requests time out (the SDK's own never do)."""
        if not self.address:
            raise UserFacingError(
                "STUDIO_EXECUTOR=ray needs RAY_ADDRESS: the Ray cluster's dashboard address, such as "
                "http://head-node:8265."
            )
        if self._client is None:
            try:
                self._client = _client_class()(self.address, timeout=self.timeout_s)
            except Exception as exc:  # noqa: BLE001 - refused, timed out, not a Ray dashboard: said in words
                raise self._unreachable(exc) from None
        return self._client

    def _ask(self, job_id: int, submission: str) -> _Seen:
        seen = self._seen.get(job_id)
        now = time.monotonic()
        if seen is not None and seen.submission == submission and now - seen.at < self.poll_s:
            return seen
        if now < self._quiet_until:
            return _Seen(submission, now, None)
        try:
            info = self.client().get_job_info(submission)
        except Exception as exc:  # noqa: BLE001 - a cluster that cannot answer now is asked again later
            missing = _is_missing(exc)
            if not missing:
                self._client = None  # connect afresh next time
                self._quiet_until = time.monotonic() + self.retry_s
                self._warn(f"could not ask the Ray cluster about job {job_id} ({submission}): {_reason(exc)}")
            seen = _Seen(submission, now, None, missing=missing)
        else:
            status = str(getattr(info.status, "value", info.status))
            seen = _Seen(submission, now, status, info.message or "", getattr(info, "driver_exit_code", None))
        self._seen[job_id] = seen
        return seen

    def _warn(self, message: str) -> None:
        if time.monotonic() - self._warned_at > 30:  # an unreachable cluster: once in a while, not every pass
            self._warned_at = time.monotonic()
            log.warning(message)

    def _resources(self, kind: str) -> dict:
        cpus = float(os.environ.get("STUDIO_RAY_NUM_CPUS") or 1)
        if kind not in GPU_KINDS:
            return {"entrypoint_num_cpus": cpus}
        gpus, node_cpus = self._cluster_size()
        if gpus >= 1:
            return {"entrypoint_num_cpus": cpus, "entrypoint_num_gpus": 1}
        wanted = float(os.environ.get("STUDIO_RAY_TRAIN_CPUS") or 2)
        return {"entrypoint_num_cpus": max(min(wanted, node_cpus), cpus) if node_cpus else cpus}

    def _cluster_size(self) -> tuple[float, float]:
        """(GPUs in the cluster, CPUs of its largest node), from the state API; asked once a minute."""
        if self._gpus is not None and time.monotonic() - self._gpus[0] < 60:
            return self._gpus[1], self._gpus[2]
        try:
            from ray.util.state import list_nodes

            nodes = [n for n in list_nodes(address=self.address, timeout=10) if n.state == "ALIVE"]
        except Exception as exc:  # noqa: BLE001 - without the figures, ask for CPUs only
            log.warning("could not list the Ray cluster's nodes (%s); asking for CPUs only", _reason(exc))
            return 0.0, 0.0
        gpus = sum(float((n.resources_total or {}).get("GPU", 0)) for n in nodes)
        cpus = max((float((n.resources_total or {}).get("CPU", 0)) for n in nodes), default=0.0)
        self._gpus = (time.monotonic(), gpus, cpus)
        return gpus, cpus

    # --- the seam ------------------------------------------------------------------------------

    def start(self, job: Job, env: dict[str, str]) -> None:
        client = self.client()
        submission = submission_id(job)
        try:
            client.submit_job(
                entrypoint=entrypoint(job),
                runtime_env=runtime_environment(env),
                submission_id=submission,
                metadata={"studio_job": str(job.id), "attempt": str(job.attempt), "kind": job.kind},
                **self._resources(job.kind),
            )
        except Exception as exc:  # noqa: BLE001 - every refusal ends the attempt with its reason in words
            if _is_connection(exc):
                self._client = None
                raise self._unreachable(exc) from None
            if "already" not in str(exc).lower():
                raise UserFacingError(
                    f"The Ray cluster at {self.shown} refused the job: {_first_words(str(exc))}"
                ) from None
            log.info("job %s: submission %s already on the cluster; following it", job.id, submission)
        self._tracked[job.id] = submission
        return None

    def why_dead(self, job: Job) -> str | None:
        submission = submission_id(job)
        self._tracked.setdefault(job.id, submission)  # a restarted monitor adopts it
        seen = self._ask(job.id, submission)
        if seen.missing:
            return f"the Ray cluster at {self.shown} has no job {submission} (was the cluster restarted?)"
        if seen.status in (None, PENDING, RUNNING):
            return None
        if seen.status == STOPPED:
            return f"the Ray job {submission} was stopped on the cluster before it finished"
        if seen.exit_code is not None:
            said = f"the Ray job {submission} ended on its node: {_exit_words(seen.exit_code)}"
            if 0 < seen.exit_code < 128 and (last := _last_output(seen.message)):
                said += f"; its last output: {last}"  # a crash before it could report (a database it cannot reach)
            return said
        words = _first_words(seen.message) or "no reason given"
        return f"the Ray job {submission} ended as {seen.status.lower()} on the cluster: {words}"

    def waiting(self, job: Job) -> str | None:
        seen = self._ask(job.id, submission_id(job))
        if seen.status == PENDING:
            return "Waiting for the Ray cluster to start it (setting up its environment, or waiting for resources)"
        return None

    def exit_code(self, job: Job) -> int | None:
        seen = self._seen.get(job.id)
        return seen.exit_code if seen is not None else None

    def cancel(self, job: Job, force: bool) -> None:
        """stop_job: Ray sends SIGTERM, then SIGKILL after RAY_JOB_STOP_WAIT_TIME_S (the cancel grace)."""
        submission = submission_id(job)
        try:
            self.client().stop_job(submission)
        except Exception as exc:  # noqa: BLE001 - the monitor's grace and verdicts carry on regardless
            log.warning("job %s: could not stop Ray job %s: %s", job.id, submission, _reason(exc))

    def finished(self) -> dict[int, int]:
        ended = {}
        for job_id, submission in list(self._tracked.items()):
            seen = self._ask(job_id, submission)
            if seen.status in TERMINAL or seen.missing:
                if seen.exit_code is None:
                    self.forget(job_id)  # stopped before an exit code: nothing to record
                else:
                    ended[job_id] = seen.exit_code
        return ended

    def forget(self, job_id: int) -> None:
        self._tracked.pop(job_id, None)
        self._seen.pop(job_id, None)


def _client_class():
    from ray.job_submission import JobSubmissionClient

    class TimedClient(JobSubmissionClient):
        def __init__(self, address_: str, timeout: tuple[float, float]):
            self._timeout = timeout
            super().__init__(address_)

        def _do_request(self, method, endpoint, **kwargs):
            kwargs.setdefault("timeout", self._timeout)
            return super()._do_request(method, endpoint, **kwargs)

    return TimedClient


def _chain(exc: BaseException) -> list[BaseException]:
    found, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        found.append(exc)
        exc = exc.__cause__ or exc.__context__
    return found


def _is_connection(exc: BaseException) -> bool:
    import requests

    return any(isinstance(e, ConnectionError | TimeoutError | requests.ConnectionError | requests.Timeout)
               for e in _chain(exc))  # fmt: skip


def _is_missing(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "404" in text or "does not exist" in text


def _reason(exc: BaseException) -> str:
    """What went wrong, in a few words: the innermost cause the SDK wrapped."""
    text = " ".join(str(e) for e in _chain(exc))
    if "Connection refused" in text or "ConnectionRefused" in text:
        return "connection refused (is the head node running, and is RAY_ADDRESS its dashboard address, port 8265?)"
    if "timed out" in text.lower() or "Timeout" in text:
        return "no answer in time"
    if "Name or service not known" in text or "nodename nor servname" in text or "NameResolution" in text:
        return "its host name is unknown"
    return _first_words(str(exc), 200) or type(exc).__name__
