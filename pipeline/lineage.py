"""Where a model, a dataset or an example came from, and what was made from it: plain data, read with queries.

The chain, forwards:

    persona (its prompt version) → generation run (models per stage) → reviewed examples (stars, ratings, who
    reviewed and who edited) → dataset snapshot (content hash) → training job (its config) → model → evaluations →
    deployments

A dataset's examples are listed in its snapshot's `manifest.json` (train and validation ids), which is
read here (cached by file and modification time); everything else is in the database. Walking back from an
example answers "which models used this example?"; `persona_impact` lists what deleting a persona's data
touches before anything is deleted.

Each example records who last starred, rated, accepted or rejected it, and when; every edit carries its editor.
Examples reviewed before reviewers were recorded say so.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from sqlalchemy import func
from sqlmodel import Session, select

from pipeline import clock
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.models import (
    Dataset,
    DeploymentEvent,
    Example,
    ExampleEdit,
    Job,
    ModelEntry,
    Persona,
    PromptVersion,
    TrainingMetric,
)

TRAINING_KINDS = ("train_local", "train_openai", "train_together")
STAGES = ("scenario", "document", "response")


# --- the persona's prompt version at generation ------------------------------------------------------------


def prompt_sha(text: str) -> str:
    return hashlib.sha256((text or "").encode()).hexdigest()[:12]


def persona_version_now(persona_id: int | None) -> dict | None:
    """What a generation run records about its persona as it starts: the saved prompt version whose text is the
    persona's prompt (the active one first), the prompt's hash and when the persona was last edited."""
    if persona_id is None:
        return None
    with session_scope() as session:
        persona = session.get(Persona, persona_id)
        if persona is None:
            return None
        return _version_of(session, persona, persona.system_prompt) | {
            "persona_updated_at": persona.updated_at.isoformat() if persona.updated_at else None
        }


def _version_of(session: Session, persona: Persona, text: str) -> dict:
    versions = session.exec(
        select(PromptVersion)
        .where(PromptVersion.persona_id == persona.id)
        .order_by(PromptVersion.active.desc(), PromptVersion.version.desc())
    ).all()
    match = next((v.version for v in versions if v.system_prompt == text), None)
    return {"prompt_version": match, "prompt_sha": prompt_sha(text)}


# --- dataset manifests: which examples a snapshot holds -------------------------------------------------------


def _manifest_path(name: str) -> Path:
    from pipeline.datasets import build

    return build.folder(name) / "manifest.json"


@functools.lru_cache(maxsize=256)
def _manifest_ids(path: str, mtime: float) -> tuple[tuple[int, ...], tuple[int, ...]]:
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return (), ()
    return tuple(manifest.get("train_example_ids") or ()), tuple(manifest.get("validation_example_ids") or ())


def dataset_example_ids(name: str) -> dict[int, str]:
    """{example id: "train" | "validation"} for a saved snapshot; empty when its files are gone."""
    path = _manifest_path(name)
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return {}
    train, validation = _manifest_ids(str(path), mtime)
    return dict.fromkeys(train, "train") | dict.fromkeys(validation, "validation")


# --- plain rows -----------------------------------------------------------------------------------------------


def _when(moment) -> str:
    return clock.local(moment) if moment else "—"


def _persona_row(session: Session, persona_id: int | None) -> dict | None:
    persona = session.get(Persona, persona_id) if persona_id is not None else None
    if persona is None:
        return None
    return {"id": persona.id, "name": persona.name, "updated": _when(persona.updated_at)}


def _generation_row(session: Session, job: Job, examples_used: int | None = None) -> dict:
    params = job.params or {}
    recorded = params.get("persona_version")
    if recorded is None:  # a run from before runs recorded it
        version = {"prompt_version": None, "prompt_sha": None, "recorded": False}
    else:
        version = dict(recorded) | {"recorded": True}
    return {
        "job": job.id,
        "name": job.name,
        "status": job.status,
        "started_by": job.started_by or "—",
        "created": _when(job.created_at),
        "models": {stage: list(params.get(f"{stage}_models") or []) for stage in STAGES},
        "persona_version": version,
        "examples_used": examples_used,
    }


def _review_summary(session: Session, ids: list[int]) -> dict:
    """Counts of what reviewers did to these examples, and who edited which."""
    if not ids:
        return {
            "examples": 0, "gold": 0, "rated": 0, "accepted": 0, "edited": 0, "editors": {}, "reviewers": {},
            "sources": {},
        }  # fmt: skip
    rows = []
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        rows += session.exec(
            select(
                Example.id, Example.status, Example.gold_star, Example.rating, Example.source, Example.reviewed_by
            ).where(Example.id.in_(chunk))
        ).all()
    editors: dict[str, int] = {}
    edited: set[int] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for example_id, editor in session.exec(
            select(ExampleEdit.example_id, ExampleEdit.editor).where(ExampleEdit.example_id.in_(chunk))
        ).all():
            edited.add(example_id)
            editors[editor or "—"] = editors.get(editor or "—", 0) + 1
    sources: dict[str, int] = {}
    reviewers: dict[str, int] = {}
    for row in rows:
        sources[row[4]] = sources.get(row[4], 0) + 1
        if row[5]:
            reviewers[row[5]] = reviewers.get(row[5], 0) + 1
    return {
        "examples": len(ids),
        "still_stored": len(rows),
        "gold": sum(1 for r in rows if r[2]),
        "rated": sum(1 for r in rows if r[3]),
        "accepted": sum(1 for r in rows if r[1] == "accepted"),
        "edited": len(edited),
        "editors": editors,
        "reviewers": reviewers,  # who last starred, rated, accepted or rejected each (named ones only)
        "sources": sources,
    }


def _dataset_row(dataset: Dataset) -> dict:
    return {
        "id": dataset.id,
        "name": dataset.name,
        "content_hash": dataset.content_hash,
        "train": dataset.counts.get("train", 0),
        "validation": dataset.counts.get("validation", 0),
        "include_system_prompt": dataset.include_system_prompt,
        "filter": {k: v for k, v in (dataset.filter or {}).items() if k != "persona_id"},
        "created": _when(dataset.created_at),
    }


def _training_row(session: Session, job: Job | None) -> dict | None:
    if job is None:
        return None
    metrics = session.exec(
        select(TrainingMetric).where(TrainingMetric.job_id == job.id).order_by(TrainingMetric.step.desc())
    ).all()
    return {
        "job": job.id,
        "kind": job.kind,
        "name": job.name,
        "status": job.status,
        "started_by": job.started_by or "—",
        "created": _when(job.created_at),
        "config": dict((job.params or {}).get("config") or {}),
        "final_loss": next((m.loss for m in metrics if m.loss is not None), None),
        "final_val_loss": next((m.val_loss for m in metrics if m.val_loss is not None), None),
    }


def _contestant_model(name: str) -> str:
    from pipeline.evaluation.contestants import Contestant

    try:
        return Contestant.parse(name).model
    except UserFacingError:
        return name


def _evaluations(session: Session, entry: ModelEntry) -> list[dict]:
    rows = []
    for job in session.exec(select(Job).where(Job.kind == "evaluation").order_by(Job.id)).all():
        contestants = list((job.params or {}).get("contestants") or [])
        mine = [c for c in contestants if _contestant_model(c) == entry.reference or c == entry.name]
        if not mine:
            continue
        rows.append(
            {
                "job": job.id,
                "name": job.name,
                "status": job.status,
                "judge": (job.params or {}).get("judge", ""),
                "as": mine,
                "against": [c for c in contestants if c not in mine],
                "created": _when(job.created_at),
            }
        )
    return rows


def _deployments(session: Session, entry: ModelEntry) -> list[dict]:
    events = session.exec(
        select(DeploymentEvent).where(DeploymentEvent.model_id == entry.id).order_by(DeploymentEvent.at)
    ).all()
    names = {p.id: p.name for p in session.exec(select(Persona)).all()}
    return [
        {
            "action": e.action,
            "persona": names.get(e.persona_id, "—"),
            "by": e.actor or "—",
            "at": _when(e.at),
            "notes": e.notes,
        }
        for e in events
    ]


def _model_row(entry: ModelEntry) -> dict:
    return {
        "id": entry.id,
        "name": entry.name,
        "reference": entry.reference,
        "backend": entry.backend,
        "base_model": entry.base_model,
        "status": entry.status,
        "created": _when(entry.created_at),
    }


def _models_of_dataset(session: Session, dataset: Dataset) -> list[ModelEntry]:
    """Models trained on the snapshot: recorded on the model, or named by the training job that made it."""
    found = {m.id: m for m in session.exec(select(ModelEntry).where(ModelEntry.dataset_id == dataset.id)).all()}
    jobs = _training_jobs_of(session, dataset.name)
    if jobs:
        for entry in session.exec(select(ModelEntry).where(ModelEntry.job_id.in_([j.id for j in jobs]))).all():
            found.setdefault(entry.id, entry)
    return sorted(found.values(), key=lambda m: m.id)


def _training_jobs_of(session: Session, dataset_name: str) -> list[Job]:
    jobs = session.exec(select(Job).where(Job.kind.in_(TRAINING_KINDS)).order_by(Job.id)).all()
    return [j for j in jobs if ((j.params or {}).get("config") or {}).get("dataset") == dataset_name]


def _generation_runs(session: Session, ids: list[int]) -> list[dict]:
    """The generation runs these examples came from, with how many of them each gave."""
    per_job: dict[int | None, int] = {}
    for start in range(0, len(ids), 500):
        for job_id in session.exec(select(Example.job_id).where(Example.id.in_(ids[start : start + 500]))).all():
            per_job[job_id] = per_job.get(job_id, 0) + 1
    runs = []
    for job_id in sorted(k for k in per_job if k is not None):
        job = session.get(Job, job_id)
        if job is not None:
            runs.append(_generation_row(session, job, per_job[job_id]))
    if per_job.get(None):
        runs.append({"job": None, "name": "imported or from the playground", "examples_used": per_job[None]})
    return runs


def _downstream(session: Session, entry: ModelEntry) -> dict:
    return {
        "model": _model_row(entry),
        "training": _training_row(session, session.get(Job, entry.job_id) if entry.job_id else None),
        "evaluations": _evaluations(session, entry),
        "deployments": _deployments(session, entry),
    }


# --- the walks ------------------------------------------------------------------------------------------------


def for_model(name: str) -> dict:
    """Backwards from a model to its persona, and forwards to its evaluations and deployments."""
    with session_scope() as session:
        entry = session.exec(select(ModelEntry).where(ModelEntry.name == name)).first()
        if entry is None:
            raise UserFacingError(f"No model named {name!r}.")
        job = session.get(Job, entry.job_id) if entry.job_id else None
        dataset = session.get(Dataset, entry.dataset_id) if entry.dataset_id else None
        if dataset is None and job is not None:
            named = ((job.params or {}).get("config") or {}).get("dataset")
            if named:
                dataset = session.exec(select(Dataset).where(Dataset.name == named)).first()
        ids = sorted(dataset_example_ids(dataset.name)) if dataset else []
        persona_id = entry.persona_id if entry.persona_id is not None else (dataset.persona_id if dataset else None)
        return {
            "kind": "model",
            "persona": _persona_row(session, persona_id),
            "generation_runs": _generation_runs(session, ids),
            "review": _review_summary(session, ids),
            "dataset": _dataset_row(dataset) if dataset else None,
            **_downstream(session, entry),
        }


def for_dataset(name: str) -> dict:
    """Backwards from a snapshot to its persona and runs, forwards to every model trained on it."""
    with session_scope() as session:
        dataset = session.exec(select(Dataset).where(Dataset.name == name)).first()
        if dataset is None:
            raise UserFacingError(f"No dataset named {name!r}.")
        ids = sorted(dataset_example_ids(dataset.name))
        models = _models_of_dataset(session, dataset)
        made = {m.job_id for m in models}
        return {
            "kind": "dataset",
            "persona": _persona_row(session, dataset.persona_id),
            "generation_runs": _generation_runs(session, ids),
            "review": _review_summary(session, ids),
            "dataset": _dataset_row(dataset),
            "models": [_downstream(session, m) for m in models],
            # trainings on it that made no model (yet): still running, failed or cancelled
            "trainings_without_model": [
                _training_row(session, j) for j in _training_jobs_of(session, dataset.name) if j.id not in made
            ],
        }


def datasets_with_example(example_id: int, session: Session | None = None) -> list[tuple[Dataset, str]]:
    """Every saved snapshot holding the example, with the part it is in (train or validation)."""

    def scan(unit: Session) -> list[tuple[Dataset, str]]:
        example = unit.get(Example, example_id)
        query = select(Dataset).order_by(Dataset.id)
        if example is not None:
            query = query.where((Dataset.persona_id == example.persona_id) | (Dataset.persona_id.is_(None)))
        found = []
        for dataset in unit.exec(query).all():
            part = dataset_example_ids(dataset.name).get(example_id)
            if part:
                found.append((dataset, part))
        return found

    if session is not None:
        return scan(session)
    with session_scope() as own:
        return scan(own)


def for_example(example_id: int) -> dict:
    """Backwards from an example to its persona and run; forwards to its datasets and the models they trained."""
    with session_scope() as session:
        example = session.get(Example, example_id)
        if example is None:
            raise UserFacingError(f"Example {example_id} does not exist (deleted?).")
        job = session.get(Job, example.job_id) if example.job_id else None
        edits = session.exec(select(ExampleEdit).where(ExampleEdit.example_id == example_id).order_by(ExampleEdit.at))
        datasets = []
        for dataset, part in datasets_with_example(example_id, session):
            models = _models_of_dataset(session, dataset)
            datasets.append(_dataset_row(dataset) | {"part": part, "models": [_downstream(session, m) for m in models]})
        return {
            "kind": "example",
            "persona": _persona_row(session, example.persona_id),
            "generation_runs": [_generation_row(session, job, 1)] if job and job.kind == "generation" else [],
            "example": {
                "id": example.id,
                "source": example.source,
                "status": example.status,
                "gold": example.gold_star,
                "rating": example.rating,
                "reviewed_by": example.reviewed_by or None,
                "reviewed_at": _when(example.reviewed_at) if example.reviewed_at else None,
                "stage_models": dict(example.stage_models or {}),
                "edits": [
                    {"by": e.editor or "—", "at": _when(e.at), "words_after": len(e.after.split())} for e in edits
                ],
            },
            "datasets": datasets,
        }


def models_using_example(example_id: int) -> list[dict]:
    """Which models were trained on a dataset holding this example: [{model, dataset, part, status}]."""
    with session_scope() as session:
        rows = []
        for dataset, part in datasets_with_example(example_id, session):
            for entry in _models_of_dataset(session, dataset):
                rows.append({"model": entry.name, "dataset": dataset.name, "part": part, "status": entry.status})
        return rows


# --- what deleting a persona's data touches -------------------------------------------------------------------


def persona_impact(persona_id: int) -> dict:
    """Everything deleting the persona's examples and datasets (or the persona) would touch, before it happens:
    counts of examples and edits, and the names of its datasets, the models trained on them or made for the
    persona, the jobs that made or used them and the deployments of those models."""
    with session_scope() as session:
        persona = session.get(Persona, persona_id)
        if persona is None:
            raise UserFacingError("That persona no longer exists.")
        examples = session.exec(select(func.count()).select_from(Example).where(Example.persona_id == persona_id)).one()
        edits = session.exec(
            select(func.count())
            .select_from(ExampleEdit)
            .join(Example, Example.id == ExampleEdit.example_id)
            .where(Example.persona_id == persona_id)
        ).one()
        gold = session.exec(
            select(func.count()).select_from(Example).where(Example.persona_id == persona_id, Example.gold_star)
        ).one()
        datasets = session.exec(select(Dataset).where(Dataset.persona_id == persona_id).order_by(Dataset.id)).all()
        models: dict[int, ModelEntry] = {
            m.id: m for m in session.exec(select(ModelEntry).where(ModelEntry.persona_id == persona_id)).all()
        }
        for dataset in datasets:
            for entry in _models_of_dataset(session, dataset):
                models.setdefault(entry.id, entry)
        generation_jobs = session.exec(
            select(Job.id).where(Job.id.in_(select(Example.job_id).where(Example.persona_id == persona_id)))
        ).all()
        training_jobs = {j.id for d in datasets for j in _training_jobs_of(session, d.name)}
        evaluation_jobs = {
            j.id
            for j in session.exec(select(Job).where(Job.kind == "evaluation")).all()
            if (j.params or {}).get("persona_id") == persona_id
        }
        deployments = session.exec(
            select(func.count()).select_from(DeploymentEvent).where(DeploymentEvent.model_id.in_(list(models) or [-1]))
        ).one()
        deployed = sorted(m.name for m in models.values() if m.status == "deployed")
        return {
            "persona": persona.name,
            "examples": int(examples),
            "gold": int(gold),
            "edits": int(edits),
            "datasets": [d.name for d in datasets],
            "models": sorted(m.name for m in models.values()),
            "deployed_models": deployed,
            "jobs": {
                "generation": sorted(generation_jobs),
                "training": sorted(training_jobs),
                "evaluation": sorted(evaluation_jobs),
            },
            "deployment_events": int(deployments),
        }


def impact_lines(impact: dict, persona_deleted: bool = False) -> list[str]:
    """The confirm step's words: what goes, and what stays but loses its source."""
    jobs = impact["jobs"]
    names = ", ".join(impact["datasets"]) or "none"
    lines = [
        f"{impact['examples']} examples ({impact['gold']} gold-starred) and {impact['edits']} recorded edits "
        "are deleted",
        f"{len(impact['datasets'])} datasets are deleted, files included: {names}",
    ]
    if impact["models"]:
        stays = "they stay in the registry" + ("" if persona_deleted else ", still callable")
        lines.append(
            f"{len(impact['models'])} models were trained on this data or made for this persona: "
            f"{', '.join(impact['models'])} ({stays}, but their lineage loses the data they came from)"
        )
    else:
        lines.append("no model was trained on this data")
    if impact["deployed_models"]:
        lines.append(f"deployed now: {', '.join(impact['deployed_models'])}")
    lines.append(
        f"jobs that made or used it (kept, with their logs): {len(jobs['generation'])} generation "
        f"{_ids(jobs['generation'])}, {len(jobs['training'])} training {_ids(jobs['training'])}, "
        f"{len(jobs['evaluation'])} evaluation {_ids(jobs['evaluation'])}"
    )
    return lines


