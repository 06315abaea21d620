"""Deleting for good: a persona's examples and datasets (rows and files), or one dataset.

Both need the name typed back as confirmation; the persona itself stays.
"""

from __future__ import annotations

from sqlalchemy import delete
from sqlmodel import select

from pipeline import access, storage
from pipeline.datasets.build import check_name
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.models import Dataset, Example, ExampleEdit, Persona


def remove_folder(name: str) -> None:
    """The snapshot's files, from the store (read-only by design: made writable first) and any local copy."""
    storage.remove("datasets", check_name(name))


def delete_dataset(name: str, confirm: str) -> None:
    access.check("delete_dataset")
    if confirm != name:
        raise UserFacingError(f"Type the dataset's name, {name!r}, to confirm.")
    with session_scope() as session:
        dataset = session.exec(select(Dataset).where(Dataset.name == name)).first()
        if dataset is None:
            raise UserFacingError(f"No dataset named {name!r}.")
        session.delete(dataset)
    remove_folder(name)


def delete_persona_data(persona_id: int, confirm: str) -> dict[str, int]:
    """Every example (with its edits) and dataset of the persona: {"examples", "datasets"} removed."""
    access.check("delete_dataset")
    with session_scope() as session:
        persona = session.get(Persona, persona_id)
        if persona is None:
            raise UserFacingError("That persona no longer exists.")
        if confirm != persona.name:
            raise UserFacingError(f"Type the persona's name, {persona.name!r}, to confirm.")
        names = list(session.exec(select(Dataset.name).where(Dataset.persona_id == persona_id)).all())
        example_ids = select(Example.id).where(Example.persona_id == persona_id)
        session.exec(delete(ExampleEdit).where(ExampleEdit.example_id.in_(example_ids)))
        removed = session.exec(delete(Example).where(Example.persona_id == persona_id)).rowcount
        session.exec(delete(Dataset).where(Dataset.persona_id == persona_id))
    for name in names:
        remove_folder(name)
    return {"examples": removed, "datasets": len(names)}
