"""What a reviewer does to examples: star, rate, accept or reject, edit the response, add notes.

An edit keeps the original (the first version is never lost) and records who changed what, when;
those edits become preference pairs. A star, rating, accept or reject records who did it last, and when
(for the lineage views). A failed example (generation gave up on it) cannot be
accepted or starred: it has nothing worth training on until it is regenerated. An example a run is
still making ("generating") or left unfinished when it stopped ("cancelled") takes no review action at
all, so a reviewer's decision is never overwritten by generation.
"""

from __future__ import annotations

from sqlmodel import select

from pipeline import access, limits
from pipeline.datasets import tokens
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.generation import validate
from pipeline.models import UNFINISHED, Example, ExampleEdit, utcnow

STATUSES = ("pending", "accepted", "rejected")


def get(example_id: int) -> Example:
    with session_scope() as session:
        example = session.get(Example, example_id)
    if example is None:
        raise UserFacingError(f"Example {example_id} does not exist (deleted?).")
    return example


def edits(example_id: int) -> list[ExampleEdit]:
    with session_scope() as session:
        query = select(ExampleEdit).where(ExampleEdit.example_id == example_id).order_by(ExampleEdit.at)
        return list(session.exec(query).all())


def _not_in_the_making(example: Example) -> None:
    if example.status == "generating":
        raise UserFacingError(f"Example {example.id} is still being generated; review it once its run has finished it.")
    if example.status == "cancelled":
        raise UserFacingError(
            f"Example {example.id} was left unfinished when its run stopped; resume the run to finish it, "
            "or delete the run's cancelled examples."
        )


def _usable(example: Example, what: str) -> None:
    if example.status == "failed":
        raise UserFacingError(
            f"Example {example.id} failed during generation ({example.failure}); it cannot be {what}."
        )


def _reviewed(example: Example, by: str) -> None:
    example.reviewed_by = access.actor(by)
    example.reviewed_at = utcnow()


def bulk(ids: list[int], action: str, by: str = "") -> dict[str, int]:
    """accept | reject | reset | star | unstar on many examples: {"changed", "skipped"} (failed ones,
    and unfinished ones: still generating or cancelled)."""
    access.check("review")
    changes = {
        "accept": {"status": "accepted"},
        "reject": {"status": "rejected"},
        "reset": {"status": "pending"},
        "star": {"gold_star": True},
        "unstar": {"gold_star": False},
    }
    if action not in changes:
        raise UserFacingError(f"Unknown action {action!r}.")
    changed = skipped = 0
    with session_scope() as session:
        for example in session.exec(select(Example).where(Example.id.in_(ids))).all():
            unfinished = example.status in UNFINISHED
            if unfinished or (example.status == "failed" and action in ("accept", "star", "reset")):
                skipped += 1
                continue
            for key, value in changes[action].items():
                setattr(example, key, value)
            if action == "reject":
                example.gold_star = False  # a rejected example is never gold
            _reviewed(example, by)
            session.add(example)
            changed += 1
    return {"changed": changed, "skipped": skipped}


def missing(ids: list[int]) -> list[int]:
    """Those of `ids` that are not in the store, in the order given: to refuse a bulk action on a typo."""
    with session_scope() as session:
        found = set(session.exec(select(Example.id).where(Example.id.in_(ids))).all())
    return [i for i in dict.fromkeys(ids) if i not in found]


def rate_many(ids: list[int], rating: int | None, by: str = "") -> dict[str, int]:
    """Rate many examples 1 to 5 (None clears): {"changed", "skipped"} (failed ones cannot be rated)."""
    if rating is not None and not 1 <= int(rating) <= 5:
        raise UserFacingError("A rating is 1 to 5.")
    changed = skipped = 0
    with session_scope() as session:
        for example in session.exec(select(Example).where(Example.id.in_(ids))).all():
            if example.status == "failed" and rating is not None:
                skipped += 1
                continue
            example.rating = None if rating is None else int(rating)
            _reviewed(example, by)
            session.add(example)
            changed += 1
    return {"changed": changed, "skipped": skipped}


def set_status(example_id: int, status: str, by: str = "") -> Example:
    if status not in STATUSES:
        raise UserFacingError(f"Unknown status {status!r}.")
    return _update(example_id, "reviewed" if status != "pending" else "reset", by, status=status)


def set_gold_star(example_id: int, starred: bool, by: str = "") -> Example:
    return _update(example_id, "starred", by, gold_star=starred)


def set_rating(example_id: int, rating: int | None, by: str = "") -> Example:
    if rating is not None and not 1 <= int(rating) <= 5:
        raise UserFacingError("A rating is 1 to 5.")
    return _update(example_id, "rated", by, rating=None if rating is None else int(rating))


def set_notes(example_id: int, notes: str) -> Example:
    return _update(example_id, "", notes=limits.typed(notes, limits.NOTES, "The note"))


def _update(example_id: int, what: str, by: str = "", **values) -> Example:
    access.check("review")
    with session_scope() as session:
        example = session.get(Example, example_id)
        if example is None:
            raise UserFacingError(f"Example {example_id} does not exist (deleted?).")
        if what:
            _not_in_the_making(example)
        if what and (values.get("gold_star") or values.get("status") == "accepted" or "rating" in values):
            _usable(example, what)
        for key, value in values.items():
            setattr(example, key, value)
        if values.get("status") == "rejected":
            example.gold_star = False
        if what:  # a review decision, not a note
            _reviewed(example, by)
        session.add(example)
        session.flush()
        session.refresh(example)
        return example


def edit_response(example_id: int, text: str, editor: str = "") -> Example:
    """Replace the response; the first version stays in original_response and every change is logged."""
    access.check("review")
    text = limits.typed((text or "").strip(), limits.RESPONSE, "The edited response")
    if not text:
        raise UserFacingError("The response cannot be empty; reject the example instead.")
    with session_scope() as session:
        example = session.get(Example, example_id)
        if example is None:
            raise UserFacingError(f"Example {example_id} does not exist (deleted?).")
        _not_in_the_making(example)
        if text == example.response.strip():
            return example
        session.add(
            ExampleEdit(example_id=example_id, editor=access.actor(editor), before=example.response, after=text)
        )
        if example.original_response is None:
            example.original_response = example.response
        example.response = text
        example.response_words = validate.words(text)
        messages = [dict(m) for m in example.messages]
        if messages and messages[-1].get("role") == "assistant":
            messages[-1]["content"] = text
        example.messages = messages  # a new list: SQLAlchemy does not see in-place JSON changes
        example.token_count = tokens.count_cl100k([messages])[0] if messages else 0
        session.add(example)
        session.flush()
        session.refresh(example)
        return example
