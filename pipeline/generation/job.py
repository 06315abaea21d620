"""The `generation` job kind: run a generation inside a job process and write its files."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pipeline.generation import dedup, outputs, quality, runner
from pipeline.generation.config import load
from pipeline.jobs.context import JobContext


def run(ctx: JobContext, params: dict) -> dict[str, Path]:
    config = load({k: v for k, v in params.items() if k != "output"})
    persona = runner.prepare(config)

    def report() -> None:
        """Examples finished, and every stage's work as it lands: a long first stage is seen moving."""
        stages = runner.stage_progress(ctx.job_id)
        ctx.report_progress(stages.finished, config.examples, unit="examples", message=stages.summary())

    def item_done(example) -> None:
        report()
        if example.status == "failed":
            ctx.log(f"example {example.slot} failed: {example.failure}")

    stages = runner.stage_progress(ctx.job_id)
    message = stages.summary() if stages.total else "planning"  # resumed: what was done shows at once
    ctx.report_progress(stages.finished, config.examples, unit="examples", message=message)
    ctx.log(f"generating {config.examples} examples for {persona.name!r} ({stages.finished} already done)")
    generation = runner.Generation(
        ctx.job_id, config, persona, ctx.cancelled, item_done, on_stage_done=lambda stage, example: report()
    )
    asyncio.run(generation.run())
    stages = runner.stage_progress(ctx.job_id)
    message = f"{stages.summary()} · checking for near-duplicates"
    ctx.report_progress(stages.finished, config.examples, unit="examples", message=message)
    flagged = dedup.flag_near_duplicates(ctx.job_id)
    if flagged:
        ctx.log(f"{flagged} examples flagged as near-duplicates")
    caught = runner.gate_counts(ctx.job_id)
    if caught["flagged"]:
        each = ", ".join(f"{quality.LABELS[c]} {n}" for c, n in caught["by_check"].items() if n)
        ctx.log(f"{caught['flagged']} examples flagged by the quality gate ({each}): left out of the training file")
    output = Path(params["output"]) if params.get("output") else None
    paths = outputs.write(ctx.job_id, config, output, persona.name)
    stages = runner.stage_progress(ctx.job_id)
    message = f"{stages.finished - stages.failed} ready · {stages.summary()}" + (
        f" · {caught['flagged']} flagged by the quality gate" if caught["flagged"] else ""
    )
    ctx.report_progress(stages.finished, config.examples, unit="examples", message=message)
    ctx.log(f"wrote {paths['training']}")
    return paths
