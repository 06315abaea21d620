"""The job process: `python -m pipeline.jobs run ID [--attempt N]`.

Started by the monitor with `--attempt`, it runs that attempt only if the row still says so (an
attempt cancelled or superseded in the meantime does nothing). Run by hand without it, it is a
command line running the job itself: it claims a queued job, or resumes a finished or dead one.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.jobs import foreground, ingest, queue, reporting, runfolder, states
from pipeline.jobs.context import JobContext
from pipeline.models import Job


def run(job_id: int, attempt: int | None = None) -> int:
    """Run one attempt of a job's kind function inside a JobContext. Returns the exit code."""
    try:
        job = queue.get(job_id) if attempt is not None else foreground.claim(job_id)
    except UserFacingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if attempt is not None and (job.status != states.RUNNING or job.attempt != attempt):
        print(f"Job {job_id} attempt {attempt} is no longer the one to run ({job.status}); nothing to do.")
        return 0
    folder = runfolder.run_dir(job.id)
    ctx = JobContext(
        job.id, folder, job.kind, attempt=job.attempt, reporter=reporting.for_job(job.id, folder, job.attempt)
    )
    ctx.start()
    ctx.log(f"job {job.id} ({job.kind}) attempt {job.attempt} started with params {job.params}")
    try:
        return _run_kind(ctx, job)
    finally:
        if attempt is None:  # run by hand: no monitor may be watching, so record the end here too
            with session_scope() as session:
                ingest.ingest_job(session, session.get(Job, job.id))


def _run_kind(ctx: JobContext, job: Job) -> int:
    try:
        queue.kind_function(job.kind)(ctx, dict(job.params))
    except UserFacingError as exc:
        ctx.log(f"failed: {exc}")
        ctx.finish("failed", str(exc))
        return 1
    except Exception as exc:  # noqa: BLE001 - any crash ends as a recorded reason, never silence
        ctx.log("failed with an unexpected error:\n" + traceback.format_exc())
        ctx.finish("failed", f"{type(exc).__name__}: {exc}")
        return 1
    final = "cancelled" if ctx.cancelled() else "succeeded"
    ctx.log(f"job {final}")
    ctx.finish(final)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.jobs")
    parser.add_argument("action", choices=["run"])
    parser.add_argument("job_id", type=int)
    parser.add_argument("--attempt", type=int, help="the attempt the monitor claimed (omit to run it here)")
    args = parser.parse_args(argv)
    return run(args.job_id, args.attempt)
