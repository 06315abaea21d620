"""A job run in the caller's own process (the command line), visible as a job like any other.

The job is recorded as running and owned by this process, so the monitoring page shows it and a
monitor, if one runs, adopts it (heartbeat and all) instead of starting it again. At the end the
final state is ingested with the monitor's own code, so the record is right either way.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from pipeline import ingest, jobs, runfolder
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.job_context import JobContext
from pipeline.models import Job, utcnow


def claim(job: Job) -> Job:
    """Mark a new or finished job as running here (a running one is refused: it has an owner)."""
    with session_scope() as session:
        if job.id is not None:
            job = session.get(Job, job.id)
            if job.status == "running":
                raise UserFacingError(f"Job {job.id} is still running.")
        job.status, job.pid, job.error, job.finished_at = "running", os.getpid(), None, None
        job.started_at, job.heartbeat_at = utcnow(), utcnow()
        job.cancel_requested = False
        session.add(job)
        session.flush()
        session.refresh(job)
    return job


def run(job: Job, work: Callable[[JobContext, dict], object], on_progress: Callable[[int, int, str], None]):
    """Run `work` (a job kind's function) here; returns (the job's final record, what `work` returned)."""
    ctx = _ReportingContext(job.id, runfolder.run_dir(job.id), job.kind, on_progress)
    ctx.start()
    try:
        result = work(ctx, dict(job.params))
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
    return jobs.get(job.id), result


class _ReportingContext(JobContext):
    """A JobContext that also tells the command line's progress bar."""

    def __init__(self, job_id, folder, kind, on_progress):
        super().__init__(job_id, folder, kind)
        self.on_progress = on_progress

    def report_progress(self, done, total=None, unit=None, message=""):
        super().report_progress(done, total, unit, message)
        self.on_progress(done, total or 0, message)
