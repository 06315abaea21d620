"""The `generation` job kind: run a generation inside a job process and write its files."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pipeline.generation import dedup, outputs, runner
from pipeline.generation.config import load
from pipeline.jobs.context import JobContext


def run(ctx: JobContext, params: dict) -> dict[str, Path]:
    config = load({k: v for k, v in params.items() if k != "output"})
    persona = runner.prepare(config)

    def item_done(example) -> None:
        finished, failed, total = runner.progress(ctx.job_id)
        ctx.report_progress(
            finished,
            total,
            unit="examples",
            message=f"{failed} failed" if failed else f"latest: {example.document_title[:60]}",
        )
        if example.status == "failed":
            ctx.log(f"example {example.slot} failed: {example.failure}")

    finished, _, total = runner.progress(ctx.job_id)
    ctx.report_progress(finished, config.examples, unit="examples", message="planning")
    ctx.log(f"generating {config.examples} examples for {persona.name!r} ({finished} already done)")
    asyncio.run(runner.Generation(ctx.job_id, config, persona, ctx.cancelled, item_done).run())
    finished, _, total = runner.progress(ctx.job_id)
    ctx.report_progress(finished, total, unit="examples", message="checking for near-duplicates")
    flagged = dedup.flag_near_duplicates(ctx.job_id)
    if flagged:
        ctx.log(f"{flagged} examples flagged as near-duplicates")
    output = Path(params["output"]) if params.get("output") else None
    paths = outputs.write(ctx.job_id, config, output, persona.name)
    finished, failed, total = runner.progress(ctx.job_id)
    ctx.report_progress(finished, total, unit="examples", message=f"{finished - failed} ready, {failed} failed")
    ctx.log(f"wrote {paths['training']}")
    return paths
