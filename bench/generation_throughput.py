"""Generation throughput: the real generation code against an OpenAI-compatible server on
127.0.0.1 that answers every request after a fixed delay.

Prints examples per minute at concurrency 1 and 16, their ratio, and how close the concurrent run
comes to the ideal the delay allows (each example is three calls in a row, so an ideal run takes
ceil(examples / concurrency) x 3 x delay).

    .venv/bin/python bench/generation_throughput.py [--examples 32] [--delay 0.3]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ["STUDIO_DATA_DIR"] = tempfile.mkdtemp(prefix="studio-bench-")
os.environ["STUDIO_SECRETS_FILE"] = str(Path(os.environ["STUDIO_DATA_DIR"]) / "secrets.toml")
os.environ["STUDIO_LLM_CACHE"] = "0"  # every request really goes to the server

import signal  # noqa: E402
import subprocess  # noqa: E402

from pipeline import embeddings, jobs, personas  # noqa: E402
from pipeline.generation import runner  # noqa: E402
from pipeline.generation.config import GenerationConfig  # noqa: E402


def run_once(persona_id: int, examples: int, concurrency: int) -> float:
    config = GenerationConfig(
        persona_id=persona_id,
        examples=examples,
        concurrency=concurrency,
        scenario_models=["bench"],
        document_models=["bench"],
        response_models=["bench"],
    )
    job = jobs.submit("generation", config.model_dump(mode="json"))
    brief = runner.prepare(config)
    started = time.perf_counter()
    asyncio.run(runner.Generation(job.id, config, brief).run())
    elapsed = time.perf_counter() - started
    done, failed, _ = runner.progress(job.id)
    assert done == examples and failed == 0, f"{done} done, {failed} failed"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--delay", type=float, default=0.3)
    args = parser.parse_args()

    personas.seed_samples()
    embeddings.embed(["warm up"])  # the idea check's model loads once per process: not part of either run
    persona = personas.get_persona("collaborative")
    # the server is its own process, as a provider is: it must not share this process's interpreter
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_server", "--delay", str(args.delay), "--stage-aware"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    api_base = server.stdout.readline().strip()
    Path(os.environ["STUDIO_SECRETS_FILE"]).write_text(f'[endpoints.bench]\napi_base = "{api_base}"\nmodel = "bench"\n')
    try:
        results = {}
        for concurrency in (1, 16):
            elapsed = run_once(persona.id, args.examples, concurrency)
            ideal = math.ceil(args.examples / concurrency) * 3 * args.delay
            results[concurrency] = (args.examples / elapsed * 60, args.examples / ideal * 60)
            print(
                f"concurrency {concurrency:>2}: {results[concurrency][0]:7.1f} examples/min "
                f"(ideal {results[concurrency][1]:7.1f}; {elapsed:.1f} s for {args.examples})"
            )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)
    ratio = results[16][0] / results[1][0]
    efficiency = results[16][0] / results[16][1]
    print(
        f"speed-up 16 vs 1: {ratio:.1f}x (target >= 10x); concurrent run at {efficiency:.0%} of ideal (target >= 80%)"
    )


if __name__ == "__main__":
    main()
