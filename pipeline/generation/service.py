"""What the Generate page calls: check and start a run, and look at one."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import func, select

from pipeline import access, jobs, lineage
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.generation import quality, runner
from pipeline.generation.config import GenerationConfig, load
from pipeline.generation.estimate import Estimate, estimate, stage_tokens
from pipeline.models import UNFINISHED, Example, Job, LLMCall, utcnow


def plan(params: dict) -> tuple[GenerationConfig, Estimate]:
    """Validate the settings (raises UserFacingError) and estimate the run."""
    config = load(params)
    persona = runner.prepare(config)
    return config, estimate(config, len(persona.system_prompt.split()) + 20 * len(persona.traits))


def start(params: dict, started_by: str = "", name: str = "") -> Job:
    access.check("generate")
    config, _ = plan(params)
    return jobs.submit(
        "generation",
        # the persona's prompt as the run starts (its saved version, its hash): for the lineage views
        config.model_dump(mode="json") | {"persona_version": lineage.persona_version_now(config.persona_id)},
        name=name or f"Generation: {config.examples} examples",
        started_by=started_by,
    )


def runs(limit: int = 50) -> list[Job]:
    with session_scope() as session:
        return list(session.exec(select(Job).where(Job.kind == "generation").order_by(Job.id.desc()).limit(limit)))


@dataclass
class RunView:
    job: Job
    ready: int
    failed: int
    planned: int
    latest: Example | None
    failures: list[dict]
    flagged: int
    gate: dict  # the quality gate: {"flagged": n, "by_check": {check: n}}
    stages: runner.StageProgress
    eta_s: float | None  # from this run's own measured pace; None until it has one


def view(job_id: int) -> RunView:
    job = jobs.get(job_id)
    stages = runner.stage_progress(job_id)
    with session_scope() as session:
        examples = list(session.exec(select(Example).where(Example.job_id == job_id)))
    finished = [e for e in examples if e.status in runner.FINISHED and e.response]
    made = [e for e in examples if e.status not in UNFINISHED]
    latest = max(finished, key=lambda e: e.id, default=None)
    failures = [
        {"example": e.slot, "type": e.document_type, "trait": ", ".join(e.traits_stressed), "reason": e.failure}
        for e in sorted(examples, key=lambda e: e.slot or 0)
        if e.status == "failed"
    ]
    return RunView(
        job=job,
        ready=sum(e.status == "pending" for e in examples),
        failed=len(failures),
        planned=job.params.get("examples", len(examples)),
        latest=latest,
        flagged=sum(bool(e.flags) for e in examples),
        gate={  # every example made, reviewed or not
            "flagged": sum(bool(e.quality_issues) for e in made),
            "by_check": quality.counts(e.quality_issues for e in made),
        },
        failures=failures,
        stages=stages,
        eta_s=live_eta(job, examples),
    )


def gate_summary(gate: dict) -> str:
    """e.g. "2 flagged by the quality gate: repetition 1 · shouting 1"; empty when none was."""
    if not gate["flagged"]:
        return ""
    each = " · ".join(f"{quality.LABELS[check]} {n}" for check, n in gate["by_check"].items() if n)
    return f"{gate['flagged']} flagged by the quality gate: {each}"


def live_eta(job: Job, examples: list[Example]) -> float | None:
    """Seconds left, from this attempt's measured pace: completion tokens per second since it started
    (every stage counts, so the ETA moves while the first stage runs), times the tokens still to make:
    each unfinished stage at this run's own average per stage, or the plan's figure before it has one."""
    if job.status != "running" or job.started_at is None:
        return None
    with session_scope() as session:
        calls = session.exec(
            select(LLMCall.purpose, LLMCall.completion_tokens, LLMCall.at).where(
                LLMCall.job_id == job.id,
                LLMCall.error.is_(None),
                LLMCall.cached == False,  # noqa: E712
            )
        ).all()
    since = _naive(job.started_at)
    made = sum(tokens for _, tokens, at in calls if _naive(at) >= since)
    elapsed = (_naive(utcnow()) - since).total_seconds()
    if made <= 0 or elapsed <= 0:
        return None
    per_stage = {}
    params = {k: v for k, v in job.params.items() if k in GenerationConfig.model_fields}
    planned = stage_tokens(GenerationConfig(**params), 250)
    for stage in runner.STAGES:
        mine = [tokens for purpose, tokens, _ in calls if purpose == f"generation:{stage}" and tokens > 0]
        per_stage[stage] = sum(mine) / len(mine) if mine else planned[stage][1]
    fields = {"scenario": "document_title", "document": "document", "response": "response"}
    left = sum(
        per_stage[stage]
        for e in examples
        if e.status == "generating"
        for stage in runner.STAGES
        if not getattr(e, fields[stage])
    )
    return left / (made / elapsed)


def _naive(moment):
    return moment.replace(tzinfo=None) if moment.tzinfo else moment


def cancelled_count(job_id: int) -> int:
    """Examples a stopped run left unfinished."""
    with session_scope() as session:
        query = select(func.count()).select_from(Example).where(Example.job_id == job_id, Example.status == "cancelled")
        return session.exec(query).one()


def delete_cancelled(job_id: int) -> int:
    """Delete them (a resume would plan them afresh); a run being made is left alone. Returns how many."""
    if jobs.get(job_id).status in jobs.ACTIVE:
        raise UserFacingError(f"Run {job_id} is still running; stop it first.")
    return runner.delete_cancelled(job_id)


def import_transcripts(
    persona_id: int, files: list[tuple[str, bytes]], speaker: str | None = None, extract_models: list[str] | None = None
) -> list[dict]:
    """Import each file's pairs; one file's problem is reported and the others still go in."""
    access.check("import_examples")
    from pipeline.generation import transcripts

    report = []
    for name, data in files:
        try:
            try:
                transcript = transcripts.parse(data, name, speaker)
            except UserFacingError:
                if not extract_models:
                    raise
                transcript = transcripts.extract_with_llm(data, name, extract_models)
            added, skipped = transcripts.import_pairs(persona_id, transcript)
            report.append({"file": name, "added": added, "already there": skipped, "problem": ""})
        except UserFacingError as exc:
            report.append({"file": name, "added": 0, "already there": 0, "problem": str(exc)})
    return report


def few_shot(persona_id: int, count: int = 3) -> list[dict]:
    from pipeline.generation import transcripts

    return transcripts.few_shot(persona_id, count)


def few_shot_json(messages: list[dict]) -> str:
    import json

    return json.dumps({"messages": messages}, indent=2, ensure_ascii=False)
