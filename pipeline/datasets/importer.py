"""A dataset file → imported examples for a persona. Valid rows are added; every bad line is reported.

Only inserts happen, in one transaction: nothing already stored is touched, and a row identical to
one the persona already has is skipped. The uploaded file's name is only a label and an extension
hint: it never becomes a path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

from sqlalchemy import insert
from sqlmodel import select

from pipeline.datasets import checks, tokens
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.generation import validate
from pipeline.models import Example, Persona, example_row, messages_hash


@dataclass
class ImportResult:
    source: str
    added: int
    duplicates: int
    report: checks.Report

    def summary(self) -> str:
        parts = [f"{self.added} added", f"{self.duplicates} already there"]
        if self.report.invalid:
            parts.append(f"{self.report.invalid} invalid line(s) skipped")
        return f"{self.source}: " + ", ".join(parts) + "."


def label(filename: str) -> str:
    return PurePath(filename.replace("\\", "/")).name[:120] or "upload"


def import_file(data: bytes, filename: str, persona_id: int, fmt: str | None = None) -> ImportResult:
    source = label(filename)
    with session_scope() as session:
        if session.get(Persona, persona_id) is None:
            raise UserFacingError("Pick a persona to import the examples into.")
    checked = checks.check_file(data, source, None, fmt)
    conversations = [[m for m in c if m["role"] != "system"] for c in checked.conversations]
    counts = tokens.count_cl100k(conversations)
    rows, duplicates = [], 0
    with session_scope() as session:
        known = set(session.exec(select(Example.content_hash).where(Example.persona_id == persona_id)))
        for messages, line, token_count in zip(conversations, checked.origins, counts, strict=True):
            if not messages or messages[-1]["role"] != "assistant":
                checked.report.problems.append(
                    checks.Problem(
                        line,
                        "messages",
                        "ends_without_reply",
                        "the last message is not the assistant's; nothing to learn from it, skipped",
                        "warning",
                    )
                )
                continue
            digest = messages_hash(messages)
            if digest in known:
                duplicates += 1
                continue
            known.add(digest)
            rows.append(_row(persona_id, messages, token_count, source, line, digest))
        # Core inserts in chunks: building 25,000 SQLModel objects costs pydantic ~40 s, these ~2 s
        for start in range(0, len(rows), 2000):
            session.execute(insert(Example), rows[start : start + 2000])
    return ImportResult(source, len(rows), duplicates, checked.report)


def _row(persona_id: int, messages: list[dict], token_count: int, source: str, line: int, digest: str) -> dict:
    user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    reply = messages[-1]["content"]
    return example_row(
        persona_id=persona_id,
        source="imported",
        scenario={"source_file": source, "line": line},
        document=user,
        response=reply,
        messages=messages,
        document_words=validate.words(user),
        response_words=validate.words(reply),
        token_count=token_count,
        content_hash=digest,
    )
