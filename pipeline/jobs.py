"""Jobs: long work queued by pages or the command line, run by the monitor as its own process.

Pages and the command line only write intents here (a new queued job, a cancel request). The
monitor claims queued jobs and starts each as `python -m pipeline.jobs run <id>`, and is the
only writer of job status and metrics after that.

A job kind is a function `run(ctx: JobContext, params: dict) -> None`, named in KINDS by its
import path. Later kinds (generation, training, evaluation) add a line there.
"""

from __future__ import annotations

import getpass
import importlib
import sys
import traceback
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlmodel import select

from pipeline import runfolder
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.job_context import JobContext
from pipeline.models import Job, LLMCall, TrainingMetric, utcnow

KINDS: dict[str, str] = {
    "probe": "pipeline.probe:run",
    "generation": "pipeline.generation.job:run",
    "train_local": "pipeline.training.local:run",
    "train_openai": "pipeline.training.openai_backend:run",
    "train_together": "pipeline.training.together_backend:run",
    "evaluation": "pipeline.evaluation.job:run",
}
KIND_LABELS = {
    "probe": "Worker check",
    "generation": "Generation",
    "train_local": "Local training",
    "train_openai": "OpenAI fine-tuning",
    "train_together": "Together fine-tuning",
    "evaluation": "Evaluation",
}
ACTIVE = ("queued", "running")
FINISHED = ("succeeded", "failed", "cancelled")


def submit(kind: str, params: dict | None = None, *, name: str = "", started_by: str = "") -> Job:
    if kind not in KINDS:
        raise UserFacingError(f"Unknown job kind {kind!r}. Known kinds: {', '.join(sorted(KINDS))}.")
    with session_scope() as session:
        job = Job(
            kind=kind,
            name=name or KIND_LABELS.get(kind, kind),
            params=params or {},
            started_by=started_by or default_user(),
        )
        session.add(job)
        session.flush()
        session.refresh(job)
    return job


def request_cancel(job_id: int) -> Job:
    """Ask for a job to stop. The monitor acts on it; a queued job is simply never started."""
    with session_scope() as session:
        job = _existing(session, job_id)
        if job.status in FINISHED:
            raise UserFacingError(f"Job {job_id} has already {job.status}.")
        job.cancel_requested = True
        session.add(job)
    return job


def _existing(session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise UserFacingError(f"There is no job {job_id}.")
    return job


def requeue(job_id: int) -> Job:
    """Queue a finished job again; its kind picks up where it left off (a generation retries its failures)."""
    with session_scope() as session:
        job = _existing(session, job_id)
        if job.status not in FINISHED:
            raise UserFacingError(f"Job {job_id} is still {job.status}.")
        job.status, job.error, job.cancel_requested = "queued", None, False
        job.pid, job.exit_code, job.started_at, job.finished_at, job.heartbeat_at = None, None, None, None, None
        session.add(job)
    return job


def get(job_id: int) -> Job:
    with session_scope() as session:
        return _existing(session, job_id)


def list_jobs(limit: int = 200) -> list[Job]:
    with session_scope() as session:
        return list(session.exec(select(Job).order_by(Job.id.desc()).limit(limit)))


def metrics(job_id: int) -> list[TrainingMetric]:
    with session_scope() as session:
        return list(
            session.exec(select(TrainingMetric).where(TrainingMetric.job_id == job_id).order_by(TrainingMetric.step))
        )


def costs(job_ids: list[int]) -> dict[int, float]:
    """Spend so far per job, from the gateway's call records."""
    if not job_ids:
        return {}
    with session_scope() as session:
        rows = session.exec(
            select(LLMCall.job_id, func.coalesce(func.sum(LLMCall.cost_usd), 0.0))
            .where(LLMCall.job_id.in_(job_ids))
            .group_by(LLMCall.job_id)
        ).all()
    return {job_id: float(cost) for job_id, cost in rows}


@dataclass
class Timing:
    elapsed_s: float | None
    eta_s: float | None


def timing(job: Job, now: datetime | None = None) -> Timing:
    """Elapsed time, and an ETA from the average pace so far."""
    if job.started_at is None:
        return Timing(None, None)
    end = job.finished_at or now or utcnow()
    elapsed = max((end - job.started_at).total_seconds(), 0.0)
    eta = None
    if job.status == "running" and 0 < job.progress_done < job.progress_total:
        eta = elapsed / job.progress_done * (job.progress_total - job.progress_done)
    return Timing(elapsed, eta)


def default_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def kind_function(kind: str):
    module_name, _, attribute = KINDS[kind].partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def run(job_id: int) -> int:
    """The job process: run one job's kind function inside a JobContext. Returns the exit code."""
    job = get(job_id)
    ctx = JobContext(job.id, runfolder.run_dir(job.id), job.kind)
    ctx.start()
    ctx.log(f"job {job.id} ({job.kind}) started with params {job.params}")
    try:
        kind_function(job.kind)(ctx, dict(job.params))
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


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "run":
        print("usage: python -m pipeline.jobs run JOB_ID", file=sys.stderr)
        sys.exit(2)
    sys.exit(run(int(sys.argv[2])))
