"""How long `python -m pipeline jobs list` takes, against the same command with the gateway loaded.

Commands that call no model (`jobs`, `datasets list|validate`, `models list`, `personas`) import
neither litellm nor torch. The baseline is the same command in a process that imports the LLM
gateway first, as every command did before: the ratio is what the lazy imports save.

    .venv/bin/python bench/cli_startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COMMANDS = [["jobs", "list"], ["datasets", "list"], ["models", "list"], ["personas", "list"]]
BASELINE = (
    "import pipeline.llm.gateway, runpy, sys; sys.argv = ['pipeline', *sys.argv[1:]]; "
    "runpy.run_module('pipeline', run_name='__main__')"
)


def timed(argv: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=REPO, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "PYTHONPATH": str(REPO), "STUDIO_DATA_DIR": data}
        subprocess.run([sys.executable, "-m", "pipeline", "init", "--skip-model"], cwd=REPO, env=env, check=True)
        for command in COMMANDS:
            ours = [timed([sys.executable, "-m", "pipeline", *command], env) for _ in range(args.runs)]
            base = [timed([sys.executable, "-c", BASELINE, *command], env) for _ in range(args.runs)]
            ours_s, base_s = statistics.median(ours), statistics.median(base)
            print(
                f"{' '.join(command):<14} ours {ours_s:5.2f} s   with the gateway imported {base_s:5.2f} s   "
                f"{base_s / ours_s:4.1f}x faster   (median of {args.runs}; target < 1 s)"
            )


if __name__ == "__main__":
    main()
