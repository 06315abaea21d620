"""Reading what a job wrote in its run folder into the database. Only the monitor calls this.

Metrics are read from the byte offset stored on the job and only whole lines are consumed, so
a line still being written waits for the next pass. Rows and the new offset commit together,
and a metric is keyed by (job, step): a second pass, or a restarted monitor, adds nothing twice.
Fields logged for the same step at different times (train loss, then validation loss) merge.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime

from sqlmodel import Session, select

from pipeline import runfolder
from pipeline.models import Job, TrainingMetric, utcnow

log = logging.getLogger("pipeline.monitor")

COLUMNS = {
    "epoch": "epoch",
    "loss": "loss",
    "val_loss": "val_loss",
    "eval_loss": "val_loss",
    "learning_rate": "learning_rate",
    "tokens_per_s": "tokens_per_s",
}
TERMINAL = ("succeeded", "failed", "cancelled")


def _when(epoch) -> datetime:
    try:
        return datetime.fromtimestamp(float(epoch), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return utcnow()


def apply_status(job: Job, status: dict) -> bool:
    """Copy a status.json snapshot onto the job row. Returns whether anything changed."""
    if job.status in TERMINAL:
        return False  # a finished job's record is final
    before = (job.status, job.progress_done, job.progress_total, job.message, job.error, job.heartbeat_at)
    job.progress_done = int(status.get("done", job.progress_done) or 0)
    job.progress_total = int(status.get("total", job.progress_total) or 0)
    job.progress_unit = str(status.get("unit") or job.progress_unit)
    job.message = str(status.get("message") or job.message)
    if status.get("heartbeat"):
        job.heartbeat_at = _when(status["heartbeat"])
    new_status = status.get("status")
    if new_status in TERMINAL:
        job.status = new_status
        job.error = status.get("error") or (job.error if new_status != "succeeded" else None)
        job.finished_at = utcnow()
    return before != (job.status, job.progress_done, job.progress_total, job.message, job.error, job.heartbeat_at)


def _parse(line: bytes) -> dict | None:
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("step"), int):
        return None
    return record


def _numbers(record: dict) -> dict:
    return {
        k: float(v)
        for k, v in record.items()
        if k not in ("step", "at") and isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def read_new_metrics(job: Job) -> tuple[list[dict], int, int]:
    """Whole new lines after the job's offset: (records, new offset, lines skipped)."""
    path = runfolder.run_dir(job.id) / runfolder.METRICS
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, 2)
            offset = job.metrics_offset if job.metrics_offset <= size else 0  # a replaced file starts over
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return [], job.metrics_offset, 0
    end = data.rfind(b"\n") + 1  # the tail after the last newline is still being written
    records, skipped, position = [], 0, offset
    for line in data[:end].split(b"\n")[:-1]:
        record = _parse(line) if line.strip() else None
        if record is None and line.strip():
            skipped += 1
            log.warning("job %s: skipped a garbled metrics line at byte %d: %r", job.id, position, line[:120])
        elif record is not None:
            records.append(record)
        position += len(line) + 1
    return records, offset + end, skipped


def store_metrics(session: Session, job_id: int, records: list[dict]) -> int:
    """Merge records into TrainingMetric rows keyed by step. Returns how many new steps appeared."""
    if not records:
        return 0
    steps = {r["step"] for r in records}
    existing = {
        m.step: m
        for m in session.exec(
            select(TrainingMetric).where(TrainingMetric.job_id == job_id, TrainingMetric.step.in_(steps))
        )
    }
    created = 0
    for record in records:
        row = existing.get(record["step"])
        if row is None:
            row = existing[record["step"]] = TrainingMetric(
                job_id=job_id, step=record["step"], at=_when(record.get("at"))
            )
            created += 1
        extra = dict(row.values)
        for key, value in _numbers(record).items():
            if key in COLUMNS:
                setattr(row, COLUMNS[key], value)
            else:
                extra[key] = value
        row.values = extra
        session.add(row)
    return created


def ingest_job(session: Session, job: Job) -> int:
    """Bring one job's row up to date with its run folder. Returns new metric rows."""
    status = runfolder.read_status(runfolder.run_dir(job.id))
    if status:
        apply_status(job, status)
    records, offset, _ = read_new_metrics(job)
    created = store_metrics(session, job.id, records)
    job.metrics_offset = offset
    session.add(job)
    return created
