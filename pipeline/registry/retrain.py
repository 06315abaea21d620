"""Retrain on an open base: a registry model's dataset snapshot and training config, on a base that stays.

A model trained at a provider that closes (OpenAI's fine-tuning: see training/providers.py) is
trained again, from the same snapshot (checked by its content hash) with the same settings, on this
machine or at Together; only the backend, the base model and the new model's name change. When the
new model is registered, an evaluation of the two side by side is queued (`after_training`, called by
the training job): the new model against the old one while the old one still answers, else against
its own base, with the reason the old one was left out in the job log and the evaluation's name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlmodel import select

from pipeline import settings, storage
from pipeline.datasets import build, targets
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.jobs import keys
from pipeline.llm import embedded
from pipeline.models import Dataset, Job, ModelEntry
from pipeline.registry import lifecycle
from pipeline.training import providers
from pipeline.training.config import DEFAULT_BASE, TrainingConfig, load

BACKENDS = {"local": "This machine", "together": "Together"}  # open-weight bases only
CHANGED = ("backend", "base_model", "name")  # the only settings a retrain changes
PARAM = "retrain"  # the training job's parameter saying where it came from


def open_bases() -> dict[str, list[str]]:
    """The bases a model can be retrained on, per backend: the built-in model and any full local model
    (not an adapter) on this machine; Together's open-weight bases from the training catalog."""
    local = [t.base_model for t in targets.TARGETS if t.backend == "local"]
    for name in embedded.local_model_names():
        if f"local/{name}" not in local and embedded.is_full_model(name):
            local.append(f"local/{name}")
    together = [t.base_model for t in targets.TARGETS if t.backend == "together"]
    return {"local": local, "together": together or [DEFAULT_BASE["together"]]}


@dataclass
class RetrainPlan:
    model: ModelEntry  # the model retrained
    dataset: str
    dataset_hash: str
    old_config: dict
    config: TrainingConfig  # the same settings, on the new backend and base
    training: object  # training.service.Plan: eligibility, cost and time on the new backend
    old_answers: bool  # the old model can still be a contestant in the evaluation that follows
    old_left_out: str = ""  # why not, in words
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> dict[str, tuple]:
        """Setting → (before, after), for the settings the retrain changes."""
        new = self.config.model_dump(mode="json")
        return {k: (self.old_config.get(k), new[k]) for k in CHANGED if self.old_config.get(k) != new[k]}

    @property
    def evaluation(self) -> str:
        """Who the new model will be evaluated against, in words."""
        if self.old_answers:
            return f"against {self.model.name}"
        return f"against its base, {self.config.resolved_base()} ({self.model.name} left out: {self.old_left_out})"

    @property
    def can_start(self) -> bool:
        return self.training.can_start

    def summary(self) -> dict:
        return {
            "model": self.model.name,
            "dataset": self.dataset,
            "dataset_hash": self.dataset_hash,
            "backend": self.config.backend,
            "base_model": self.config.resolved_base(),
            "new_model": self.config.name,
            "config": self.config.model_dump(mode="json"),
            "changed": {k: list(v) for k, v in self.changed.items()},
            "evaluation": self.evaluation,
            "problems": [*self.training.problems, *([self.training.missing_key] if self.training.missing_key else [])],
            "notes": [*self.notes, *self.training.notes],
        }


def snapshot_hash(dataset: Dataset) -> str:
    """The content hash of the snapshot's files as they are on disk now (what build.save hashed)."""
    halves = []
    for part in ("train", "validation"):
        path = build.file_path(dataset, "openai", part)
        if not path.exists():
            raise UserFacingError(
                f"Dataset {dataset.name!r}'s {part} file is gone from {path.parent}: the snapshot this model was "
                "trained on no longer exists, so it cannot be retrained on the same data."
            )
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        halves.append([row["messages"] for row in rows])
    return build.content_hash(*halves)


def _recorded(entry: ModelEntry) -> tuple[Dataset, dict]:
    """The snapshot the model was trained on (checked against its content hash) and its training config."""
    if entry.backend in ("embedded", "prompt") or (entry.job_id is None and not entry.config):
        raise UserFacingError(f"{entry.name} was not fine-tuned by the studio: there is no training to repeat.")
    with session_scope() as session:
        job = session.get(Job, entry.job_id) if entry.job_id else None
        config = dict((job.params.get("config") if job else None) or entry.config or {})
        dataset = session.get(Dataset, entry.dataset_id) if entry.dataset_id else None
    if not config:
        raise UserFacingError(f"{entry.name} has no recorded training config: nothing says how it was trained.")
    if dataset is None:
        if entry.dataset_id or config.get("dataset"):
            raise UserFacingError(
                f"The dataset {entry.name} was trained on ({config.get('dataset') or 'unnamed'}) has been deleted: "
                "the same snapshot cannot be used again. Build a dataset and train a new model instead."
            )
        raise UserFacingError(f"{entry.name} has no recorded dataset, so it cannot be retrained on the same data.")
    if snapshot_hash(dataset) != dataset.content_hash:
        raise UserFacingError(
            f"Dataset {dataset.name!r} no longer matches its content hash ({dataset.content_hash[:12]}): its files "
            "changed after the snapshot was taken, so this would not be the same data. Build a new dataset instead."
        )
    return dataset, config


