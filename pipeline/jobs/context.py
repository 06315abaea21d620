"""What job code is given: report progress, log metrics and messages, notice a cancel request.

A heartbeat thread reports the job's state every few seconds, so the monitor can tell a job
that is alive but quiet from one that hangs. Every report names the job's attempt: what an
earlier attempt of the same job left behind is never read as this one's. A cancel arrives as
SIGTERM to the job's process (group); job code checks `cancelled()` between items, saves what it
has, and returns. Where the reports go is the reporter's business (see reporting.py).
"""

from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from pipeline.jobs.reporting import Reporter, RunFolderReporter

HEARTBEAT_SECONDS = 2.0


class JobContext:
    def __init__(
        self,
        job_id: int,
        folder: Path,
        kind: str,
        attempt: int | None = None,
        reporter: Reporter | None = None,
    ):
        self.job_id = job_id
        self.folder = folder  # where the job keeps its own files (checkpoints, reports)
        self.kind = kind
        self.attempt = attempt
        self.reporter = reporter or RunFolderReporter(folder)
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._stop = threading.Event()
        self._status = {
            "job_id": job_id,
            "attempt": attempt,
            "kind": kind,
            "status": "running",
            "done": 0,
            "total": 0,
            "unit": "items",
            "message": "",
            "error": None,
        }
        self._heartbeat = threading.Thread(target=self._beat, name=f"heartbeat-{job_id}", daemon=True)

    # --- for job code ------------------------------------------------------------------

    def report_progress(
        self, done: int, total: int | None = None, unit: str | None = None, message: str = "", chart: bool = True
    ) -> None:
        """Progress for the pages; with `chart`, also a point on the job's items-over-time chart (not for
        training, which charts its own curves against steps, nor for a stage before it)."""
        with self._lock:
            self._status["done"] = int(done)
            if total is not None:
                self._status["total"] = int(total)
            if unit:
                self._status["unit"] = unit
            if message:
                self._status["message"] = message
        self._write()
        if chart and self._status["unit"] != "steps":  # training logs its own curves against steps
            self.log_metric(int(done), items_done=int(done))

    def log_metric(self, step: int, **values) -> None:
        self.reporter.metric({"step": int(step), "at": time.time(), **values})

    def log(self, message: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
        self.reporter.log(f"{stamp} {message}")

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    # --- for the job runner ------------------------------------------------------------

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self._cancel.set())
        self._write()
        self._heartbeat.start()

    def finish(self, status: str, error: str | None = None) -> None:
        self._stop.set()
        with self._lock:
            self._status.update(status=status, error=error)
        self._write()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            self._write()

    def _write(self) -> None:
        with self._lock:
            self._status["heartbeat"] = time.time()
            snapshot = dict(self._status)
            if self._stop.is_set() and snapshot["status"] == "running":
                return  # finish() has the last word
            self.reporter.status(snapshot)
