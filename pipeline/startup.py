"""What the studio needs before it serves: a migrated store, the sample personas, the embedded model."""

from __future__ import annotations

from pipeline import personas
from pipeline.db import get_engine
from pipeline.llm import embedded
from pipeline.registry import lifecycle


def init(with_model: bool = True) -> dict:
    get_engine()  # creates the database and applies migrations
    added = personas.seed_samples()
    lifecycle.ensure_embedded_entry()  # the baseline every model is compared with is in the registry
    model_dir = embedded.ensure_embedded_model() if with_model else None
    return {"personas_added": added, "embedded_model": str(model_dir) if model_dir else None}
