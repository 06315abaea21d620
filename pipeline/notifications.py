"""When a job ends (succeeded, failed, cancelled): a toast in every open studio page, and optionally a POST to a
webhook.

Both read the database, so every end counts, whoever recorded it: a job's own last word (ingested by the
monitor, or by a command line running the job itself), the monitor's verdict on a dead process, or a cancel
before the start. `ended_since` is what the pages' toast asks every few seconds; `Notifier.tick` is what the
monitor runs each pass: it posts each newly ended job once to the webhook from the settings
(`STUDIO_WEBHOOK_URL`, or `webhook_url` under `[notifications]` in .streamlit/secrets.toml), on a thread of its
own, retried three times with backoff, logged, and never changing the job. What was sent is remembered in
`data/notifications.json`, so a restarted monitor sends nothing twice.

The payload carries the job's id, kind, name, status, error, figures and a link (`STUDIO_PUBLIC_URL` or
`public_url` under `[notifications]`, + the monitoring page), and a Slack-compatible `text`; never a key: its
words pass `settings.redact`, and the whole body is checked once more for any configured key's value.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import func, select

from pipeline import settings
from pipeline.db import session_scope
from pipeline.models import Example, Job, ModelEntry, TrainingMetric, utcnow

log = logging.getLogger("pipeline.monitor")

ENDED = ("succeeded", "failed", "cancelled")
LOOK_BACK = timedelta(seconds=60)  # an end committed a little after its finished_at is still seen
CATCH_UP = timedelta(hours=1)  # a monitor started after a pause posts the ends of the last hour, no more
ATTEMPTS = 4  # the first try and three retries
BACKOFF_S = 2.0  # waits of 2, 4, 8 s between tries
TIMEOUT_S = 10.0


# --- settings ------------------------------------------------------------------------------------------------


def webhook_url() -> str | None:
    value = os.environ.get("STUDIO_WEBHOOK_URL") or settings.setting("notifications", "webhook_url")
    value = (value or "").strip()
    return value or None


def public_url() -> str | None:
    value = os.environ.get("STUDIO_PUBLIC_URL") or settings.setting("notifications", "public_url")
    value = (value or "").strip().rstrip("/")
    return value or None


def _where(url: str) -> str:
    """A webhook's address for the log, without its path (a Slack webhook's path is its secret)."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}" + (f":{parts.port}" if parts.port else "")


# --- what ended ----------------------------------------------------------------------------------------------


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _key(job: Job) -> str:
    return f"{job.id}@{_aware(job.finished_at).isoformat()}"


def _ended(since: datetime, limit: int = 50) -> list[Job]:
    with session_scope() as session:
        return list(
            session.exec(
                select(Job)
                .where(Job.status.in_(ENDED), Job.finished_at.is_not(None), Job.finished_at >= since)
                .order_by(Job.finished_at, Job.id)
                .limit(limit)
            ).all()
        )


def ended_since(cursor: dict | None) -> tuple[list[dict], dict]:
    """Jobs that ended since `cursor` (None: from now on), each as `summary`, and the cursor to pass next time.

    A page keeps the cursor in its session: every open page gets each end once."""
    now = utcnow()
    if cursor is None:
        return [], {"at": now.isoformat(), "seen": []}
    since = datetime.fromisoformat(cursor["at"])
    seen = set(cursor.get("seen") or [])
    fresh = [job for job in _ended(since - LOOK_BACK) if _key(job) not in seen]
    horizon = now - 2 * LOOK_BACK
    keep = [k for k in seen | {_key(j) for j in fresh} if datetime.fromisoformat(k.split("@", 1)[1]) >= horizon]
    return [summary(job) for job in fresh], {"at": now.isoformat(), "seen": sorted(keep)}


# --- the words and figures -----------------------------------------------------------------------------------


def _kind_label(kind: str) -> str:
    from pipeline.jobs.queue import KIND_LABELS

    return KIND_LABELS.get(kind, kind)


def figures(job: Job) -> dict:
    """What the job did, in numbers: progress, final losses, examples made, the model registered, cost, time."""
    found: dict = {
        "progress": {"done": job.progress_done, "total": job.progress_total, "unit": job.progress_unit},
        "cost_usd": round(job.cost_usd or 0.0, 4),
    }
    if job.started_at and job.finished_at:
        found["duration_s"] = round((_aware(job.finished_at) - _aware(job.started_at)).total_seconds(), 1)
    with session_scope() as session:
        metrics = session.exec(
            select(TrainingMetric).where(TrainingMetric.job_id == job.id).order_by(TrainingMetric.step.desc())
        ).all()
        if metrics:
            found["steps"] = metrics[0].step
            found["final_loss"] = next((m.loss for m in metrics if m.loss is not None), None)
            found["final_val_loss"] = next((m.val_loss for m in metrics if m.val_loss is not None), None)
        if job.kind == "generation":
            counts = session.exec(
                select(Example.status, func.count()).where(Example.job_id == job.id).group_by(Example.status)
            ).all()
            found["examples"] = {status: int(n) for status, n in counts}
        model = session.exec(select(ModelEntry).where(ModelEntry.job_id == job.id)).first()
        if model is not None:
            found["model"] = model.name
    return found


