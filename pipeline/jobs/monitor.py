"""The monitor: the studio's one background worker (`python -m pipeline.jobs.monitor`).

One instance per data folder, guarded by a lock file. Each pass it:
- ingests what jobs wrote in data/runs/ (woken at once by watchdog; a full sweep every few
  seconds catches anything an event missed);
- fails running jobs whose process died, whose heartbeat stopped, or whose run folder vanished,
  with the reason in plain words (a new attempt has a grace period before its first report);
- passes cancel requests on through the job's executor, and stops it by force after a grace;
- polls cloud providers for jobs that run there (backends register a poller);
- claims queued jobs and starts them through its executor, within a concurrency limit per kind and
  one run of a sweep at a time.
Every status change it makes goes through the state machine (states.transition). It stops
cleanly on SIGTERM; jobs keep running and a new monitor adopts them.
"""

from __future__ import annotations

import fcntl
import json
import logging
import logging.handlers
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import update
from sqlmodel import select
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from pipeline import notifications, settings
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.jobs import executors, ingest, queue, runfolder, states
from pipeline.models import Job, utcnow

log = logging.getLogger("pipeline.monitor")

WATCHED = {runfolder.STATUS, runfolder.METRICS}
DEFAULT_CONCURRENCY = {"train_local": 1, "data_curve": 1}
FALLBACK_CONCURRENCY = 2


def lock_path() -> Path:
    return settings.data_dir() / "monitor.lock"


def state_path() -> Path:
    return settings.data_dir() / "monitor.json"


def concurrency(kind: str) -> int:
    value = os.environ.get(f"STUDIO_CONCURRENCY_{kind.upper()}")
    return int(value) if value else DEFAULT_CONCURRENCY.get(kind, FALLBACK_CONCURRENCY)


# --- cloud polling: training backends plug in here ---------------------------------------


@dataclass
class CloudPoller:
    """poll(job) returns a status.json-like dict and may return metric records under "metrics"."""

    poll: Callable[[Job], dict]
    interval_s: float = 15.0
    max_interval_s: float = 300.0


CLOUD_POLLERS: dict[str, CloudPoller] = {}


def register_cloud_poller(kind: str, poller: CloudPoller) -> None:
    CLOUD_POLLERS[kind] = poller


@dataclass
class _PollState:
    next_at: float = 0.0
    interval: float = 0.0
    failures: int = 0


# --- is one running? ------------------------------------------------------------------------


def is_alive() -> bool:
    """True when a monitor holds the lock for this data folder."""
    path = lock_path()
    if not path.exists():
        return False
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def state() -> dict:
    try:
        return json.loads(state_path().read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def start_detached() -> int:
    """Start a monitor that outlives the caller (its own session; output to data/logs/)."""
    settings.logs_dir().mkdir(parents=True, exist_ok=True)
    with open(settings.logs_dir() / "monitor.out", "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.jobs.monitor"],
            cwd=settings.PROJECT_ROOT,
            env=_child_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process.pid


_started_at: dict[Path, float] = {}
STARTING_GRACE_S = 20.0  # a new monitor needs a moment (imports) before it holds the lock


def _recently_started() -> bool:
    return time.monotonic() - _started_at.get(settings.data_dir(), -1e9) < STARTING_GRACE_S


def ensure_running() -> bool:
    """Start the monitor when none is alive. Returns True if one was started."""
    if is_alive() or _recently_started():
        return False
    start_detached()
    _started_at[settings.data_dir()] = time.monotonic()
    return True


def status_word() -> str:
    if is_alive():
        return "running"
    return "starting" if _recently_started() else "not running"


def _child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(settings.PROJECT_ROOT), env.get("PYTHONPATH")]))
    env["STUDIO_DATA_DIR"] = str(settings.data_dir())
    return env


# --- the worker -----------------------------------------------------------------------------


class _RunFolderEvents(FileSystemEventHandler):
    def __init__(self, dirty: set[int], wake: threading.Event, lock: threading.Lock):
        self.dirty, self.wake, self.lock = dirty, wake, lock

    def on_any_event(self, event: FileSystemEvent) -> None:
        for path in (event.src_path, getattr(event, "dest_path", "")):
            if path and Path(str(path)).name in WATCHED:
                job_id = runfolder.job_id_of(str(path))
                if job_id is not None:
                    with self.lock:
                        self.dirty.add(job_id)
                    self.wake.set()


