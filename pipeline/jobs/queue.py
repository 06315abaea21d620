"""The job queue: what pages and the command line ask of jobs.

Pages and the command line write intents here (a new job, a cancel request, a resume). Status
changes go through the state machine (states.py); the monitor claims queued jobs and starts them.
A command line that runs a job itself submits it already claimed for its own process.

A job kind is a function `run(ctx: JobContext, params: dict) -> None`, named in KINDS by its
import path.
"""

from __future__ import annotations

import getpass
import importlib
import os
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlmodel import select

from pipeline import access, storage
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.jobs import keys, runfolder, states
from pipeline.jobs.states import ACTIVE, FINISHED
from pipeline.models import Job, LLMCall, TrainingMetric, utcnow

__all__ = ["ACTIVE", "FINISHED"]

KINDS: dict[str, str] = {
    "probe": "pipeline.jobs.probe:run",
    "generation": "pipeline.generation.job:run",
    "train_local": "pipeline.training.local:run",
    "train_openai": "pipeline.training.openai_backend:run",
    "train_together": "pipeline.training.together_backend:run",
    "evaluation": "pipeline.evaluation.job:run",
    "pairs": "pipeline.datasets.persona_pairs:run",
    "export": "pipeline.registry.export_job:run",
    "data_curve": "pipeline.training.data_curve:run",
}
# What a kind must tidy when its process dies without a last word (SIGKILL, lost heartbeat, forced
# cancel): the monitor calls it after recording the end. `(job_id) -> None`.
STOP_HOOKS: dict[str, str] = {
    "generation": "pipeline.generation.runner:mark_cancelled",
    "export": "pipeline.registry.export_job:tidy",
}
KIND_LABELS = {
    "probe": "Worker check",
    "generation": "Generation",
    "train_local": "Local training",
    "train_openai": "OpenAI fine-tuning",
    "train_together": "Together fine-tuning",
    "evaluation": "Evaluation",
    "pairs": "Persona pairs",
    "export": "Export",
    "data_curve": "Data-size curve",
}


def _worker_keys() -> list[str] | None:
    from pipeline.jobs import monitor

    return monitor.state().get("keys") if monitor.is_alive() else None


def submit(
    kind: str, params: dict | None = None, *, name: str = "", started_by: str = "", run_here: bool = False
) -> Job:
    """A new job: queued for the monitor, or with `run_here` already running in this process.

    A job run here is inserted and claimed in one transaction, so no monitor can claim it first.
    """
    if kind not in KINDS:
        raise UserFacingError(f"Unknown job kind {kind!r}. Known kinds: {', '.join(sorted(KINDS))}.")
    params = params or {}
    if not run_here:
        keys.check_worker_sees(kind, params, _worker_keys())
    storage.check()  # a store this machine cannot write (no driver, no credentials): refused now, in words
    with session_scope() as session:
        job = Job(
            kind=kind,
            name=name or KIND_LABELS.get(kind, kind),
            params=params,
            started_by=access.actor(started_by) or default_user(),
        )
        session.add(job)
        session.flush()
        if run_here:
            runfolder.prepare(job.id)
            states.transition(
                job.id, states.QUEUED, states.RUNNING, session=session, executor="foreground", pid=os.getpid()
            )
        job_id = job.id
    job = get(job_id)
    if run_here:
        runfolder.prepare(job.id, job.attempt)
    return job


def request_cancel(job_id: int) -> Job:
    """Ask for a job to stop. The monitor acts on it; a queued job is simply never started."""
    access.check("cancel")
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
    """Queue a finished job again for the monitor; its kind picks up where it left off (a generation
    retries its failures). A command line that resumes a job itself uses foreground.claim instead."""
    access.check("cancel")
    job = get(job_id)
    if job.status not in FINISHED:
        raise UserFacingError(f"Job {job_id} is still {job.status}.")
    keys.check_worker_sees(job.kind, job.params, _worker_keys())
    storage.check()
    if not states.transition(job_id, job.status, states.QUEUED):
        raise UserFacingError(f"Job {job_id} changed while being queued again; look at it and try once more.")
    runfolder.clear_status(job_id)
    return get(job_id)


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
    """The operating system's name for who runs this, when nobody gave a name; never "root", which
    names a container's account, not a person."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        return ""
    return "" if name == "root" else name


def sweep_of(params: dict | None) -> str | None:
    """The sweep a job belongs to (training.runs queues a grid as jobs sharing this id), or None."""
    sweep = (params or {}).get("sweep")
    return str(sweep["id"]) if isinstance(sweep, dict) and sweep.get("id") else None


def kind_function(kind: str):
    return _load(KINDS[kind])


def _load(path: str):
    module_name, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def after_stop(kind: str, job_id: int) -> None:
    """Tidy what a job that died mid-work left behind (its kind's STOP_HOOKS entry), if anything."""
    if kind in STOP_HOOKS:
        _load(STOP_HOOKS[kind])(job_id)
