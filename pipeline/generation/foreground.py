"""A generation run in the caller's own process (the command line), visible as a job like any other.

The run is recorded as a running job owned by this process, so the monitoring page shows it and a
monitor, if one runs, adopts it (heartbeat and all). At the end the final state is ingested with
the monitor's own code, so the record is right whether or not a monitor was running.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from pipeline import ingest, jobs, runfolder
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.generation import job as generation_job
from pipeline.generation.config import GenerationConfig
from pipeline.job_context import JobContext
from pipeline.models import Job, utcnow


def start(config: GenerationConfig | None, output: Path | None, resume: int | None, started_by: str = "") -> Job:
    with session_scope() as session:
        if resume is not None:
            job = session.get(Job, resume)
            if job is None or job.kind != "generation":
                raise UserFacingError(f"There is no generation job {resume} to resume.")
            if job.status == "running":
                raise UserFacingError(f"Job {resume} is still running.")
        else:
            params = config.model_dump(mode="json") | ({"output": str(output)} if output else {})
            job = Job(
                kind="generation",
                name=f"Generation ({config.examples} examples)",
                params=params,
                started_by=started_by or jobs.default_user(),
            )
        job.status, job.pid, job.error, job.finished_at = "running", os.getpid(), None, None
        job.started_at, job.heartbeat_at = utcnow(), utcnow()
        session.add(job)
        session.flush()
        session.refresh(job)
    return job


def run(job: Job, on_progress: Callable[[int, int, str], None]) -> tuple[Job, dict[str, Path]]:
    """Run the job here; returns its final record and the files it wrote."""
    ctx = _ReportingContext(job.id, runfolder.run_dir(job.id), job.kind, on_progress)
    ctx.start()
    try:
        paths = generation_job.run(ctx, dict(job.params))
    except UserFacingError as exc:
        ctx.finish("failed", str(exc))
        raise
    except KeyboardInterrupt:
        ctx.finish("cancelled", "stopped from the keyboard")
        raise
    except BaseException as exc:
        ctx.finish("failed", f"{type(exc).__name__}: {exc}")
        raise
    else:
        ctx.finish("cancelled" if ctx.cancelled() else "succeeded")
    finally:
        with session_scope() as session:
            ingest.ingest_job(session, session.get(Job, job.id))
    return jobs.get(job.id), paths


class _ReportingContext(JobContext):
    """A JobContext that also tells the command line's progress bar."""

    def __init__(self, job_id, folder, kind, on_progress):
        super().__init__(job_id, folder, kind)
        self.on_progress = on_progress

    def report_progress(self, done, total=None, unit=None, message=""):
        super().report_progress(done, total, unit, message)
        self.on_progress(done, total or 0, message)
