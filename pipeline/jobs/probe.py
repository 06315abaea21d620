"""The worker check: a job that exercises the whole job path without spending anything.

It appends `rate` metric lines a second for `seconds` seconds (each line carries the time it
was written, so the monitor's ingest latency can be measured) and reports progress. Operators
start it from the monitoring page to see that the background worker is alive; the benchmark
and tests use it to drive the monitor with real processes and real files.
"""

from __future__ import annotations

import time

from pipeline.jobs.context import JobContext


def run(ctx: JobContext, params: dict) -> None:
    rate = float(params.get("rate", 5))
    seconds = float(params.get("seconds", 10))
    total = max(int(rate * seconds), 1)
    fail_at = params.get("fail_at")  # to show what a failing job looks like
    ctx.report_progress(0, total, unit="lines", message="writing metric lines")
    started = time.perf_counter()
    for line in range(1, total + 1):
        if ctx.cancelled():
            ctx.log(f"cancel requested: stopping after {line - 1} of {total} lines")
            return
        if fail_at is not None and line == int(fail_at):
            raise RuntimeError(f"failed on purpose at line {line}")
        # pace by the clock, not by sleeps, so the rate holds however long a write takes
        delay = started + line / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        ctx.log_metric(line, written_at=time.time(), value=line % 7)
        if line % max(int(rate), 1) == 0 or line == total:
            ctx.report_progress(line, total)
