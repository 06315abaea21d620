"""Which model a persona runs on: deploy, roll back, archive, each recorded with who, when and why.

One deployed model per persona. Deploying makes the previous one a candidate again; rolling back
deploys the model that was deployed before the current one. Every action is a DeploymentEvent
with the model's config at the time, so the history reads on its own. Two people deploying at once:
each action runs in one transaction, the last write wins, and both are in the history.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from pipeline import access, limits, settings
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.models import DeploymentEvent, Job, ModelEntry, Persona, utcnow

STATUSES = ("candidate", "deployed", "archived")


def _embedded_entry() -> ModelEntry | None:
    with session_scope() as session:
        return session.exec(select(ModelEntry).where(ModelEntry.reference == settings.EMBEDDED_MODEL)).first()


def ensure_embedded_entry() -> ModelEntry:
    """The embedded base model is in the registry from the start: it is the baseline of everything."""
    entry = _embedded_entry()
    if entry is not None:
        return entry
    name = settings.EMBEDDED_MODEL.removeprefix("local/")
    try:
        with session_scope() as session:
            session.add(ModelEntry(name=name, reference=settings.EMBEDDED_MODEL, base_model=name, backend="embedded"))
    except IntegrityError:
        pass  # another process or thread added it at the same moment: theirs is as good
    return _embedded_entry()


def list_models(persona_id: int | None = None, include_archived: bool = True) -> list[ModelEntry]:
    ensure_embedded_entry()
    with session_scope() as session:
        query = select(ModelEntry).order_by(ModelEntry.id)
        rows = session.exec(query).all()
    shown = [
        row
        for row in rows
        if (include_archived or row.status != "archived")
        and (persona_id is None or row.persona_id in (None, persona_id))
    ]
    return sorted(shown, key=lambda row: (row.backend != "embedded", row.id))  # the baseline first


def get(name_or_id: str | int) -> ModelEntry:
    ensure_embedded_entry()
    with session_scope() as session:
        if isinstance(name_or_id, int) or str(name_or_id).isdigit():
            entry = session.get(ModelEntry, int(name_or_id))
        else:
            entry = session.exec(
                select(ModelEntry).where((ModelEntry.name == name_or_id) | (ModelEntry.reference == name_or_id))
            ).first()
    if entry is None:
        raise UserFacingError(f"There is no model {name_or_id!r} in the registry.")
    return entry


def _persona(session, persona_id: int | None, entry: ModelEntry) -> Persona:
    persona_id = persona_id or entry.persona_id
    persona = session.get(Persona, persona_id) if persona_id else None
    if persona is None:
        raise UserFacingError(f"Say which persona {entry.name!r} should serve: it was not trained for one.")
    return persona


def _check_deployable(session, entry: ModelEntry) -> None:
    if entry.status == "archived":
        raise UserFacingError(f"{entry.name!r} is archived; restore it as a candidate before deploying it.")
    job = session.get(Job, entry.job_id) if entry.job_id else None
    if job is not None and job.status != "succeeded":
        raise UserFacingError(f"{entry.name!r} came from job {job.id}, which {job.status}: it cannot be deployed.")


def deployed(persona_id: int) -> ModelEntry | None:
    """The persona's active model: the latest deploy or rollback event whose model is still deployed."""
    with session_scope() as session:
        events = session.exec(
            select(DeploymentEvent)
            .where(DeploymentEvent.persona_id == persona_id, DeploymentEvent.action.in_(("deploy", "rollback")))
            .order_by(DeploymentEvent.id.desc())
        ).all()
        for event in events:
            entry = session.get(ModelEntry, event.model_id)
            if entry is not None and entry.status == "deployed":
                return entry
    return None


def _record(session, entry: ModelEntry, persona_id: int | None, action: str, actor: str, notes: str) -> None:
    notes = limits.typed(notes, limits.NOTES, "The note")  # raised inside the transaction: nothing changes
    session.add(
        DeploymentEvent(
            model_id=entry.id,
            persona_id=persona_id,
            action=action,
            actor=access.actor(actor),  # the logged-in user, when there is a login
            notes=notes or "",
            config={"reference": entry.reference, "base_model": entry.base_model, "backend": entry.backend}
            | ({"training": entry.config} if entry.config else {}),
        )
    )


def _switch(session, entry: ModelEntry, persona: Persona, action: str, actor: str, notes: str) -> ModelEntry:
    for other in session.exec(
        select(ModelEntry).where(ModelEntry.status == "deployed", ModelEntry.id != entry.id)
    ).all():
        if deployed_for(session, other.id) == persona.id:
            other.status = "candidate"
            session.add(other)
    entry.status = "deployed"
    session.add(entry)
    _record(session, entry, persona.id, action, actor, notes)
    session.flush()
    session.refresh(entry)
    return entry


