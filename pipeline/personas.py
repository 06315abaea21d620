"""Personas: a name, a system prompt, and named traits with behavioural markers.

Stored in the database; exported to and imported from YAML files under data/personas/.
Every write validates the whole persona first, so nothing is saved half-way.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError, field_validator, model_validator
from sqlalchemy import func, or_
from sqlmodel import select

from pipeline import access, limits, settings
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.models import Dataset, Persona, utcnow

SAMPLES_DIR = settings.PROJECT_ROOT / "data" / "personas"
MAX_MARKERS = 3  # "two or three behavioural markers each"
NAME_CHARACTERS = "letters, digits, spaces and - _ ."


def _text(value: str | None, limit: int, required: bool = False) -> str:
    """A typed field, stripped: no NUL character, at most `limit` characters (ValueError says which)."""
    value = (value or "").strip()
    if required and not value:
        raise ValueError("is required")
    if "\x00" in value:
        raise ValueError("contains a NUL character; remove it")
    if len(value) > limit:
        raise ValueError(f"is {len(value):,} characters; the limit is {limit:,}")
    return value


def _safe_name(value: str) -> str:
    """Names are letters (accented too), digits, spaces and - _ . only, never starting with a dot: a name is
    shown everywhere and becomes file names, so it can hold no path separator or control character."""
    bad = sorted({c for c in value if not (c.isalnum() or c in " -_.")})
    if bad:
        shown = ", ".join("a tab or line break" if c.isspace() or not c.isprintable() else f"“{c}”" for c in bad)
        raise ValueError(f"may hold only {NAME_CHARACTERS}, not {shown}")
    if value.startswith("."):
        raise ValueError("cannot start with a dot")
    return value


class TraitSpec(BaseModel):
    name: str
    description: str
    markers: list[str] = []

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _text(value, limits.TRAIT_NAME, required=True)

    @field_validator("description")
    @classmethod
    def _description(cls, value: str) -> str:
        return _text(value, limits.TRAIT_DESCRIPTION, required=True)

    @field_validator("markers")
    @classmethod
    def _markers(cls, value: list[str]) -> list[str]:
        cleaned = [m.strip() for m in value if m and m.strip()]
        if len(cleaned) > MAX_MARKERS:
            raise ValueError(f"has {len(cleaned)} markers; keep it to {MAX_MARKERS} or fewer")
        for i, marker in enumerate(cleaned, 1):
            try:
                _text(marker, limits.MARKER)
            except ValueError as exc:
                raise ValueError(f"marker {i} {exc}") from None
        return cleaned


class PersonaSpec(BaseModel):
    name: str
    system_prompt: str
    description: str = ""
    traits: list[TraitSpec] = []

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _safe_name(_text(value, limits.PERSONA_NAME, required=True))

    @field_validator("system_prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        return _text(value, limits.SYSTEM_PROMPT, required=True)

    @field_validator("description")
    @classmethod
    def _description(cls, value: str) -> str:
        return _text(value, limits.PERSONA_DESCRIPTION)

    @field_validator("traits")
    @classmethod
    def _traits(cls, value: list[TraitSpec]) -> list[TraitSpec]:
        if len(value) > limits.TRAITS:
            raise ValueError(f"{len(value)} traits; keep it to {limits.TRAITS} or fewer")
        return value

    @model_validator(mode="after")
    def _unique_traits(self) -> PersonaSpec:
        seen: set[str] = set()
        for trait in self.traits:
            key = trait.name.lower()
            if key in seen:
                raise ValueError(f"trait {trait.name!r} appears twice")
            seen.add(key)
        return self


def _friendly(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        loc = item["loc"]
        message = item["msg"].removeprefix("Value error, ")
        if loc[:1] == ("traits",) and len(loc) >= 2:
            where = f"Trait {loc[1] + 1}" + (f" {loc[2]}" if len(loc) > 2 else "")
        elif loc:
            where = str(loc[0]).replace("_", " ").capitalize()
        else:
            where = "Persona"
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def validate(data: dict | PersonaSpec) -> PersonaSpec:
    if isinstance(data, PersonaSpec):
        return data
    if not isinstance(data, dict):
        raise UserFacingError("A persona must be a mapping with name, system_prompt and traits.")
    try:
        return PersonaSpec.model_validate(data)
    except ValidationError as exc:
        raise UserFacingError(_friendly(exc)) from None


def to_spec(persona: Persona) -> PersonaSpec:
    return PersonaSpec(
        name=persona.name,
        system_prompt=persona.system_prompt,
        description=persona.description,
        traits=[TraitSpec(**t) for t in persona.traits],
    )


def list_personas() -> list[Persona]:
    with session_scope() as session:
        return list(session.exec(select(Persona).order_by(Persona.name)))


def get_persona(name_or_id: str | int) -> Persona:
    with session_scope() as session:
        if isinstance(name_or_id, int):
            persona = session.get(Persona, name_or_id)
        else:
            persona = session.exec(
                select(Persona).where(_named(name_or_id)).order_by(Persona.name != name_or_id)
            ).first()
    if persona is None:
        raise UserFacingError(f"No persona named {name_or_id!r}.")
    return persona


def _named(name: str):
    """Persona.name is `name` in any case. lower() in SQL folds only A-Z on SQLite (and on PostgreSQL in
    the C locale), so the exact name is matched as well: "Émile" finds Émile on every backend."""
    return or_(Persona.name == name, func.lower(Persona.name) == name.lower())


def _name_taken(session, name: str, except_id: int | None = None) -> bool:
    query = select(Persona.id).where(_named(name))
    if except_id is not None:
        query = query.where(Persona.id != except_id)
    return session.exec(query).first() is not None


def create_persona(data: dict | PersonaSpec) -> Persona:
    access.check("edit_persona")
    return _create(data)


def _create(data: dict | PersonaSpec) -> Persona:
    spec = validate(data)
    with session_scope() as session:
        if _name_taken(session, spec.name):
            raise UserFacingError(f"A persona named {spec.name!r} already exists; pick another name.")
        persona = Persona(
            name=spec.name,
            description=spec.description,
            system_prompt=spec.system_prompt,
            traits=[t.model_dump() for t in spec.traits],
        )
        session.add(persona)
        session.flush()
        session.refresh(persona)
    return persona


def update_persona(persona_id: int, data: dict | PersonaSpec) -> Persona:
    access.check("edit_persona")
    spec = validate(data)
    with session_scope() as session:
        persona = session.get(Persona, persona_id)
        if persona is None:
            raise UserFacingError("That persona no longer exists.")
        if _name_taken(session, spec.name, except_id=persona_id):
            raise UserFacingError(f"A persona named {spec.name!r} already exists; pick another name.")
        persona.name = spec.name
        persona.description = spec.description
        persona.system_prompt = spec.system_prompt
        persona.traits = [t.model_dump() for t in spec.traits]
        persona.updated_at = utcnow()
        session.add(persona)
        session.flush()
        session.refresh(persona)
    return persona


def duplicate_persona(persona_id: int, new_name: str | None = None) -> Persona:
    spec = to_spec(get_persona(persona_id))
    names = {p.name.lower() for p in list_personas()}
    if not new_name:
        stem = spec.name[: limits.PERSONA_NAME - len(" copy 999")]
        new_name, n = f"{stem} copy", 2
        while new_name.lower() in names:
            new_name, n = f"{stem} copy {n}", n + 1
    return create_persona(spec.model_copy(update={"name": new_name}))


def delete_persona(persona_id: int) -> None:
    access.check("edit_persona")
    with session_scope() as session:
        persona = session.get(Persona, persona_id)
        if persona is None:
            raise UserFacingError("That persona no longer exists.")
        datasets = list(session.exec(select(Dataset.name).where(Dataset.persona_id == persona_id)).all())
        session.delete(persona)  # its examples, edits and datasets go with it (foreign keys cascade)
    from pipeline.datasets import purge

    for name in datasets:  # and the datasets' files, as the confirm step says
        purge.remove_folder(name)


# --- YAML ------------------------------------------------------------------------------


def slug(name: str) -> str:
    """A safe file stem from a persona name: never a path of the user's choosing. Accents are dropped
    (Émile → emile); two names can give the same stem, which export_yaml tells apart."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    stem = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    return stem[:60] or "persona"


