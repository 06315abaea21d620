"""The one state machine of a job. Every status change in the studio goes through `transition`.

    queued ──▶ running ──▶ succeeded | failed | cancelled
      │                         │
      └──▶ cancelled            └──▶ queued   (resume: the kind picks up where it stopped)

Each change is one conditional statement, `UPDATE job SET … WHERE id = ? AND status = ?` (and the
attempt, when the caller speaks for one attempt), so when two processes race for the same change
exactly one wins and the other is told so. Nothing here reads a row and then writes it back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import update
from sqlmodel import Session

from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.models import Job, utcnow

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
FINISHED = (SUCCEEDED, FAILED, CANCELLED)
ACTIVE = (QUEUED, RUNNING)

# A succeeded job may be queued again too: a generation run that ended with failed examples
# retries them, and a rerun of a finished one is a no-op that says so.
TRANSITIONS: dict[str, frozenset[str]] = {
    QUEUED: frozenset({RUNNING, CANCELLED}),
    RUNNING: frozenset({SUCCEEDED, FAILED, CANCELLED}),
    SUCCEEDED: frozenset({QUEUED}),
    FAILED: frozenset({QUEUED}),
    CANCELLED: frozenset({QUEUED}),
}


class IllegalTransition(UserFacingError):
    """A status change the state machine does not allow (a bug in the caller, said in words)."""


def allowed(source: str, target: str) -> bool:
    return target in TRANSITIONS.get(source, frozenset())


def _fields_for(target: str) -> dict:
    """What every change into `target` resets, so no earlier attempt's traces survive it."""
    now = utcnow()
    if target == RUNNING:
        return {
            "attempt": Job.attempt + 1,
            "started_at": now,
            "heartbeat_at": None,
            "finished_at": None,
            "error": None,
            "exit_code": None,
            "pid": None,
            "message": "",
        }
    if target == QUEUED:
        return {
            "pid": None,
            "exit_code": None,
            "started_at": None,
            "finished_at": None,
            "heartbeat_at": None,
            "error": None,
            "cancel_requested": False,
            "executor": "",
            "message": "",
        }
    return {"finished_at": now} | ({"error": None} if target == SUCCEEDED else {})


@contextmanager
def _unit(session: Session | None) -> Iterator[Session]:
    if session is not None:
        yield session
    else:
        with session_scope() as own:
            yield own


def transition(
    job_id: int,
    source: str,
    target: str,
    *,
    attempt: int | None = None,
    session: Session | None = None,
    **fields,
) -> bool:
    """Move job `job_id` from `source` to `target` in one conditional UPDATE.

    Returns True when this call made the change, False when the row was no longer in `source`
    (or no longer on `attempt`): someone else got there first. Raises IllegalTransition for a
    change the machine does not allow. Inside `session` it joins that unit of work.
    """
    if not allowed(source, target):
        raise IllegalTransition(f"A job cannot go from {source} to {target}.")
    values = _fields_for(target) | fields | {"status": target}
    statement = update(Job).where(Job.id == job_id, Job.status == source)
    if attempt is not None:
        statement = statement.where(Job.attempt == attempt)
    with _unit(session) as unit:
        # Core, not the ORM: the change must not be merged with stale objects held in the session
        result = unit.connection().execute(statement.values(**values))
        return result.rowcount == 1


def record(job_id: int, attempt: int, *, session: Session | None = None, **fields) -> bool:
    """Write fields of a running attempt that are not its status (pid, progress, heartbeat, offsets).

    A write for an attempt that is no longer running changes nothing and returns False.
    """
    if "status" in fields:
        raise IllegalTransition("Status changes go through transition().")
    statement = update(Job).where(Job.id == job_id, Job.status == RUNNING, Job.attempt == attempt).values(**fields)
    with _unit(session) as unit:
        return unit.connection().execute(statement).rowcount == 1