def deployed_for(session, model_id: int) -> int | None:
    """The persona a model was last deployed for."""
    event = session.exec(
        select(DeploymentEvent)
        .where(DeploymentEvent.model_id == model_id, DeploymentEvent.action.in_(("deploy", "rollback")))
        .order_by(DeploymentEvent.id.desc())
    ).first()
    return event.persona_id if event else None


def _lock(session, persona_id: int | None) -> None:
    """Serialise deployments per persona: write first, so a second deploy waits and then sees this one.

    (A transaction that reads first would keep its old snapshot on SQLite, and both would win.)
    """
    if persona_id:
        session.execute(update(Persona).where(Persona.id == persona_id).values(updated_at=utcnow()))


def deploy(model: str | int, persona_id: int | None = None, actor: str = "", notes: str = "") -> ModelEntry:
    """Make `model` the persona's active model; the one before becomes a candidate again."""
    access.check("deploy")
    entry = get(model)
    with session_scope() as session:
        _lock(session, persona_id or entry.persona_id)
        entry = session.get(ModelEntry, entry.id)
        _check_deployable(session, entry)
        persona = _persona(session, persona_id, entry)
        return _switch(session, entry, persona, "deploy", actor, notes)


def rollback(persona_id: int, actor: str = "", notes: str = "") -> ModelEntry:
    """Deploy again the model that was deployed before the current one."""
    access.check("deploy")
    with session_scope() as session:
        _lock(session, persona_id)
        persona = session.get(Persona, persona_id)
        if persona is None:
            raise UserFacingError("That persona no longer exists.")
        events = session.exec(
            select(DeploymentEvent)
            .where(DeploymentEvent.persona_id == persona_id, DeploymentEvent.action.in_(("deploy", "rollback")))
            .order_by(DeploymentEvent.id.desc())
        ).all()
        current = events[0].model_id if events else None
        for event in events[1:]:
            if event.model_id == current:
                continue
            previous = session.get(ModelEntry, event.model_id)
            if previous is None or previous.status == "archived":
                continue
            return _switch(session, previous, persona, "rollback", actor, notes)
    raise UserFacingError(f"{persona.name!r} has no earlier deployment to roll back to.")


def archive(model: str | int, actor: str = "", notes: str = "") -> ModelEntry:
    """Take a model out of use (kept, with its history); a deployed model must be replaced first."""
    access.check("deploy")
    entry = get(model)
    with session_scope() as session:
        entry = session.get(ModelEntry, entry.id)
        if entry.status == "deployed":
            raise UserFacingError(
                f"{entry.name!r} is deployed: deploy another model or roll back first, then archive it."
            )
        if entry.backend == "embedded":
            raise UserFacingError("The embedded base model is the baseline of every comparison: it stays.")
        entry.status = "archived"
        session.add(entry)
        _record(session, entry, entry.persona_id, "archive", actor, notes)
        session.flush()
        session.refresh(entry)
        return entry


def restore(model: str | int, actor: str = "", notes: str = "") -> ModelEntry:
    access.check("deploy")
    entry = get(model)
    with session_scope() as session:
        entry = session.get(ModelEntry, entry.id)
        if entry.status != "archived":
            raise UserFacingError(f"{entry.name!r} is not archived.")
        entry.status = "candidate"
        session.add(entry)
        _record(session, entry, entry.persona_id, "restore", actor, notes)
        session.flush()
        session.refresh(entry)
        return entry


def history(persona_id: int | None = None, model_id: int | None = None) -> list[dict]:
    """Every action, newest first, as rows a table can show."""
    with session_scope() as session:
        query = select(DeploymentEvent).order_by(DeploymentEvent.id.desc())
        if persona_id is not None:
            query = query.where(DeploymentEvent.persona_id == persona_id)
        if model_id is not None:
            query = query.where(DeploymentEvent.model_id == model_id)
        events = session.exec(query).all()
        names = {e.id: e.name for e in session.exec(select(ModelEntry)).all()}
        personas = {p.id: p.name for p in session.exec(select(Persona)).all()}
    return [
        {
            "when": event.at,
            "action": event.action,
            "model": names.get(event.model_id, f"#{event.model_id}"),
            "persona": personas.get(event.persona_id, ""),
            "who": event.actor,
            "notes": event.notes,
            "config": event.config,
        }
        for event in events
    ]
