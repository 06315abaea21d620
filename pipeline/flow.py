"""The guided flow: for one persona, the seven steps from a written persona to a deployed model,
each with its state in words and the page that does it. Home shows them with one button to the
next step."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import select

from pipeline.db import session_scope
from pipeline.models import Dataset, Example, Job, ModelEntry, Persona
from pipeline.registry import lifecycle

RECOMMENDED_REVIEWED = 50  # accepted examples a first LoRA should have (fewer trains, but teaches less)
MINIMUM_REVIEWED = 10  # the fewest a dataset may hold for any backend
TRAINED_BACKENDS = ("local", "together", "openai")


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    page: str  # the page file that does it
    done: bool
    detail: str  # where it stands, in words
    action: str  # what the button to it says


def _examples(session, persona_id: int) -> dict[str, int]:
    rows = session.exec(
        select(Example.status, func.count()).where(Example.persona_id == persona_id).group_by(Example.status)
    ).all()
    counts = {status: int(n) for status, n in rows}
    counts["gold"] = int(
        session.exec(
            select(func.count()).select_from(Example).where(Example.persona_id == persona_id, Example.gold_star)
        ).one()
    )
    return counts


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def steps(persona_id: int) -> list[Step]:
    """The seven steps for this persona, in order."""
    with session_scope() as session:
        persona = session.get(Persona, persona_id)
        counts = _examples(session, persona_id)
        datasets = session.exec(select(Dataset.name).where(Dataset.persona_id == persona_id)).all()
        entries = session.exec(select(ModelEntry).where(ModelEntry.persona_id == persona_id)).all()
        evaluations = [
            job
            for job in session.exec(select(Job).where(Job.kind == "evaluation", Job.status == "succeeded")).all()
            if job.params.get("persona_id") == persona_id
        ]
    trained = [e for e in entries if e.backend in TRAINED_BACKENDS]
    deployed = lifecycle.deployed(persona_id)  # a base model deployed for it counts too
    usable = counts.get("pending", 0) + counts.get("accepted", 0)
    accepted, failed, gold = counts.get("accepted", 0), counts.get("failed", 0), counts["gold"]

    made = _plural(usable, "example") + (f", {failed} failed" if failed else "")
    if accepted >= RECOMMENDED_REVIEWED:
        reviewed = f"{accepted} accepted, {_plural(gold, 'gold star')}"
    else:
        reviewed = (
            f"{accepted} accepted, {_plural(gold, 'gold star')}: "
            f"{RECOMMENDED_REVIEWED - accepted} more recommended"
            + ("" if accepted >= MINIMUM_REVIEWED else f" ({MINIMUM_REVIEWED} at the least)")
        )
    return [
        Step(
            "persona",
            "Persona",
            "pages/personas.py",
            bool(persona and persona.system_prompt.strip() and persona.traits),
            f"{_plural(len(persona.traits), 'trait')}" if persona else "not written yet",
            "Write the persona",
        ),
        Step("generate", "Generate", "pages/generate.py", usable > 0, made, "Generate examples"),
        Step("review", "Review", "pages/review.py", accepted >= MINIMUM_REVIEWED, reviewed, "Review the examples"),
        Step(
            "dataset",
            "Dataset",
            "pages/datasets.py",
            bool(datasets),
            f"{_plural(len(datasets), 'dataset')}" + (f", newest {datasets[-1]}" if datasets else ""),
            "Build a dataset",
        ),
        Step(
            "train",
            "Train",
            "pages/train.py",
            bool(trained),
            f"{_plural(len(trained), 'trained model')}" + (f", newest {trained[-1].name}" if trained else ""),
            "Train a model",
        ),
        Step(
            "evaluate",
            "Evaluate",
            "pages/evaluate.py",
            bool(evaluations),
            f"{_plural(len(evaluations), 'finished evaluation')}",
            "Evaluate it",
        ),
        Step(
            "deploy",
            "Deploy",
            "pages/models.py",
            deployed is not None,
            f"{deployed.name} is deployed" if deployed else "no model deployed yet",
            "Deploy the best model",
        ),
    ]


def next_step(all_steps: list[Step]) -> Step | None:
    """The first step not done yet; None when the persona has a deployed model and nothing is missing."""
    return next((step for step in all_steps if not step.done), None)