def export_name(name: str, folder: Path) -> str:
    """The file name `name` exports to in `folder`: its slug, unless that file holds another persona (two names
    with the same slug, e.g. "Émile" and "emile"): then the slug with -2, -3, ... A persona's own earlier export
    is replaced."""
    stem, n = slug(name), 1
    while True:
        candidate = f"{stem}.yaml" if n == 1 else f"{stem}-{n}.yaml"
        path = folder / candidate
        if not path.exists() or (_exported_name(path) or "").lower() == name.lower():
            return candidate
        n += 1


def _exported_name(path: Path) -> str | None:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None


def to_yaml(persona: Persona) -> str:
    return yaml.safe_dump(to_spec(persona).model_dump(), sort_keys=False, allow_unicode=True, width=100)


def export_yaml(persona_id: int, folder: Path | None = None) -> Path:
    persona = get_persona(persona_id)
    folder = folder or settings.personas_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / export_name(persona.name, folder)
    path.write_text(to_yaml(persona), encoding="utf-8")
    return path


def parse_yaml(text: str | bytes, source: str = "the file") -> PersonaSpec:
    limits.upload(text.encode() if isinstance(text, str) else text, limits.PERSONA_YAML_BYTES, source)
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise UserFacingError(f"{source} is not a UTF-8 text file.") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise UserFacingError(f"{source} is not valid YAML{where}.") from None
    if not isinstance(data, dict):
        raise UserFacingError(f"{source} does not describe a persona (expected name, system_prompt, traits).")
    try:
        return validate(data)
    except UserFacingError as exc:
        raise UserFacingError(f"{source}: {exc}") from None


