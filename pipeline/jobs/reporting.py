"""How a running job's progress, metrics, log lines and heartbeats reach the database: one interface.

RunFolderReporter   writes the run folder (status.json, metrics.jsonl, log.txt); the monitor sees
                    the files through watchdog and ingests them. The default, for jobs on this machine.
DatabaseReporter    writes straight to the database through the same ingest functions the monitor
                    uses, with no run folder: for a job on a machine that does not share data/runs/
                    (a Ray node). Its log lines go to the database (keys masked) and to standard
                    output, which the executor keeps (Ray's job log).
"""

from __future__ import annotations

import os
import sys
from abc import ABC, abstractmethod
from pathlib import Path

from pipeline.jobs import runfolder


class Reporter(ABC):
    @abstractmethod
    def status(self, snapshot: dict) -> None:
        """The job's state: progress, message, heartbeat, attempt, and at the end its final status."""

    @abstractmethod
    def metric(self, record: dict) -> None:
        """One metrics record: {"step": int, "at": epoch seconds, ...values}."""

    @abstractmethod
    def log(self, line: str) -> None:
        """One line of the job's log, already stamped."""


class RunFolderReporter(Reporter):
    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def status(self, snapshot: dict) -> None:
        runfolder.write_status(self.folder, snapshot)

    def metric(self, record: dict) -> None:
        runfolder.append_metric(self.folder, record)

    def log(self, line: str) -> None:
        with open(self.folder / runfolder.LOG, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")


class DatabaseReporter(Reporter):
    def __init__(self, job_id: int, attempt: int | None = None):
        self.job_id = job_id
        self.attempt = attempt

    def status(self, snapshot: dict) -> None:
        from pipeline.jobs import ingest

        ingest.report(self.job_id, snapshot, [])

    def metric(self, record: dict) -> None:
        from pipeline.jobs import ingest

        ingest.report(self.job_id, None, [record])

    def log(self, line: str) -> None:
        from pipeline import settings
        from pipeline.jobs import ingest

        line = settings.redact(line)  # Ray keeps standard output in its own logs: no key goes there either
        print(line, file=sys.stdout, flush=True)
        ingest.report_log(self.job_id, self.attempt, line)


def for_job(job_id: int, folder: Path, attempt: int | None = None) -> Reporter:
    """The reporter a job process uses: STUDIO_JOB_REPORTING=database skips the run folder."""
    if os.environ.get("STUDIO_JOB_REPORTING", "runfolder") == "database":
        return DatabaseReporter(job_id, attempt)
    return RunFolderReporter(folder)
