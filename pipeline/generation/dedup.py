"""Near-duplicate documents and responses, flagged for the reviewer.

Embedding similarity with the packaged MiniLM model rather than MinHash: generated text repeats
ideas in new words far more often than it repeats words, and MinHash only sees the words. MiniLM
reads the first 256 tokens of each text, enough to catch a recycled opening or a templated reply.
"""

from __future__ import annotations

from sqlmodel import select

from pipeline import embeddings
from pipeline.db import session_scope
from pipeline.models import Example

THRESHOLD = 0.95


def flag_near_duplicates(job_id: int, threshold: float = THRESHOLD) -> int:
    """Flag this run's examples that nearly repeat another example of the same persona. Returns how many."""
    with session_scope() as session:
        mine = list(session.exec(select(Example).where(Example.job_id == job_id, Example.response != "")))
        if not mine:
            return 0
        others = list(
            session.exec(
                select(Example).where(
                    Example.persona_id == mine[0].persona_id, Example.job_id != job_id, Example.response != ""
                )
            )
        )
    pool = mine + others
    flags: dict[int, list[str]] = {e.id: [f for f in e.flags if not f.startswith("near-duplicate")] for e in mine}
    for field in ("document", "response"):
        vectors = embeddings.embed([getattr(e, field) for e in pool])
        for i, j, similarity in embeddings.near_duplicates(vectors, threshold):
            a, b = pool[i], pool[j]
            for this, other in ((a, b), (b, a)):
                if this.id in flags:
                    flags[this.id].append(f"near-duplicate {field} of example {other.id} ({similarity:.2f})")
    flagged = 0
    with session_scope() as session:
        for example_id, found in flags.items():
            example = session.get(Example, example_id)
            example.flags = found
            flagged += any(f.startswith("near-duplicate") for f in found)
            session.add(example)
    return flagged
