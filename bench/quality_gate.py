"""What the quality gate catches on a real generation run of the built-in model (SmolLM2-135M).

Generates `--examples` examples for the sample persona "collaborative" in a fresh studio folder, with
short settings so a CPU finishes in minutes, every stage on the embedded model; the gate runs as each
example is saved, as in any run. Prints, as Markdown, how many finished replies each check caught and a
few flagged replies with their reasons. With `--job ID` it reports on a run already in the studio
(STUDIO_DATA_DIR) instead of generating one.

    .venv/bin/python bench/quality_gate.py [--examples 20] [--seed 7] [--job ID]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ["STUDIO_AUTOSTART_MONITOR"] = "0"
os.environ.setdefault("STUDIO_MODELS_DIR", str(REPO / "data" / "models"))

from sqlmodel import select  # noqa: E402

from pipeline import db, jobs, personas, startup  # noqa: E402
from pipeline.db import session_scope  # noqa: E402
from pipeline.generation import quality, runner  # noqa: E402
from pipeline.generation.config import GenerationConfig  # noqa: E402
from pipeline.models import Example  # noqa: E402


def generate(examples: int, seed: int) -> int:
    os.environ["STUDIO_DATA_DIR"] = tempfile.mkdtemp(prefix="studio-gate-")
    db.reset_engines()
    startup.init(with_model=False)
    persona = personas.get_persona("collaborative")
    config = GenerationConfig(
        persona_id=persona.id,
        examples=examples,
        concurrency=4,
        document_words=(40, 80),
        response_words=60,
        min_document_words=20,
        min_response_words=15,
        temperature=0.7,
        seed=seed,
    )
    job = jobs.submit("generation", config.model_dump(mode="json"), name=f"Generation: {examples} examples")
    started = time.monotonic()
    asyncio.run(runner.Generation(job.id, config, runner.prepare(config)).run())
    print(f"_{examples} examples generated in {time.monotonic() - started:.0f} s (job {job.id})._\n")
    return job.id


def report(job_id: int) -> None:
    with session_scope() as session:
        made = list(session.exec(select(Example).where(Example.job_id == job_id).order_by(Example.slot)))
    finished = [e for e in made if e.status not in ("failed", "generating", "cancelled")]
    failed = sum(e.status == "failed" for e in made)
    counts = quality.counts(e.quality_issues for e in finished)
    flagged = [e for e in finished if e.quality_issues]
    print(f"{len(made)} planned, {failed} failed validation (too short, unreadable scenario), {len(finished)} gated:\n")
    print("| check | replies caught |\n|---|---|")
    for check, n in counts.items():
        print(f"| {quality.LABELS[check]} | {n} of {len(finished)} |")
    print(f"| **any** | **{len(flagged)} of {len(finished)}** |\n")
    firsts = {}
    for example in flagged:  # one per check first, then the rest: up to three
        firsts.setdefault(quality.check_of(example.quality_issues[0]), example)
    shown = list(firsts.values()) + [e for e in flagged if e not in firsts.values()]
    for example in shown[:3]:
        reply = " ".join(example.response.split())
        print(f"- “{reply[:160]}{'…' if len(reply) > 160 else ''}”")
        for reason in example.quality_issues:
            print(f"  - {reason}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--job", type=int, help="report on this run instead of generating one")
    args = parser.parse_args()
    report(args.job if args.job else generate(args.examples, args.seed))


if __name__ == "__main__":
    main()
