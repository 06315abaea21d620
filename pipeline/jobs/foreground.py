"""A job run in the caller's own process (the command line), visible as a job like any other.

The job is claimed for this process through the state machine (executor "foreground", this pid),
so the monitoring page shows it and a monitor, if one runs, watches it (heartbeat and all)
instead of starting it again. At the end the final state is ingested with the monitor's own code,
so the record is right either way.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.jobs import executors, ingest, queue, reporting, runfolder, states
from pipeline.jobs.context import JobContext
from pipeline.models import Job


def claim(job_id: int) -> Job:
    """Take job `job_id` to run in this process: a queued job, or a finished one to resume.

    A job running elsewhere is refused with where to follow it. One whose process is gone while
    its row still says running (killed with no monitor watching) is first recorded as failed with
    what happened to it, then resumed. When the monitor claims the same job at the same moment,
    exactly one of the two wins; this one says so if it loses.
    """
    job = queue.get(job_id)
    if job.status == states.RUNNING:
        watched = job.pid or job.executor == "ray"  # a Ray job has no pid here: the cluster is asked
        reason = executors.build(job.executor or "local").why_dead(job) if watched else None
        if reason is None:
            owner = {"local": "in the background worker", "ray": "on the Ray cluster"}.get(
                job.executor, f"in another command (pid {job.pid})"
            )
            raise UserFacingError(
                f"Job {job_id} is running {owner}; follow it with `python -m pipeline jobs show {job_id}`, "
                f"or cancel it first with `python -m pipeline jobs cancel {job_id}`."
            )
        states.transition(job_id, states.RUNNING, states.FAILED, attempt=job.attempt, error=reason)
        job = queue.get(job_id)
    runfolder.prepare(job_id)  # the folder exists before the row says running
    with session_scope() as session:  # resume and claim in one transaction: nobody claims in between
        if job.status in states.FINISHED:
            states.transition(job_id, job.status, states.QUEUED, session=session)
        won = states.transition(
            job_id, states.QUEUED, states.RUNNING, session=session, executor="foreground", pid=os.getpid()
        )
    if not won:
        raise UserFacingError(
            f"Job {job_id} was just started by the background worker; follow it with "
            f"`python -m pipeline jobs show {job_id}`."
        )
    job = queue.get(job_id)
    runfolder.prepare(job_id, job.attempt)  # a fresh status file for this attempt
    return job


def run(job: Job, work: Callable[[JobContext, dict], object], on_progress: Callable[[int, int, str], None]):
    """Run `work` (a job kind's function) here on a job claimed for this process.

    Returns (the job's final record, what `work` returned).
    """
    folder = runfolder.run_dir(job.id)
    ctx = _ReportingContext(
        job.id, folder, job.kind, job.attempt, reporting.for_job(job.id, folder, job.attempt), on_progress
    )
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
    return queue.get(job.id), result


class _ReportingContext(JobContext):
    """A JobContext that also tells the command line's progress bar."""

    def __init__(self, job_id, folder, kind, attempt, reporter, on_progress):
        super().__init__(job_id, folder, kind, attempt=attempt, reporter=reporter)
        self.on_progress = on_progress

    def report_progress(self, done, total=None, unit=None, message="", chart=True):
        super().report_progress(done, total, unit, message, chart)
        self.on_progress(done, total or 0, message)
