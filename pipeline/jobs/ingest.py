"""Bringing what a job reports into the database: the one way progress, metrics and a job's own
final word reach its row, whether they come from its run folder (the monitor, the command line),
a cloud provider's poll, or a job that reports to the database directly.

A report counts only for the attempt it names, and only while that attempt runs: a status file
an earlier attempt left behind, or a heartbeat older than this attempt's start, changes nothing.
A final status goes through the state machine like every other change.

Metrics are read from the byte offset stored on the job and only whole lines are consumed, so
a line still being written waits for the next pass. The offset moves by compare-and-set in the
same transaction as the rows, and a metric is keyed by (job, step): a second pass, a restarted
monitor, or two readers at once add nothing twice. Fields logged for one step at different times
(train loss, then validation loss) merge.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime

from sqlalchemy import update
from sqlmodel import Session, select

from pipeline import settings
from pipeline.db import session_scope
from pipeline.jobs import runfolder, states
from pipeline.models import Job, JobLogLine, TrainingMetric, utcnow

log = logging.getLogger("pipeline.monitor")

COLUMNS = {
    "epoch": "epoch",
    "loss": "loss",
    "val_loss": "val_loss",
    "eval_loss": "val_loss",
    "learning_rate": "learning_rate",
    "tokens_per_s": "tokens_per_s",
}
TERMINAL = states.FINISHED


def _when(epoch) -> datetime:
    try:
        return datetime.fromtimestamp(float(epoch), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return utcnow()


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def speaks_for_current_attempt(job: Job, snapshot: dict) -> bool:
    """Whether `snapshot` is the running attempt's own word (not an earlier attempt's leftovers)."""
    if job.status != states.RUNNING:
        return False
    attempt = snapshot.get("attempt")
    if attempt is not None and attempt != job.attempt:
        return False
    beat = snapshot.get("heartbeat")
    started = _aware(job.started_at)
    if beat is not None and started is not None and _when(beat) < started:
        return False  # written before this attempt began
    return attempt is not None or beat is not None


def apply_status(session: Session, job: Job, snapshot: dict) -> str | None:
    """Apply one status report to the job's row. Returns the final status it recorded, if any."""
    if not speaks_for_current_attempt(job, snapshot):
        return None
    fields = {
        "progress_done": int(snapshot.get("done", job.progress_done) or 0),
        "progress_total": int(snapshot.get("total", job.progress_total) or 0),
        "progress_unit": str(snapshot.get("unit") or job.progress_unit),
        "message": str(snapshot.get("message") or job.message),
    }
    if snapshot.get("heartbeat"):
        fields["heartbeat_at"] = _when(snapshot["heartbeat"])
    states.record(job.id, job.attempt, session=session, **fields)
    final = snapshot.get("status")
    if final not in TERMINAL:
        return None
    error = snapshot.get("error") or None
    if final == states.SUCCEEDED:
        error = None
    if states.transition(job.id, states.RUNNING, final, attempt=job.attempt, session=session, error=error):
        return final
    return None


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
    session.flush()
    return created


def _take_metrics(session: Session, job: Job) -> int:
    records, offset, _ = read_new_metrics(job)
    if offset == job.metrics_offset:
        return 0
    moved = session.connection().execute(
        update(Job).where(Job.id == job.id, Job.metrics_offset == job.metrics_offset).values(metrics_offset=offset)
    )
    if moved.rowcount != 1:
        return 0  # another reader took these lines first
    return store_metrics(session, job.id, records)


def ingest_job(session: Session, job: Job) -> int:
    """Bring one job's row up to date with its run folder. Returns new metric rows.

    The status is read first and applied last: a job writes its last metrics before its final
    status, so metrics read after a final status are all of them, and a finished job's curves are
    whole when its row says it ended. (Read the other way round, lines written between the two
    reads were never ingested once the row said finished: seen on a loaded machine.)
    """
    snapshot = runfolder.read_status(runfolder.run_dir(job.id))
    created = _take_metrics(session, job)
    if snapshot:
        apply_status(session, job, snapshot)
    if job in session:
        session.expire(job)  # the row changed underneath the object: read it afresh when next used
    return created


def report(job_id: int, snapshot: dict | None, records: list[dict]) -> None:
    """A job's report straight to the database (no run folder): the DatabaseReporter's path."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        if job is None:
            return
        store_metrics(session, job_id, records)
        if snapshot:
            apply_status(session, job, snapshot)


def report_log(job_id: int, attempt: int | None, line: str) -> None:
    """One log line of a job that reports straight to the database, keys masked (settings.redact)."""
    with session_scope() as session:
        if session.get(Job, job_id) is None:
            return
        session.add(JobLogLine(job_id=job_id, attempt=attempt or 0, line=settings.redact(line)))


def log_lines(job_id: int, lines: int = 200) -> list[str]:
    """The last `lines` log lines a job reported to the database, oldest first."""
    with session_scope() as session:
        rows = session.exec(
            select(JobLogLine.line).where(JobLogLine.job_id == job_id).order_by(JobLogLine.id.desc()).limit(lines)
        ).all()
    return list(reversed(rows))


def log_tail(job_id: int, lines: int = 200) -> str:
    """A job's log, wherever it ran: its run folder's log.txt on this machine, then what it reported to
    the database from elsewhere (a Ray node). An attempt writes one or the other."""
    text = runfolder.log_tail(job_id, lines)
    reported = log_lines(job_id, lines)
    if not reported:
        return text
    combined = "\n".join(filter(None, [text, *reported])).splitlines()
    return "\n".join(combined[-lines:])
