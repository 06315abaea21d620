"""A filter over reviewed examples → a split, checked, immutable dataset snapshot on disk.

A snapshot is a folder `datasets/<name>/` of the artifact store (pipeline/storage.py: the data folder unless
STUDIO_STORAGE_URI names another) holding the train and validation files in every format, the preference pairs,
and a manifest; the files are made read-only and the database keeps their content hash, counts, file names and
the filter used (never where the store is). Saving never overwrites: a name is used once.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import select

from pipeline import access, storage
from pipeline.datasets import checks, formats, preferences, targets
from pipeline.datasets.targets import Target
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.models import Dataset, Example, Persona
from pipeline.review.filters import ExampleFilter
from pipeline.review.filters import examples as matching

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def datasets_dir() -> Path:
    """Where this machine reads snapshots: the store's folder, or its local cache of a remote store."""
    return storage.current().area_root("datasets")


def folder(name: str) -> Path:
    """A snapshot's folder on this machine (fetched first from a remote store); it may not exist."""
    return storage.local("datasets", check_name(name))


def check_name(name: str) -> str:
    name = (name or "").strip()
    if not NAME.match(name) or ".." in name:
        raise UserFacingError(
            f"{name!r} cannot be a dataset name: use letters, digits, '.', '_' or '-' (up to 64), starting with a "
            "letter or digit."
        )
    return name


def conversation(example: Example, system_prompt: str, include_system_prompt: bool) -> list[dict]:
    """The example as training messages: its current (possibly edited) response, the system prompt as asked."""
    turns = [m for m in example.messages if m.get("role") != "system"]
    if turns and turns[-1].get("role") == "assistant" and example.response:
        turns = turns[:-1] + [{"role": "assistant", "content": example.response}]
    head = [{"role": "system", "content": system_prompt}] if include_system_prompt and system_prompt else []
    return head + turns