@dataclass
class Monitor:
    tick_s: float = 0.5
    sweep_s: float = 5.0
    heartbeat_timeout_s: float = 30.0
    start_grace_s: float = 60.0  # a new attempt may take this long (imports) before its first report
    cancel_grace_s: float = 30.0
    debounce_s: float = 0.02
    use_watchdog: bool = True  # off: polling sweeps only (the benchmark's baseline)
    executor_name: str = "local"
    cancel_sent: dict[int, float] = field(default_factory=dict)
    polls: dict[int, _PollState] = field(default_factory=dict)

    def __post_init__(self):
        self.executor = executors.build(self.executor_name)  # what starts queued jobs
        self.watchers = {self.executor.name: self.executor, "foreground": executors.ForegroundExecutor()}
        if "ray" not in self.watchers and (self.executor_name == "ray" or os.environ.get("RAY_ADDRESS")):
            self.watchers["ray"] = executors.build("ray")  # Ray jobs of an earlier run are still followed
        self._dirty: set[int] = set()
        self._dirty_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._last_sweep = 0.0
        self._lock_handle = None
        self.notifier = notifications.Notifier()  # a webhook POST for each job that ends, when one is set

    # lifecycle

    def acquire(self) -> bool:
        path = lock_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 - held open for the monitor's whole life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_handle = handle
        return True

    def stop(self, *_) -> None:
        self._stop.set()
        self._wake.set()

    def run(self) -> int:
        if not self.acquire():
            holder = lock_path().read_text().strip() or "?"
            print(
                f"Another monitor (pid {holder}) is already running for {settings.data_dir()}; exiting.",
                file=sys.stderr,
            )
            return 1
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        runfolder.runs_dir().mkdir(parents=True, exist_ok=True)
        observer = Observer()
        if self.use_watchdog:
            handler = _RunFolderEvents(self._dirty, self._wake, self._dirty_lock)
            observer.schedule(handler, str(runfolder.runs_dir()), recursive=True)
        observer.start()
        log.info("monitor %s started for %s", os.getpid(), settings.data_dir())
        try:
            while not self._stop.is_set():
                try:
                    self.step()
                except Exception:  # noqa: BLE001 - one bad pass must not end the worker
                    log.exception("monitor pass failed; carrying on")
                if self._wake.wait(self.tick_s):
                    self._wake.clear()
                    time.sleep(self.debounce_s)  # let a burst of writes land, then read them together
        finally:
            observer.stop()
            observer.join(timeout=5)
            self.notifier.close(wait=False)
            state_path().unlink(missing_ok=True)
            log.info("monitor %s stopped", os.getpid())
        return 0

    # one pass

    def step(self) -> None:
        now = time.monotonic()
        with self._dirty_lock:  # the watchdog handler holds this same set: empty it in place
            dirty = set(self._dirty)
            self._dirty.clear()
        with session_scope() as session:
            running = list(session.exec(select(Job).where(Job.status == states.RUNNING)))
            if now - self._last_sweep >= self.sweep_s:
                dirty |= {job.id for job in running}
                self._last_sweep = now
            by_id = {job.id: job for job in running}
            for job_id in dirty:
                job = by_id.get(job_id) or session.get(Job, job_id)
                if job is not None:
                    ingest.ingest_job(session, job)
        self.check_running()
        self.pass_on_cancels()
        self.poll_cloud()
        self.start_queued()
        published = {"pid": os.getpid(), "tick": time.time(), "keys": keys_here(), "executor": self.executor.name}
        if isinstance(getattr(self.executor, "shown", None), str):
            published["ray_address"] = self.executor.shown  # the page says where a job runs
        state_path().write_text(json.dumps(published))
        self.notifier.tick()  # last: a failure here is logged by run() and touches nothing above

    def _watcher(self, job: Job) -> executors.Executor | None:
        return self.watchers.get(job.executor)

    def check_running(self) -> None:
        self._reap_finished()
        stopped: list[tuple[str, int]] = []
        with session_scope() as session:
            for job in list(session.exec(select(Job).where(Job.status == states.RUNNING))):
                if job.kind in CLOUD_POLLERS:
                    continue  # a cloud job has no local process: its poller reports its state
                reason = self._why_dead(job)
                if reason is None:
                    continue
                ingest.ingest_job(session, job)  # its last words may already be on disk
                if job.status == states.RUNNING:
                    watcher = self._watcher(job)
                    if watcher is not None:
                        watcher.cancel(job, force=True)  # a hung job's process must not live on
                    code = watcher.exit_code(job) if watcher is not None else None
                    # asked to stop, then gone before its last word (stopped by force where it ran): cancelled
                    final = states.CANCELLED if job.cancel_requested else states.FAILED
                    if final == states.CANCELLED:
                        reason = f"stopped on request before it recorded its end ({reason})"
                    if states.transition(
                        job.id,
                        states.RUNNING,
                        final,
                        attempt=job.attempt,
                        session=session,
                        error=reason,
                        exit_code=code,
                    ):
                        log.warning("job %s %s: %s", job.id, final, reason)
                        stopped.append((job.kind, job.id))
                self._forget(job.id)
        self._tidy(stopped)

    def _tidy(self, stopped: list[tuple[str, int]]) -> None:
        """After the ends are committed (a second writer inside that unit would wait on SQLite's lock)."""
        for kind, job_id in stopped:
            try:
                queue.after_stop(kind, job_id)
            except Exception:  # noqa: BLE001 - tidying one job must not stop the monitor
                log.exception("job %s: tidying after its end failed", job_id)

    def _reap_finished(self) -> None:
        """Collect exit codes of children whose jobs already reported their end."""
        exited = {}
        for watcher in self.watchers.values():
            exited.update(watcher.finished())
        if not exited:
            return
        with session_scope() as session:
            for job_id, code in exited.items():
                job = session.get(Job, job_id)
                if job is not None and job.status != states.RUNNING:
                    session.connection().execute(update(Job).where(Job.id == job_id).values(exit_code=code))
                    self._forget(job_id)

    def _why_dead(self, job: Job) -> str | None:
        if job.executor in ("local", "foreground") and not runfolder.run_dir(job.id).exists():
            return "its run folder was deleted"
        watcher = self._watcher(job)
        reason = watcher.why_dead(job) if watcher is not None else None
        if reason is not None:
            return reason
        now = utcnow()
        beat, started = _aware(job.heartbeat_at), _aware(job.started_at)
        if beat is None:  # this attempt has not reported yet: give it time to start
            waiting = watcher.waiting(job) if watcher is not None else None
            if waiting:  # not started yet where it runs (a cluster short of resources): no grace runs out
                if job.message != waiting:
                    states.record(job.id, job.attempt, message=waiting)
                return None
            if started is not None and now - started > timedelta(seconds=self.start_grace_s):
                return f"it did not report within {int(self.start_grace_s)} s of being started"
        elif now - beat > timedelta(seconds=self.heartbeat_timeout_s):
            return f"no heartbeat for {int(self.heartbeat_timeout_s)} s: the job stopped responding"
        return None

    def pass_on_cancels(self) -> None:
        now = time.monotonic()
        stopped: list[tuple[str, int]] = []
        with session_scope() as session:
            wanted = session.exec(select(Job).where(Job.cancel_requested, Job.status.in_(states.ACTIVE)))
            for job in list(wanted):
                if job.status == states.QUEUED:
                    states.transition(
                        job.id, states.QUEUED, states.CANCELLED, session=session, error="cancelled before it started"
                    )
                    continue
                watcher = self._watcher(job)
                if job.kind in CLOUD_POLLERS or watcher is None:
                    continue  # the backend's poller cancels with the provider
                if job.id not in self.cancel_sent:
                    watcher.cancel(job, force=False)
                    self.cancel_sent[job.id] = now
                    log.info("job %s: cancel requested, asked it to stop", job.id)
                elif now - self.cancel_sent[job.id] > self.cancel_grace_s:
                    watcher.cancel(job, force=True)
                    if states.transition(
                        job.id,
                        states.RUNNING,
                        states.CANCELLED,
                        attempt=job.attempt,
                        session=session,
                        error=f"did not stop within {int(self.cancel_grace_s)} s of the cancel; stopped by force",
                    ):
                        stopped.append((job.kind, job.id))
                    self._forget(job.id)
        self._tidy(stopped)

    def poll_cloud(self) -> None:
        if not CLOUD_POLLERS:
            return
        now = time.monotonic()
        with session_scope() as session:
            jobs = session.exec(select(Job).where(Job.status == states.RUNNING, Job.kind.in_(tuple(CLOUD_POLLERS))))
            for job in list(jobs):
                poller, state_ = CLOUD_POLLERS[job.kind], self.polls.setdefault(job.id, _PollState())
                if now < state_.next_at:
                    continue
                try:
                    report = poller.poll(job)
                except Exception as exc:  # noqa: BLE001 - a provider hiccup: back off and ask again
                    state_.failures += 1
                    state_.interval = min(max(state_.interval, poller.interval_s) * 2, poller.max_interval_s)
                    state_.next_at = now + state_.interval
                    log.warning("job %s: polling failed (%s); next try in %.0f s", job.id, exc, state_.interval)
                    continue
                state_.failures, state_.interval = 0, poller.interval_s
                state_.next_at = now + poller.interval_s
                ingest.store_metrics(session, job.id, report.get("metrics", []))
                ingest.apply_status(session, job, {"heartbeat": time.time(), "attempt": job.attempt, **report})

    def start_queued(self) -> None:
        """Claim queued jobs within each kind's limit, then start them.

        The claim is the state machine's conditional UPDATE, so a command line claiming the same
        job at the same moment cannot also win; on PostgreSQL the pick skips rows another
        transaction holds. The run folder exists before the row says running.
        """
        claimed: list[int] = []
        with session_scope() as session:
            running: dict[str, int] = {}
            sweeps: set[str] = set()  # a sweep's runs go one at a time, whatever their kind allows
            for kind, params in session.exec(select(Job.kind, Job.params).where(Job.status == states.RUNNING)):
                running[kind] = running.get(kind, 0) + 1
                sweeps.add(queue.sweep_of(params))
            queued = session.exec(
                select(Job)
                .where(Job.status == states.QUEUED, ~Job.cancel_requested)
                .order_by(Job.id)
                .with_for_update(skip_locked=True)
            )
            for job in list(queued):
                if running.get(job.kind, 0) >= concurrency(job.kind):
                    continue
                sweep = queue.sweep_of(job.params)
                if sweep is not None and sweep in sweeps:
                    continue
                if self.executor.run_folder:
                    runfolder.prepare(job.id)
                if states.transition(
                    job.id, states.QUEUED, states.RUNNING, session=session, executor=self.executor.name
                ):
                    claimed.append(job.id)
                    running[job.kind] = running.get(job.kind, 0) + 1
                    sweeps.add(sweep)
        for job_id in claimed:
            self._start(job_id)

    def _start(self, job_id: int) -> None:
        with session_scope() as session:
            job = session.get(Job, job_id)
        if self.executor.run_folder:
            runfolder.prepare(job.id, job.attempt)  # a fresh status file: nothing of an earlier attempt is read
        try:
            pid = self.executor.start(job, _child_env())
        except Exception as exc:  # noqa: BLE001 - a job that cannot start fails with the reason
            reason = str(exc) if isinstance(exc, UserFacingError) else f"could not be started: {exc}"
            states.transition(job.id, states.RUNNING, states.FAILED, attempt=job.attempt, error=reason)
            expected = isinstance(exc, UserFacingError)  # said in words: no traceback needed
            log.warning("job %s could not be started: %s", job.id, reason, exc_info=not expected)
            return
        states.record(job.id, job.attempt, pid=pid)
        log.info("job %s (%s) attempt %s started as pid %s", job.id, job.kind, job.attempt, pid)

    def _forget(self, job_id: int) -> None:
        for watcher in self.watchers.values():
            watcher.forget(job_id)
        self.cancel_sent.pop(job_id, None)
        self.polls.pop(job_id, None)


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def keys_here() -> list[str]:
    """Names (never values) of the provider keys in this process's environment."""
    return sorted(name for name in settings.key_names() if os.environ.get(name, "").strip())


def _setup_logging() -> None:
    settings.logs_dir().mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        settings.logs_dir() / "monitor.log", maxBytes=5_000_000, backupCount=3, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


def main() -> int:
    _setup_logging()
    env = os.environ.get
    return Monitor(
        heartbeat_timeout_s=float(env("STUDIO_HEARTBEAT_TIMEOUT_S", 30)),
        start_grace_s=float(env("STUDIO_START_GRACE_S", 60)),
        executor_name=env("STUDIO_EXECUTOR", "local"),
        cancel_grace_s=float(env("STUDIO_CANCEL_GRACE_S", 30)),
        sweep_s=float(env("STUDIO_MONITOR_SWEEP_S", 5)),
        use_watchdog=env("STUDIO_MONITOR_WATCHDOG", "1") != "0",
    ).run()


if __name__ == "__main__":
    sys.exit(main())
