"""Compare two to six training runs: the settings that differ, their curves, their final figures, and
one evaluation of their models against each other."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import select

from pipeline import jobs
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.models import Job, ModelEntry
from pipeline.training import runs
from pipeline.training.config import load

MIN_RUNS, MAX_RUNS = 2, 6


@dataclass
class Comparison:
    jobs: list[Job]
    differing: list[dict]  # one row per setting that differs: setting, then one column per run
    curves: dict[str, list[dict]]  # run label → metric rows (step, loss, val_loss, persona_similarity)
    finals: list[dict]  # one row per run: final and best losses, the last persona score, steps, model
    models: dict[int, str]  # job id → registered model reference

    @property
    def labels(self) -> list[str]:
        return [label(job) for job in self.jobs]


def label(job: Job) -> str:
    return f"#{job.id}"


def training_runs(limit: int = 100) -> list[Job]:
    """Training jobs that logged anything or finished, newest first: the ones to compare."""
    return [j for j in jobs.list_jobs(limit * 3) if j.kind in runs.TRAINING_KINDS][:limit]


def _configs(found: list[Job]) -> list[dict]:
    configs = []
    for job in found:
        if "config" not in job.params:
            raise UserFacingError(f"Job {job.id} has no saved training settings.")
        configs.append(load(job.params["config"]).model_dump(mode="json"))
    return configs


def differing(found: list[Job], configs: list[dict]) -> list[dict]:
    """Only the settings whose values are not all the same."""
    rows = []
    for key in configs[0]:
        values = [c.get(key) for c in configs]
        if any(v != values[0] for v in values[1:]):
            rows.append({"setting": key, **{label(j): runs._show(v) for j, v in zip(found, values, strict=True)}})
    return rows


def _persona(values: dict | None) -> float | None:
    return (values or {}).get("persona_similarity")


def compare(job_ids: list[int]) -> Comparison:
    ids = list(dict.fromkeys(job_ids))
    if not MIN_RUNS <= len(ids) <= MAX_RUNS:
        raise UserFacingError(f"Pick {MIN_RUNS} to {MAX_RUNS} training runs to compare; {len(ids)} picked.")
    found = [jobs.get(i) for i in ids]
    for job in found:
        if job.kind not in runs.TRAINING_KINDS:
            raise UserFacingError(f"Job {job.id} is not a training job.")
    configs = _configs(found)
    with session_scope() as session:
        entries = session.exec(select(ModelEntry).where(ModelEntry.job_id.in_(ids))).all()
        models = {e.job_id: e.reference for e in entries}
    curves, finals = {}, []
    for job in found:
        metrics = [
            # the checkpoint gallery's persona score (local training) comes as a metric at each evaluation
            {"step": m.step, "loss": m.loss, "val_loss": m.val_loss, "persona_similarity": _persona(m.values)}
            for m in jobs.metrics(job.id)
            if m.loss is not None or m.val_loss is not None or _persona(m.values) is not None
        ]
        curves[label(job)] = metrics
        losses = [m["loss"] for m in metrics if m["loss"] is not None]
        validation = [m["val_loss"] for m in metrics if m["val_loss"] is not None]
        persona = [m["persona_similarity"] for m in metrics if m["persona_similarity"] is not None]
        timing = jobs.timing(job)
        finals.append(
            {
                "run": label(job),
                "status": job.status,
                "final loss": losses[-1] if losses else None,
                "final validation loss": validation[-1] if validation else None,
                "best validation loss": min(validation) if validation else None,
                "persona score (last check)": round(persona[-1], 3) if persona else None,
                "steps": max((m["step"] for m in metrics), default=0),
                "minutes": round(timing.elapsed_s / 60, 1) if timing.elapsed_s is not None else None,
                "model": models.get(job.id, ""),
            }
        )
    return Comparison(found, differing(found, configs), curves, finals, models)


def evaluation_plan(job_ids: list[int], custom_prompts: list[str] = ()):
    """An offline evaluation of the runs' models against each other, with the base model (no prompt) as
    the anchor, on the held-out prompts of the first run's dataset (and any custom ones): checked, not started."""
    from pipeline.evaluation import service as evaluation

    found = compare(job_ids)
    missing = [label(j) for j in found.jobs if j.id not in found.models]
    if missing:
        raise UserFacingError(
            f"Run(s) {', '.join(missing)} made no model (not finished, or failed): compare those that succeeded."
        )
    with session_scope() as session:
        entries = session.exec(select(ModelEntry).where(ModelEntry.job_id.in_([j.id for j in found.jobs]))).all()
    persona_ids = {e.persona_id for e in entries if e.persona_id is not None}
    if len(persona_ids) != 1:
        raise UserFacingError("These runs trained models of different personas (or none): evaluate one persona's.")
    first = load(found.jobs[0].params["config"])
    base = first.resolved_base() if first.backend == "local" else None
    contestants = [found.models[j.id] for j in found.jobs] + ([base] if base else [])
    return evaluation.plan(
        persona=persona_ids.pop(),
        contestants=contestants,
        dataset=first.dataset,
        judge_model="offline",
        anchor=base,
        criteria_traits=False,
        trait_scores=False,
        custom_prompts=list(custom_prompts),
    )


def evaluate(job_ids: list[int], custom_prompts: list[str] = ()) -> Job:
    """Queue that evaluation (offline judge: no key, no cost)."""
    from pipeline.evaluation import service as evaluation

    plan = evaluation_plan(job_ids, custom_prompts)
    names = ", ".join(f"#{i}" for i in dict.fromkeys(job_ids))
    return evaluation.start(plan, name=f"Compare runs {names}")
