"""Reviewed examples made directly in the store, for tests and benchmarks that need many of them."""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import insert

from pipeline.db import session_scope
from pipeline.generation.config import DOCUMENT_TYPES
from pipeline.models import Example, Persona, example_row

SENTENCE = "the team needs a clear plan for the quarter and a candid view of the risks we carry"
WORDS = SENTENCE.split()


def text(n_words: int, salt: int) -> str:
    return " ".join(WORDS[(salt + i) % len(WORDS)] for i in range(n_words)) + f" ({salt})."


def add_examples(persona_id: int, count: int, status: str = "pending", start: int = 0, **values) -> list[int]:
    """`count` generated-looking examples, document types and traits in rotation; returns their ids."""
    with session_scope() as session:
        traits = [t["name"] for t in session.get(Persona, persona_id).traits] or ["warm"]
        rows = []
        for i in range(start, start + count):
            title, document, response = f"Memo {i}", text(120, i), text(60, i + 7)
            messages = [
                {"role": "user", "content": f"{title}\n\n{document}"},
                {"role": "assistant", "content": response},
            ]
            made = {
                "persona_id": persona_id,
                "scenario": {"domain": "operations"},
                "document_type": DOCUMENT_TYPES[i % len(DOCUMENT_TYPES)],
                "document_title": title,
                "document": document,
                "response": response,
                "messages": messages,
                "traits_stressed": [traits[i % len(traits)]],
                "document_words": 121 + i % 40,
                "response_words": 61 + i % 20,
                "token_count": 250 + i % 50,
                "status": status,
                "content_hash": hashlib.sha256(json.dumps(messages).encode()).hexdigest(),
            }
            rows.append(example_row(**(made | values)))
        result = session.execute(insert(Example).returning(Example.id), rows)
        return sorted(r[0] for r in result)