def _figure_words(found: dict) -> str:
    parts = []
    progress = found.get("progress") or {}
    if progress.get("total"):
        parts.append(f"{progress['done']}/{progress['total']} {progress['unit']}")
    if found.get("final_loss") is not None:
        parts.append(f"final loss {found['final_loss']:.3f}")
    if found.get("final_val_loss") is not None:
        parts.append(f"validation loss {found['final_val_loss']:.3f}")
    if found.get("examples"):
        parts.append(", ".join(f"{n} {status}" for status, n in sorted(found["examples"].items())) + " examples")
    if found.get("model"):
        parts.append(f"model {found['model']}")
    if found.get("duration_s") is not None:
        minutes, seconds = divmod(int(found["duration_s"]), 60)
        parts.append(f"{minutes} min {seconds} s" if minutes else f"{seconds} s")
    if found.get("cost_usd"):
        parts.append(f"${found['cost_usd']:.2f}")
    return " · ".join(parts)


def summary(job: Job) -> dict:
    """One ended job in words, for a toast: {job, kind, status, text}."""
    words = _figure_words(figures(job))
    error = f": {settings.redact(job.error)}" if job.error and job.status != "succeeded" else ""
    text = f"Job {job.id} ({_kind_label(job.kind)}: {job.name}) {job.status}{error}" + (f" · {words}" if words else "")
    return {"job": job.id, "kind": job.kind, "status": job.status, "text": text[:400]}


def link(job_id: int) -> str | None:
    base = public_url()
    return f"{base}/monitor?job={job_id}" if base else None


def payload(job: Job) -> dict:
    """The webhook's JSON body for an ended job. Never a key: see `_without_keys`."""
    found = figures(job)
    address = link(job.id)
    words = _figure_words(found)
    error = settings.redact(job.error) if job.error else None
    text = f"Persona Studio: job {job.id} ({_kind_label(job.kind)}: {job.name}) *{job.status}*"
    text += (f": {error}" if error and job.status != "succeeded" else "") + (f" · {words}" if words else "")
    text += f" · <{address}|open>" if address else ""
    body = {
        "text": text,
        "job": {
            "id": job.id,
            "kind": job.kind,
            "kind_label": _kind_label(job.kind),
            "name": job.name,
            "status": job.status,
            "error": error,
            "started_by": job.started_by,
            "attempt": job.attempt,
            "started_at": _aware(job.started_at).isoformat() if job.started_at else None,
            "finished_at": _aware(job.finished_at).isoformat() if job.finished_at else None,
        },
        "figures": found,
        "link": address,
    }
    return _without_keys(body)


def _without_keys(body: dict) -> dict:
    """The body once more through redaction, whole: no configured key's value leaves the studio."""
    raw = json.dumps(body, default=str)
    clean = settings.redact(raw)
    return body if clean == raw else json.loads(clean)


# --- posting -------------------------------------------------------------------------------------------------


def post(url: str, body: dict, attempts: int = ATTEMPTS, backoff_s: float = BACKOFF_S) -> bool:
    """POST `body` as JSON, retried with exponential backoff on any error or a status of 300 or more.

    Returns whether it was delivered; a failure is logged (without the webhook's path), never raised."""
    import httpx
    from tenacity import RetryError, retry, stop_after_attempt, wait_exponential

    def before_sleep(state) -> None:
        log.warning(
            "webhook %s: try %d of %d failed (%s); retrying",
            _where(url),
            state.attempt_number,
            attempts,
            state.outcome.exception(),
        )

    @retry(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=backoff_s, max=60),
        before_sleep=before_sleep,
    )
    def send() -> None:
        response = httpx.post(url, json=body, timeout=TIMEOUT_S)
        if response.status_code >= 300:
            raise RuntimeError(f"HTTP {response.status_code}")

    try:
        send()
    except RetryError as exc:
        log.error(
            "webhook %s: job %s not delivered after %d tries (%s)",
            _where(url),
            body.get("job", {}).get("id"),
            attempts,
            exc.last_attempt.exception(),
        )
        return False
    log.info("webhook %s: job %s %s delivered", _where(url), body["job"]["id"], body["job"]["status"])
    return True


class Notifier:
    """The monitor's side: each pass, post every job that ended since the last one, once, off the monitor's
    thread."""

    def __init__(self, attempts: int = ATTEMPTS, backoff_s: float = BACKOFF_S):
        self.attempts, self.backoff_s = attempts, backoff_s
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._state = self._load()

    @staticmethod
    def path() -> Path:
        return settings.data_dir() / "notifications.json"

    def _load(self) -> dict:
        now = utcnow()
        try:
            state = json.loads(self.path().read_text(encoding="utf-8"))
            since = max(datetime.fromisoformat(state["at"]), now - CATCH_UP)
            return {"at": since.isoformat(), "seen": list(state.get("seen") or [])}
        except (OSError, ValueError, KeyError, TypeError):
            return {"at": now.isoformat(), "seen": []}

    def tick(self) -> list[int]:
        """Queue a POST for each job ended since the last pass; returns their ids. Nothing without a webhook."""
        url = webhook_url()
        if url is None:
            self._state = {"at": utcnow().isoformat(), "seen": []}  # set one later: only ends from then on
            return []
        before = self._state
        ended, self._state = ended_since(before)
        if ended or before.get("seen") != self._state.get("seen"):
            self._save()
        if not ended:
            return []
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="webhook")
        ids = []
        for item in ended:
            with session_scope() as session:
                job = session.get(Job, item["job"])
            if job is None:
                continue
            self._pool.submit(self._send, url, payload(job))
            ids.append(job.id)
        return ids

    def _send(self, url: str, body: dict) -> None:
        try:
            post(url, body, self.attempts, self.backoff_s)
        except Exception:  # noqa: BLE001 - a notification never takes the monitor down
            log.exception("webhook %s: sending failed", _where(url))

    def _save(self) -> None:
        path = self.path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".json.partial")
            partial.write_text(json.dumps(self._state), encoding="utf-8")
            partial.replace(path)
        except OSError:
            log.exception("could not save %s", path)

    def close(self, wait: bool = True) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait)