def _ids(ids: list[int]) -> str:
    return "(" + ", ".join(f"#{i}" for i in ids[:12]) + (" …" if len(ids) > 12 else "") + ")" if ids else ""


# --- a tree in words ------------------------------------------------------------------------------------------


def tree_lines(walk: dict) -> list[tuple[int, str]]:
    """The walk as (depth, text) lines, from the persona down to the deployments: for an indented list."""
    lines: list[tuple[int, str]] = []
    persona = walk.get("persona")
    if persona:
        lines.append((0, f"Persona **{persona['name']}**"))
    elif walk["kind"] == "model" and not walk.get("dataset") and not walk.get("training"):
        lines.append((0, "Persona: none (a base model: not trained on a persona's data here)"))
    else:
        lines.append((0, "Persona: none recorded (deleted?)"))
    for run in walk.get("generation_runs") or []:
        lines.append((1, _run_text(run)))
    if walk["kind"] == "example":
        ex = walk["example"]
        review = f"Example #{ex['id']} ({ex['source']}): {ex['status']}"
        review += " · gold star" if ex["gold"] else ""
        review += f" · rated {ex['rating']}/5" if ex["rating"] else ""
        lines.append((2, review))
        if ex["stage_models"]:
            models = ", ".join(f"{k}: {v}" for k, v in ex["stage_models"].items() if v)
            lines.append((3, f"written by {models}"))
        for edit in ex["edits"]:
            lines.append((3, f"edited by {edit['by']} on {edit['at']} ({edit['words_after']} words after)"))
        if ex["reviewed_at"]:
            who = f"by {ex['reviewed_by']}" if ex["reviewed_by"] else "by someone who gave no name"
            lines.append((3, f"last starred, rated, accepted or rejected {who} on {ex['reviewed_at']}"))
        elif ex["gold"] or ex["rating"] or ex["status"] in ("accepted", "rejected"):
            lines.append((3, "who reviewed it is not recorded (reviewed before the studio recorded reviewers)"))
        if not walk["datasets"]:
            lines.append((2, "in no saved dataset: no model used it"))
        for dataset in walk["datasets"]:
            lines.append((2, _dataset_text(dataset) + f" · in its {dataset['part']} part"))
            _models_lines(lines, dataset["models"], 3)
        return lines
    review = walk.get("review") or {}
    if review.get("examples"):
        editors = ", ".join(f"{who} ({n})" for who, n in sorted(review["editors"].items())) or "nobody"
        lines.append(
            (
                2,
                f"{review['examples']} reviewed examples: {review['accepted']} accepted, "
                f"{review['gold']} gold-starred, {review['rated']} rated, {review['edited']} edited (by {editors})",
            )
        )
        if review.get("reviewers"):
            named = ", ".join(f"{who} ({n})" for who, n in sorted(review["reviewers"].items()))
            lines.append((3, f"reviewed by {named}"))
    dataset = walk.get("dataset")
    if dataset:
        lines.append((2, _dataset_text(dataset)))
    else:
        lines.append((2, "Dataset: none recorded"))
    if walk["kind"] == "model":
        _model_lines(lines, walk, 3)
    else:
        if not walk["models"]:
            lines.append((3, "no model trained on it yet"))
        _models_lines(lines, walk["models"], 3)
        for training in walk["trainings_without_model"]:
            lines.append((3, _training_text(training) + " · made no model"))
    return lines


