"""Putting a trained model into the registry (the models table), so the gateway and pages know it."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import select

from pipeline.db import session_scope
from pipeline.models import Dataset, ModelEntry
from pipeline.training.config import TrainingConfig


def register(
    *, name: str, reference: str, backend: str, config: TrainingConfig, dataset: Dataset, job_id: int, metrics: dict
) -> ModelEntry:
    """Add (or, for a rerun of the same name, refresh) a candidate model."""
    with session_scope() as session:
        entry = session.exec(select(ModelEntry).where(ModelEntry.name == name)).first() or ModelEntry(
            name=name, reference=reference
        )
        entry.reference = reference
        entry.backend = backend
        entry.base_model = config.resolved_base()
        entry.persona_id = dataset.persona_id
        entry.job_id = job_id
        entry.dataset_id = dataset.id
        entry.config = config.model_dump(mode="json")
        entry.metrics = {k: v for k, v in metrics.items() if v is not None}
        session.add(entry)
        session.flush()
        session.refresh(entry)
        return entry


def register_local(*, name: str, folder: Path, **values) -> ModelEntry:
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    values["metrics"] = {**values["metrics"], "size_bytes": size}
    return register(name=name, reference=f"local/{name}", backend="local", **values)