def split(items: list[Example], validation_fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """Seeded and stratified by document type: each type gives its share of the validation set.

    Shares are rounded as a whole (largest remainder), so five types of four examples at 10% still
    give two validation examples, not zero.
    """
    groups: dict[str, list[Example]] = defaultdict(list)
    for example in sorted(items, key=lambda e: e.id):
        groups[example.document_type or "(none)"].append(example)
    quotas = {kind: len(members) * validation_fraction for kind, members in groups.items()}
    takes = {kind: int(q) for kind, q in quotas.items()}
    wanted = round(len(items) * validation_fraction)
    if validation_fraction > 0 and len(items) >= 2:
        wanted = max(wanted, 1)  # tiny sets still get one example to validate on
    for kind in sorted(quotas, key=lambda k: (takes[k] - quotas[k], k))[: max(0, wanted - sum(takes.values()))]:
        takes[kind] += 1
    train, validation = [], []
    for kind in sorted(groups):
        members = groups[kind][:]
        random.Random(f"{seed}:{kind}").shuffle(members)
        validation += members[: takes[kind]]
        train += members[takes[kind] :]
    return sorted(train, key=lambda e: e.id), sorted(validation, key=lambda e: e.id)


@dataclass
class Preview:
    flt: ExampleFilter
    train: list[Example]
    validation: list[Example]
    train_messages: list[list[dict]]
    validation_messages: list[list[dict]]
    report: checks.Report
    include_system_prompt: bool
    validation_fraction: float
    seed: int
    include_flagged: bool = False
    flagged_left_out: int = 0  # examples the quality gate flagged, left out (include_flagged puts them in)


def preview(
    flt: ExampleFilter,
    validation_fraction: float = 0.1,
    seed: int = 13,
    include_system_prompt: bool = False,
    target: Target = targets.DEFAULT,
    epochs: int | None = None,
    include_flagged: bool = False,
) -> Preview:
    """What a dataset from this filter would hold, and its check report; nothing is saved. Examples the
    quality gate flagged are left out unless `include_flagged`."""
    if flt.persona_id is None:
        raise UserFacingError("Pick the persona whose examples make the dataset.")
    if not 0 <= validation_fraction < 1:
        raise UserFacingError("The validation share must be at least 0 and below 1.")
    with session_scope() as session:
        persona = session.get(Persona, flt.persona_id)
    chosen = [e for e in matching(flt) if e.status != "failed"]
    flagged = 0 if include_flagged else sum(bool(e.quality_issues) for e in chosen)
    if not include_flagged:
        chosen = [e for e in chosen if not e.quality_issues]
    if not chosen:
        left_out = f"; {flagged} flagged by the quality gate are left out unless you include them" if flagged else ""
        raise UserFacingError(f"No examples match ({flt.describe()}){left_out}: nothing to build.")
    train, validation = split(chosen, validation_fraction, seed)
    as_messages = [conversation(e, persona.system_prompt, include_system_prompt) for e in train + validation]
    report = checks.check_conversations(as_messages, [e.id for e in train + validation], target, epochs)
    return Preview(
        flt,
        train,
        validation,
        as_messages[: len(train)],
        as_messages[len(train) :],
        report,
        include_system_prompt,
        validation_fraction,
        seed,
        include_flagged,
        flagged,
    )


def content_hash(train_messages: list[list[dict]], validation_messages: list[list[dict]]) -> str:
    payload = json.dumps([train_messages, validation_messages], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def save(name: str, plan: Preview, created_by: str = "") -> Dataset:
    """Write the snapshot's files and its row. Refuses a used name, identical content, or a failed check."""
    access.check("build_dataset")
    name = check_name(name)
    if not plan.report.ok:
        first = plan.report.errors[0] if plan.report.errors else None
        raise UserFacingError(
            f"The dataset has {len(plan.report.errors)} error(s); fix or filter them out first"
            + (f" ({first.where()}: {first.message})." if first else ".")
        )
    digest = content_hash(plan.train_messages, plan.validation_messages)
    with session_scope() as session:
        if session.exec(select(Dataset).where(Dataset.name == name)).first():
            raise UserFacingError(f"A dataset named {name!r} exists already; datasets never change: pick a new name.")
        twin = session.exec(select(Dataset).where(Dataset.content_hash == digest)).first()
        if twin:
            raise UserFacingError(f"Dataset {twin.name!r} holds exactly these examples already.")
    storage.check()
    if storage.exists("datasets", name):
        where = storage.describe("datasets", name)
        raise UserFacingError(f"The folder {where} exists already; move it away or pick another name.")
    # written whole in a folder of its own, then published at once (renamed in, or uploaded), read-only
    with storage.publishing("datasets", name, read_only=True, replace=False) as staging:
        files = _write_files(staging, plan)
        counts = {
            "train": len(plan.train),
            "validation": len(plan.validation),
            "preference_pairs": files.pop("_pairs"),
            "tokens": plan.report.token_stats.get("total", 0),
        }
        manifest = {
            "name": name,
            "content_hash": digest,
            "counts": counts,
            "filter": plan.flt.to_dict(),
            "split": {
                "validation_fraction": plan.validation_fraction,
                "seed": plan.seed,
                "stratified_by": "document_type",
            },
            "include_system_prompt": plan.include_system_prompt,
            "quality_gate": {"include_flagged": plan.include_flagged, "flagged_left_out": plan.flagged_left_out},
            "train_example_ids": [e.id for e in plan.train],
            "validation_example_ids": [e.id for e in plan.validation],
            "report": plan.report.to_dict(),
            "created_by": access.actor(created_by),
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    with session_scope() as session:
        dataset = Dataset(
            name=name,
            persona_id=plan.flt.persona_id,
            filter=plan.flt.to_dict(),
            split=manifest["split"],
            include_system_prompt=plan.include_system_prompt,
            files=files,
            counts=counts,
            content_hash=digest,
        )
        session.add(dataset)
        session.flush()
        session.refresh(dataset)
        return dataset


def _write_files(folder: Path, plan: Preview) -> dict:
    files: dict = {}
    strings = all(formats.single_turn(m) for m in plan.train_messages + plan.validation_messages)
    for fmt in formats.FORMATS:
        files[fmt] = {}
        for part, conversations in (("train", plan.train_messages), ("validation", plan.validation_messages)):
            filename = f"{part}.jsonl" if fmt == "openai" else f"{part}.{fmt}.jsonl"
            rows = (formats.to_row(c, fmt, strings=strings) for c in conversations)
            (folder / filename).write_text(formats.dumps_jsonl(rows), encoding="utf-8")
            files[fmt][part] = filename
    pairs = preferences.pairs_for([e.id for e in plan.train + plan.validation])
    (folder / "preferences.dpo.jsonl").write_text(formats.dumps_jsonl(pairs), encoding="utf-8")
    files["dpo"] = {"train": "preferences.dpo.jsonl"}
    files["_pairs"] = len(pairs)
    return files


def list_datasets(persona_id: int | None = None) -> list[Dataset]:
    with session_scope() as session:
        query = select(Dataset).order_by(Dataset.created_at.desc())
        if persona_id is not None:
            query = query.where(Dataset.persona_id == persona_id)
        return list(session.exec(query).all())


def get_dataset(name: str) -> Dataset:
    with session_scope() as session:
        dataset = session.exec(select(Dataset).where(Dataset.name == name)).first()
    if dataset is None:
        raise UserFacingError(f"No dataset named {name!r}.")
    return dataset


def file_path(dataset: Dataset, fmt: str, part: str = "train") -> Path:
    """A snapshot file's path; the name comes from the stored row, never from a request."""
    try:
        filename = dataset.files[fmt][part]
    except KeyError:
        raise UserFacingError(f"Dataset {dataset.name!r} has no {part} file in format {fmt!r}.") from None
    return folder(dataset.name) / Path(filename).name
