"""What the monitoring page shows: every job as a row, and one job in detail."""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field

from sqlalchemy import func
from sqlmodel import select

from pipeline import clock, jobs
from pipeline.db import session_scope
from pipeline.jobs import ingest, runfolder
from pipeline.models import Job, LLMCall
from pipeline.training import early_stop, gallery

# A job's status in one plain word, as the command line prints it; the pages add an icon and a
# colour (pages.status_badge), so nothing here depends on an emoji font.
STATUS_WORDS = ("queued", "running", "cancelling", "succeeded", "failed", "cancelled")


def badge(job: Job) -> str:
    """The job's status word: its status, or "cancelling" while a cancel is on its way."""
    if job.cancel_requested and job.status in jobs.ACTIVE:
        return "cancelling"
    return job.status


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


_costs: dict[tuple, dict[int, float]] = {}
_costs_lock = threading.Lock()


def costs(job_ids: list[int]) -> dict[int, float]:
    """`jobs.costs`, cached: the sum over every call record is redone only when a call is recorded
    (the key is the calls' count and highest id: call records are only ever inserted). The job rows
    themselves are read fresh on every refresh: their progress, heartbeat and ETA change by the second."""
    if os.environ.get("STUDIO_BOARD_CACHE", "1") == "0":
        return jobs.costs(job_ids)
    with session_scope() as session:
        calls = tuple(session.exec(select(func.count(LLMCall.id), func.max(LLMCall.id))).one())
    key = (tuple(job_ids), calls)
    with _costs_lock:
        found = _costs.get(key)
    if found is None:
        found = jobs.costs(job_ids)
        with _costs_lock:
            if len(_costs) > 64:
                _costs.clear()
            _costs[key] = found
    return dict(found)


def rows(limit: int = 200) -> list[dict]:
    listed = jobs.list_jobs(limit)
    spent = costs([j.id for j in listed])
    table = []
    for job in listed:
        timing = jobs.timing(job)
        table.append(
            {
                "id": job.id,
                "kind": jobs.KIND_LABELS.get(job.kind, job.kind),
                "name": job.name,
                "status": badge(job),
                "progress": (job.progress_done / job.progress_total) if job.progress_total else 0.0,
                "done": f"{job.progress_done} / {job.progress_total} {job.progress_unit}" if job.progress_total else "",
                "elapsed": duration(timing.elapsed_s),
                "eta": duration(timing.eta_s),
                "started": clock.local(job.started_at or job.created_at),
                "started by": job.started_by or "—",
                "cost": spent.get(job.id, 0.0),
            }
        )
    return table


STAMPED = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} ")  # the job's own words (JobContext.log)


def split_log(text: str) -> tuple[str, str]:
    """(what the job said: its own stamped lines; everything else: warnings, progress bars).

    A stamped line ending in ":" introduces what follows it (a traceback the job logged): those
    lines stay with it until the next stamped line."""
    said, technical, introduced = [], [], False
    for line in text.splitlines():
        if STAMPED.match(line):
            said.append(clock.local_log(line))
            introduced = line.endswith(":")
        elif introduced:
            said.append(line)
        else:
            technical.append(line)
    return "\n".join(said), "\n".join(technical)


@dataclass
class JobDetail:
    job: Job
    badge: str
    metrics: list[dict]
    log: str
    cost_usd: float
    elapsed: str
    eta: str
    best_step: int | None = None  # training: the step of the lowest validation loss (the kept checkpoint)
    stopping: str = ""  # training, once ended with a best checkpoint: why it stopped, in words
    warning: str = ""  # a cloud training whose validation loss has turned upward
    gallery: list[dict] = field(default_factory=list)  # local training: the checkpoint gallery's lines

    @property
    def gallery_table(self) -> list[dict]:
        """Probe × step: each probe's reply at each checkpoint, the best step marked."""
        return gallery.table(self.gallery, self.best_step)

    @property
    def gallery_side_by_side(self) -> list[dict]:
        """Per probe, a few checkpoints' replies to read side by side (before, best, last, between)."""
        return gallery.side_by_side(self.gallery, self.best_step)

    @property
    def gallery_scores(self) -> list[dict]:
        return gallery.scores(self.gallery)

    @property
    def can_cancel(self) -> bool:
        return self.job.status in jobs.ACTIVE and not self.job.cancel_requested

    @property
    def is_training(self) -> bool:
        return self.job.progress_unit == "steps"

    @property
    def can_resume(self) -> bool:
        return self.job.status in ("failed", "cancelled")

    @property
    def where(self) -> str:
        """Which attempt this is and what runs it, in words."""
        job = self.job
        if job.status == "queued":
            return "Waiting for the background worker" + (f" (attempt {job.attempt + 1})" if job.attempt else "")
        if job.executor == "ray":
            from pipeline.jobs import ray_cluster  # words only: no ray import

            ran = "runs on" if job.status == "running" else "ran on"
            return f"Attempt {job.attempt} · {ran} {ray_cluster.where(job)}"
        runner = {"local": "the background worker", "foreground": "a command line"}.get(job.executor, job.executor)
        ran = "runs in" if job.status == "running" else "ran in"
        return f"Attempt {job.attempt} · {ran} {runner}" + (f" (pid {job.pid})" if job.pid else "")


def detail(job_id: int, log_lines: int = 80) -> JobDetail:
    job = jobs.get(job_id)
    timing = jobs.timing(job)
    records = [
        {
            "step": m.step,
            "at": m.at,
            "epoch": m.epoch,
            "loss": m.loss,
            "val_loss": m.val_loss,
            "learning_rate": m.learning_rate,
            "tokens_per_s": m.tokens_per_s,
            **m.values,
        }
        for m in jobs.metrics(job_id)
    ]
    found = JobDetail(
        job=job,
        badge=badge(job),
        metrics=records,
        log=ingest.log_tail(job_id, log_lines),  # the run folder's log.txt, or what a job elsewhere reported
        cost_usd=jobs.costs([job_id]).get(job_id, 0.0),
        elapsed=duration(timing.elapsed_s),
        eta=duration(timing.eta_s),
    )
    if found.is_training:
        method = (job.params or {}).get("config", {}).get("method", "sft")
        found.best_step, found.stopping = early_stop.from_metrics(records, method)
        if job.kind in CLOUD_TRAINING:
            found.warning = early_stop.rising(early_stop.validation_points(records), method)
        found.gallery = gallery.read(runfolder.run_dir(job_id))
    return found


CLOUD_TRAINING = ("train_together", "train_openai")
