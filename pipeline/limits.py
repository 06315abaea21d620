"""Limits on what people type and upload, each refused with a message that says what to change.

Text a person types (persona fields, review edits and notes, transcripts, evaluation prompts) may not
hold a NUL character: PostgreSQL cannot store one, and SQLite would keep a string other tools cut short,
so it is refused the same way on every database. Uploads are capped before they are read.
"""

from __future__ import annotations

from pipeline.errors import UserFacingError

# persona fields (characters)
PERSONA_NAME = 60
PERSONA_DESCRIPTION = 500
SYSTEM_PROMPT = 20_000
TRAITS = 12
TRAIT_NAME = 60
TRAIT_DESCRIPTION = 500
MARKER = 300
# review
RESPONSE = 100_000
NOTES = 5_000
# uploads (bytes); a dataset file's limit is pipeline.datasets.reader.MAX_BYTES
PERSONA_YAML_BYTES = 1_000_000
TRANSCRIPT_BYTES = 20_000_000
PROMPT_FILE_BYTES = 5_000_000
PROMPT = 20_000  # one evaluation prompt (characters)

NUL = "\x00"


def no_nul(text: str | None, what: str) -> str:
    """`text` unchanged, or a UserFacingError naming `what` and where the NUL is."""
    text = text or ""
    position = text.find(NUL)
    if position >= 0:
        line = text.count("\n", 0, position) + 1
        raise UserFacingError(
            f"{what} contains a NUL character (line {line}); it cannot be stored. Remove it and try again."
        )
    return text


def at_most(text: str | None, limit: int, what: str) -> str:
    text = text or ""
    if len(text) > limit:
        raise UserFacingError(f"{what} is {len(text):,} characters; the limit is {limit:,}. Shorten it.")
    return text


def typed(text: str | None, limit: int, what: str) -> str:
    """Text a person typed: no NUL, at most `limit` characters."""
    return at_most(no_nul(text, what), limit, what)


def upload(data: bytes, limit: int, name: str) -> bytes:
    """An uploaded file's bytes, refused before reading when over `limit`."""
    if len(data) > limit:
        raise UserFacingError(f"{name} is {_size(len(data))}; the limit is {_size(limit)}. Split or shorten it.")
    return data


def _size(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 1_000_000 else f"{count / 1e3:.0f} kB"
