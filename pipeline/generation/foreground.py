"""A generation run in the command line's own process, recorded as a job (see pipeline.foreground)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipeline import jobs, lineage
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.generation import job as generation_job
from pipeline.generation.config import GenerationConfig
from pipeline.jobs import foreground
from pipeline.models import Job


def start(config: GenerationConfig | None, output: Path | None, resume: int | None, started_by: str = "") -> Job:
    """A generation job claimed for this process: a new one, or job `resume` picked up where it stopped."""
    if resume is not None:
        with session_scope() as session:
            job = session.get(Job, resume)
        if job is None or job.kind != "generation":
            raise UserFacingError(f"There is no generation job {resume} to resume.")
        return foreground.claim(resume)
    params = config.model_dump(mode="json") | ({"output": str(output)} if output else {})
    params["persona_version"] = lineage.persona_version_now(config.persona_id)  # for the lineage views
    return jobs.submit(
        "generation",
        params,
        name=f"Generation ({config.examples} examples)",
        started_by=started_by or jobs.default_user(),
        run_here=True,
    )


def run(job: Job, on_progress: Callable[[int, int, str], None]) -> tuple[Job, dict[str, Path]]:
    """Run the job here; returns its final record and the files it wrote."""
    return foreground.run(job, generation_job.run, on_progress)
