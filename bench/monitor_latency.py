"""How fast a job's metric line becomes readable in the database.

A probe job appends metric lines at 20/s for 30 s (each line carries the time it was written);
a reader polls the database every 10 ms and notes when each line's row first appears. The same
work runs twice in one go: with the real monitor (watchdog events), and with the monitor's
watchdog switched off so only its periodic sweep ingests (the polling baseline).

    .venv/bin/python bench/monitor_latency.py [--rate 20] [--seconds 30] [--baseline-sweep 5]
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
    lines_written = sum(
        1 for line in (data / "runs" / str(job_id) / "metrics.jsonl").read_text().splitlines() if "written_at" in line
    )
    latencies = sorted(seen[s] - written[s] for s in written if s in seen)
    return {
        "written": lines_written,
        "ingested": len(written),
        "p50": statistics.median(latencies),
        "p95": latencies[int(0.95 * (len(latencies) - 1))],
        "max": latencies[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--baseline-sweep", type=float, default=5.0, help="the polling baseline's interval, s")
    args = parser.parse_args()

    ours = measure(args.rate, args.seconds, {})
    baseline = measure(
        args.rate, args.seconds, {"STUDIO_MONITOR_WATCHDOG": "0", "STUDIO_MONITOR_SWEEP_S": str(args.baseline_sweep)}
    )
    for name, result in (("watchdog monitor", ours), (f"polling every {args.baseline_sweep:g} s", baseline)):
        print(
            f"{name:>22}: p50 {result['p50'] * 1000:7.0f} ms   p95 {result['p95'] * 1000:7.0f} ms   "
            f"max {result['max'] * 1000:7.0f} ms   ingested {result['ingested']} of {result['written']} written"
        )
    print(f"p95 ratio (polling / watchdog): {baseline['p95'] / ours['p95']:.1f}x")
    print(
        f"target p95 <= 1000 ms: {'met' if ours['p95'] <= 1.0 else 'NOT met'}; "
        f"ingested == written: {ours['ingested'] == ours['written']}"
    )


if __name__ == "__main__":
    main()