def _run_text(run: dict) -> str:
    if run.get("job") is None:
        return f"{run['examples_used']} examples {run['name']}"
    version = run["persona_version"]
    if not version.get("recorded"):
        prompt = "prompt version not recorded (run made before lineage)"
    elif version.get("prompt_version"):
        prompt = f"prompt v{version['prompt_version']} (sha {version['prompt_sha']})"
    else:
        prompt = f"prompt sha {version['prompt_sha']} (not a saved version)"
    models = "; ".join(f"{stage}: {' → '.join(m) or '—'}" for stage, m in run["models"].items())
    used = f" · {run['examples_used']} examples used" if run.get("examples_used") is not None else ""
    return f"Generation run #{run['job']} ({run['status']}, {run['created']}) · {prompt} · {models}{used}"


def _dataset_text(dataset: dict) -> str:
    return (
        f"Dataset **{dataset['name']}** · hash {dataset['content_hash'][:12]} · {dataset['train']} train + "
        f"{dataset['validation']} validation · system prompt {'in' if dataset['include_system_prompt'] else 'out'}"
    )


def _training_text(training: dict) -> str:
    config = training["config"]
    settings = ", ".join(
        f"{k} {config[k]}" for k in ("backend", "method", "base_model", "epochs", "learning_rate", "lora_r")
        if config.get(k) not in (None, "")
    )  # fmt: skip
    loss = f" · final loss {training['final_loss']:.3f}" if training.get("final_loss") is not None else ""
    return f"Training job #{training['job']} ({training['status']}) · {settings or 'no config recorded'}{loss}"


def _model_lines(lines: list, node: dict, depth: int) -> None:
    if node["training"]:
        lines.append((depth, _training_text(node["training"])))
    model = node["model"]
    lines.append((depth + 1, f"Model **{model['name']}** ({model['backend']}, {model['status']})"))
    for evaluation in node["evaluations"]:
        lines.append(
            (
                depth + 2,
                f"Evaluation #{evaluation['job']} ({evaluation['status']}) · judge {evaluation['judge']} · "
                f"against {', '.join(evaluation['against']) or 'nobody'}",
            )
        )
    if not node["evaluations"]:
        lines.append((depth + 2, "not evaluated yet"))
    for event in node["deployments"]:
        lines.append((depth + 2, f"{event['action']} for {event['persona']} by {event['by']} on {event['at']}"))


def _models_lines(lines: list, models: list[dict], depth: int) -> None:
    for node in models:
        _model_lines(lines, node, depth)
