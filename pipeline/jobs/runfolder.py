"""A job's run folder, data/runs/<job-id>/: what the job writes and the monitor reads.

status.json    the current attempt's state, replaced atomically (write a temp file, then rename);
               it names its attempt, so what an earlier attempt left is never taken for this one
metrics.jsonl  one JSON object per line, appended: {"step": int, "at": epoch seconds, ...values}
log.txt        what the job logs, and its stdout/stderr (tracebacks land here)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pipeline import settings

STATUS = "status.json"
METRICS = "metrics.jsonl"
LOG = "log.txt"


def runs_dir() -> Path:
    return settings.data_dir() / "runs"


def run_dir(job_id: int) -> Path:
    return runs_dir() / str(int(job_id))


def job_id_of(path: str | Path) -> int | None:
    """The job a path inside data/runs/ belongs to, or None."""
    try:
        relative = Path(path).resolve().relative_to(runs_dir().resolve())
        return int(relative.parts[0])
    except (ValueError, IndexError):
        return None


def prepare(job_id: int, attempt: int | None = None) -> Path:
    """The run folder, made before a job is marked running; with `attempt`, a fresh status file for it."""
    folder = run_dir(job_id)
    folder.mkdir(parents=True, exist_ok=True)
    if attempt is not None:
        write_status(folder, {"job_id": int(job_id), "attempt": int(attempt), "status": "running"})
    return folder


def write_status(folder: Path, status: dict) -> None:
    tmp = folder / f".{STATUS}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(status, default=str), encoding="utf-8")
    os.replace(tmp, folder / STATUS)  # readers see the old file or the new one, never half of one


def read_status(folder: Path) -> dict | None:
    try:
        return json.loads((folder / STATUS).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def append_metric(folder: Path, record: dict) -> None:
    line = json.dumps(record, default=float) + "\n"
    with open(folder / METRICS, "a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()


def log_tail(job_id: int, lines: int = 200) -> str:
    path = run_dir(job_id) / LOG
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(handle.tell() - 64_000, 0))
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def clear_status(job_id: int) -> None:
    """Forget the last attempt's status file: a requeued job starts from a clean one."""
    (run_dir(job_id) / STATUS).unlink(missing_ok=True)