def new_name(entry: ModelEntry, base: str) -> str:
    """A free registry name for the retrained model: `<old>-on-<base>`, numbered if taken."""
    short = base.removeprefix("local/").rsplit("/", 1)[-1].lower()
    stem = re.sub(r"[^a-z0-9._-]+", "-", f"{entry.name.lower()}-on-{short}").strip("-.")[:56]
    with session_scope() as session:
        taken = set(session.exec(select(ModelEntry.name)).all())
    name, n = stem, 1
    while name in taken or storage.exists("models", name):
        n += 1
        name = f"{stem}-{n}"
    return name


def old_model_answers(entry: ModelEntry) -> tuple[bool, str]:
    """Whether the old model can still be a contestant, and if not why: past its provider's shutdown, its key
    unset, or (local) its files gone."""
    gone = providers.shut_down(entry.backend, entry.base_model, entry.reference)
    if gone:
        return False, gone
    missing = sorted(k for k in keys.needed("evaluation", {"model": entry.reference}) if not settings.get_secret(k))
    if missing:
        return False, f"its provider key ({', '.join(missing)}) is not set"
    if entry.reference.startswith("local/") and not embedded.model_path(entry.reference[6:]).exists():
        return False, f"its files are gone from {storage.where()}"
    return True, ""


def plan_retrain(entry_id: int | str, backend: str, base_model: str = "") -> RetrainPlan:
    """What a retrain will do: the snapshot (name and content hash), the copied config, the new base; refused in
    words when the snapshot is gone or changed, or the model has no recorded dataset."""
    from pipeline.training import service

    if backend not in BACKENDS:
        raise UserFacingError(f"Retrain on an open base: choose {' or '.join(BACKENDS)}, not {backend!r}.")
    entry = lifecycle.get(entry_id)
    dataset, old = _recorded(entry)
    base = base_model.strip() or DEFAULT_BASE[backend]
    values = {**old, "backend": backend, "base_model": base, "name": new_name(entry, base), "dataset": dataset.name}
    config = load(values)
    notes = []
    if old.get("hyperparameters_auto") and old.get("backend") == "openai":
        notes.append(f"OpenAI chose the epochs itself ('auto'); this run uses the {config.epochs} recorded.")
    answers, why = old_model_answers(entry)
    checked = service.plan(config)
    return RetrainPlan(entry, dataset.name, dataset.content_hash, old, config, checked, answers, why, notes)


def start_retrain(entry_id: int | str, backend: str, base_model: str = "", started_by: str = "") -> Job:
    """Queue the training: the same snapshot and config, on the new backend and base. When it registers the new
    model, the training job queues the evaluation of the two (after_training)."""
    from pipeline.training import service

    checked = plan_retrain(entry_id, backend, base_model)
    origin = {
        "model_id": checked.model.id,
        "model": checked.model.name,
        "dataset": checked.dataset,
        "dataset_hash": checked.dataset_hash,
        "evaluate": True,
    }
    name = f"Retrain {checked.model.name} → {checked.config.resolved_base()} ({backend})"
    return service.start(checked.config, started_by=started_by, name=name, extra={PARAM: origin})


def after_training(job_id: int, new: ModelEntry, log: Callable[[str], None]) -> Job | None:
    """Called by a training job once its model is registered: for a retrain, queue the evaluation of the new model
    against the old one (while it still answers; else against the new model's base). Never fails the training:
    a problem is logged and the evaluation is left to be started by hand."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        origin = (job.params.get(PARAM) if job else None) or {}
        started_by = job.started_by if job else ""
    if not origin.get("evaluate"):
        return None
    with session_scope() as session:  # a succeeded training run again (jobs resume) queues no second one
        for earlier in session.exec(select(Job).where(Job.kind == "evaluation")).all():
            if (earlier.params.get(PARAM) or {}).get("training_job") == job_id:
                log(f"the evaluation of this retrain is job {earlier.id} already")
                return None
    try:
        return _queue_evaluation(job_id, origin, new, started_by, log)
    except UserFacingError as exc:
        log(f"the evaluation of {new.name} against {origin.get('model')} was not started: {exc}")
        return None


def _queue_evaluation(job_id: int, origin: dict, new: ModelEntry, started_by: str, log: Callable[[str], None]) -> Job:
    from pipeline import jobs
    from pipeline.evaluation import service as evaluation

    with session_scope() as session:
        old = session.get(ModelEntry, origin["model_id"])
    if old is None:
        raise UserFacingError(f"the old model {origin['model']!r} is no longer in the registry")
    contestants, left_out = [new.reference], ""
    answers, why = old_model_answers(old)
    if answers:
        contestants.append(old.reference)
    else:
        left_out = f"{old.name} left out: {why}"
        log(f"{left_out}; {new.name} is compared with its base instead")
        base = new.base_model if new.backend == "local" else f"together_ai/{new.base_model}"
        contestants.insert(0, base)
    persona = old.persona_id or new.persona_id
    if persona is None:
        raise UserFacingError("neither model is tied to a persona")
    checked = evaluation.plan(persona=persona, contestants=contestants, dataset=origin["dataset"])
    name = f"Retrain check: {new.name} vs {old.name if answers else new.base_model}" + (
        f" ({left_out})" if left_out else ""
    )
    params = {**checked.params(), PARAM: {"training_job": job_id, "old_model": old.name, "left_out": left_out}}
    made = jobs.submit(evaluation.KIND, params, name=name, started_by=started_by)
    log(f"queued evaluation job {made.id}: {' vs '.join(contestants)}")
    return made
