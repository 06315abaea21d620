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

from pipeline import access
from pipeline.datasets import checks, targets, tokens
from pipeline.datasets.targets import Target
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.generation import quality, validate
from pipeline.models import Example, Persona, example_row, messages_hash


@dataclass
class ImportResult:
    source: str
    added: int
    duplicates: int
    report: checks.Report
    flagged: int = 0  # added, but flagged by the quality gate
    gate_note: str = ""  # what the gate did not check, when the file was too large for every check

    def summary(self) -> str:
        parts = [f"{self.added} added", f"{self.duplicates} already there"]
        if self.flagged:
            parts.append(f"{self.flagged} of them flagged by the quality gate (left out of datasets by default)")
        if self.report.invalid:
            parts.append(f"{self.report.invalid} invalid line(s) skipped")
        return f"{self.source}: " + ", ".join(parts) + "." + (f" {self.gate_note}" if self.gate_note else "")


def label(filename: str) -> str:
    return PurePath(filename.replace("\\", "/")).name[:120] or "upload"


# the longest examples any backend trains on: the import's default limit
LONGEST = max(targets.TARGETS, key=lambda t: t.context_tokens)


def import_file(
    data: bytes, filename: str, persona_id: int, fmt: str | None = None, target: Target | None = None
) -> ImportResult:
    """`target`'s context (by default the longest any backend trains on) is the most an imported row may hold:
    longer rows are listed by line and left out."""
    access.check("import_examples")
    source = label(filename)
    target = target or LONGEST
    with session_scope() as session:
        persona = session.get(Persona, persona_id)
        if persona is None:
            raise UserFacingError("Pick a persona to import the examples into.")
    checked = checks.check_file(data, source, None, fmt)
    conversations, lines, counts = _within_context(checked, target)
    rows, duplicates = [], 0
    with session_scope() as session:
        known = set(session.exec(select(Example.content_hash).where(Example.persona_id == persona_id)))
        for messages, line, token_count in zip(conversations, lines, counts, strict=True):
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
        flagged, note = gate(rows, persona.name, persona.traits)
        # Core inserts in chunks: building 25,000 SQLModel objects costs pydantic ~40 s, these ~2 s
        for start in range(0, len(rows), 2000):
            session.execute(insert(Example), rows[start : start + 2000])
    checked.report.problems.sort(key=lambda p: (p.line is None, p.line or 0))  # in file order
    return ImportResult(source, len(rows), duplicates, checked.report, flagged, note)


def gate(rows: list[dict], persona_name: str, traits: list[dict]) -> tuple[int, str]:
    """The quality gate over rows about to be inserted (their quality_issues set in place): every check up to
    the embedding limit, the text checks alone above it. (How many were flagged, what was not checked.)"""
    if not rows:
        return 0, ""
    t = quality.thresholds()
    with_meaning = len(rows) <= t.import_embedding_limit
    checker = quality.Gate(persona_name, traits if with_meaning else None, t)
    found = checker.check([(r["document"], r["response"]) for r in rows], with_meaning)
    for row, issues in zip(rows, found, strict=True):
        row["quality_issues"] = issues
    note = (
        ""
        if with_meaning
        else f"The relevance and persona checks were skipped: {len(rows):,} rows is over the "
        f"{t.import_embedding_limit:,} the import checks by meaning (STUDIO_QUALITY_IMPORT_EMBEDDING_LIMIT)."
    )
    return sum(bool(i) for i in found), note


def _within_context(checked: checks.Checked, target: Target) -> tuple[list[list[dict]], list[int], list[int]]:
    """The conversations (system messages dropped, as they are stored) that fit `target`'s context, their lines
    and cl100k token counts; each one that does not is an error on its line. Characters are measured first,
    so a huge line is never tokenized."""
    report = checked.report
    candidates, lines = [], []
    for conversation, line in zip(checked.conversations, checked.origins, strict=True):
        conversation = [m for m in conversation if m["role"] != "system"]
        problem = checks.cannot_fit(conversation, target)
        if problem is None:
            candidates.append(conversation)
            lines.append(line)
        else:
            problem.line = line
            report.problems.append(problem)
    stored = tokens.count_cl100k(candidates)
    counts = stored if target.tokenizer == "cl100k" else tokens.count(candidates, target)
    kept = [i for i, count in enumerate(counts) if checks.over_context(count, target) is None]
    for i in sorted(set(range(len(counts))) - set(kept)):
        problem = checks.over_context(counts[i], target)
        problem.line = lines[i]
        report.problems.append(problem)
    report.invalid += len(checked.conversations) - len(kept)
    report.valid = len(kept)
    return [candidates[i] for i in kept], [lines[i] for i in kept], [stored[i] for i in kept]


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