def import_yaml(text: str | bytes, source: str = "the file", overwrite: bool = False) -> Persona:
    spec = parse_yaml(text, source)
    try:
        existing = get_persona(spec.name)
    except UserFacingError:
        return create_persona(spec)
    if not overwrite:
        raise UserFacingError(
            f"A persona named {spec.name!r} already exists. Choose 'replace existing' or rename it in {source}."
        )
    return update_persona(existing.id, spec)


def seed_samples() -> int:
    """Load the personas shipped with the app into an empty studio. Returns how many were added."""
    with session_scope() as session:
        if session.exec(select(func.count()).select_from(Persona)).one():
            return 0
    added = 0
    for path in sorted(SAMPLES_DIR.glob("*.yaml")):
        _create(parse_yaml(path.read_text(encoding="utf-8"), path.name))  # the studio's own start-up
        added += 1
    return added


def save(persona_id: int | None, data: dict | PersonaSpec) -> Persona:
    """Create when `persona_id` is None, else update: what the editor's Save button does."""
    return create_persona(data) if persona_id is None else update_persona(persona_id, data)


def traits_from_entries(entries: list[dict]) -> list[dict]:
    """The editor's trait boxes (name, description, markers typed one per line) → trait dicts.

    Blank lines and surrounding spaces are dropped, and so is a box left entirely empty.
    """
    traits = []
    for entry in entries:
        name = (entry.get("name") or "").strip()
        description = (entry.get("description") or "").strip()
        markers = [line.strip() for line in (entry.get("markers") or "").splitlines() if line.strip()]
        if name or description or markers:
            traits.append({"name": name, "description": description, "markers": markers})
    return traits


def entries_from_traits(traits: list[dict]) -> list[dict]:
    """Trait dicts → the editor's boxes: the markers as text, one per line."""
    return [
        {"name": t["name"], "description": t["description"], "markers": "\n".join(t.get("markers", []))} for t in traits
    ]
