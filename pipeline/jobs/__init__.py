"""The job system: a queue and one state machine, the run context jobs report through, run
folders and their ingest, the monitor, and the executors that start jobs (here, or on a Ray cluster).

    queue.py       submit, cancel, resume, read: what pages and the command line ask of jobs
    states.py      the one state machine: every status change is one conditional UPDATE
    keys.py        which keys a job needs, and whether the worker that runs it will see them
    context.py     JobContext: what job code is given (progress, metrics, log, cancel)
    reporting.py   where a job's reports go: its run folder (default) or the database directly
    runfolder.py   data/runs/<id>/: status.json, metrics.jsonl, log.txt
    ingest.py      reports into the database, for the current attempt only
    executors.py   the executor seam: LocalExecutor (process groups), ForegroundExecutor
    ray_cluster.py RayExecutor: jobs on an existing Ray cluster through its Jobs API
    monitor.py     the background worker: ingest, liveness, cancels, cloud polls, claims
    foreground.py  a job a command line runs in its own process
    runner.py      the job process: `python -m pipeline.jobs run ID`
    board.py       what the monitoring page and `jobs list` show
    probe.py       the worker check job

`from pipeline import jobs` gives the queue's functions (jobs.submit, jobs.get, ...).
"""

from pipeline.jobs.queue import (
    ACTIVE,
    FINISHED,
    KIND_LABELS,
    KINDS,
    Timing,
    costs,
    default_user,
    get,
    kind_function,
    list_jobs,
    metrics,
    request_cancel,
    requeue,
    submit,
    sweep_of,
    timing,
)

__all__ = [
    "ACTIVE",
    "FINISHED",
    "KINDS",
    "KIND_LABELS",
    "Timing",
    "costs",
    "default_user",
    "get",
    "kind_function",
    "list_jobs",
    "metrics",
    "request_cancel",
    "requeue",
    "submit",
    "sweep_of",
    "timing",
]
