"""How fast a job's metric line becomes readable in the database.

A probe job appends metric lines at 20/s for 30 s (each line carries the time it was written);
a reader polls the database every 10 ms and notes when each line's row first appears. The same
work runs up to three times in one go: with the real monitor and the local executor (the job
writes its run folder, watchdog events wake the monitor's ingest), with the monitor's watchdog
switched off so only its periodic sweep ingests (the polling baseline), and with the Ray executor
on a Ray head started here on 127.0.0.1 (the job on the cluster reports straight into the
database: no run folder, no ingest).

    .venv/bin/python bench/monitor_latency.py [--rate 20] [--seconds 30] [--baseline-sweep 5]
                                              [--executor all|local|ray]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def measure(rate: float, seconds: float, env_extra: dict) -> dict:
    data = Path(tempfile.mkdtemp(prefix="studio-bench-"))
    env = {**os.environ, "PYTHONPATH": str(REPO), "STUDIO_DATA_DIR": str(data), **env_extra}
    # a fresh interpreter per run, so each run has its own data folder and engine
    submit = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, json; from pipeline import jobs; "
            "print(jobs.submit('probe', json.loads(sys.argv[1]), started_by='bench').id)",
            json.dumps({"rate": rate, "seconds": seconds}),
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    job_id = int(submit.stdout.strip())
    monitor = subprocess.Popen(
        [sys.executable, "-m", "pipeline.jobs.monitor"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seen: dict[int, float] = {}
    written: dict[int, float] = {}
    db = sqlite3.connect(data / "studio.db", timeout=30)
    expected = int(rate * seconds)
    deadline = time.time() + seconds + 120
    last_step = 0
    try:
        while time.time() < deadline:
            rows = db.execute(
                "SELECT step FROM trainingmetric WHERE job_id = ? AND step > ?", (job_id, last_step)
            ).fetchall()
            now = time.time()
            for (step,) in rows:
                seen.setdefault(step, now)
            if rows:
                last_step = max(step for (step,) in rows)
            status = db.execute("SELECT status FROM job WHERE id = ?", (job_id,)).fetchone()[0]
            if status in ("succeeded", "failed", "cancelled") and last_step >= expected:
                break
            time.sleep(0.01)
        for step, values in db.execute('SELECT step, "values" FROM trainingmetric WHERE job_id = ?', (job_id,)):
            record = json.loads(values)
            if "written_at" in record:
                written[step] = record["written_at"]
    finally:
        monitor.send_signal(signal.SIGTERM)
        monitor.wait(timeout=30)
    metrics_file = data / "runs" / str(job_id) / "metrics.jsonl"
    if metrics_file.exists():
        lines_written = sum(1 for line in metrics_file.read_text().splitlines() if "written_at" in line)
    else:  # a job on Ray writes no file here: every line it wrote is a row, or it failed (then fewer)
        lines_written = expected
    latencies = sorted(seen[s] - written[s] for s in written if s in seen)
    return {
        "written": lines_written,
        "ingested": len(written),
        "p50": statistics.median(latencies),
        "p95": latencies[int(0.95 * (len(latencies) - 1))],
        "max": latencies[-1],
    }


def measure_on_ray(rate: float, seconds: float) -> dict:
    """The same probe through the Ray executor, on a head of its own (2 CPUs) started and stopped here."""
    from tests.ray_head import Head

    head = Head()
    node = Path(tempfile.mkdtemp(prefix="studio-bench-node-"))
    try:
        return measure(
            rate, seconds, {"STUDIO_EXECUTOR": "ray", "RAY_ADDRESS": head.address, "STUDIO_RAY_DATA_DIR": str(node)}
        )
    finally:
        head.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--baseline-sweep", type=float, default=5.0, help="the polling baseline's interval, s")
    parser.add_argument(
        "--executor",
        choices=["all", "local", "ray"],
        default="all",
        help="local: the local executor and the polling baseline; ray: the local executor and the Ray executor",
    )
    args = parser.parse_args()

    results = {"local executor (watchdog)": (ours := measure(args.rate, args.seconds, {}))}
    if args.executor in ("all", "local"):
        baseline = measure(
            args.rate,
            args.seconds,
            {"STUDIO_MONITOR_WATCHDOG": "0", "STUDIO_MONITOR_SWEEP_S": str(args.baseline_sweep)},
        )
        results[f"polling every {args.baseline_sweep:g} s"] = baseline
    if args.executor in ("all", "ray"):
        results["Ray executor (local head)"] = on_ray = measure_on_ray(args.rate, args.seconds)
    for name, result in results.items():
        print(
            f"{name:>26}: p50 {result['p50'] * 1000:7.0f} ms   p95 {result['p95'] * 1000:7.0f} ms   "
            f"max {result['max'] * 1000:7.0f} ms   ingested {result['ingested']} of {result['written']} written"
        )
    if args.executor in ("all", "local"):
        print(f"p95 ratio (polling / watchdog): {baseline['p95'] / ours['p95']:.1f}x")
    print(
        f"target p95 <= 1000 ms (local): {'met' if ours['p95'] <= 1.0 else 'NOT met'}; "
        f"ingested == written: {ours['ingested'] == ours['written']}"
    )
    if args.executor in ("all", "ray"):
        print(
            f"target p95 <= 2000 ms (Ray): {'met' if on_ray['p95'] <= 2.0 else 'NOT met'}; "
            f"ingested == written: {on_ray['ingested'] == on_ray['written']}"
        )


if __name__ == "__main__":
    main()
