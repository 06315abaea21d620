"""A persona with distinct, realistic examples and a dataset built from them, for the evaluation tests.

tests/seed.py's examples share one vocabulary (fine for counting, but every held-out document would
look memorised); these are about different things, as real generated data is.
"""

from __future__ import annotations

from sqlalchemy import insert

from pipeline import personas
from pipeline.datasets import build
from pipeline.db import session_scope
from pipeline.models import Example, example_row, messages_hash
from pipeline.review.filters import ExampleFilter

TOPICS = [
    ("Warehouse budget", "The northern warehouse spent 18% over its maintenance budget after two forklifts failed."),
    ("Hiring freeze", "Finance proposes freezing all design hires until the March revenue numbers are in."),
    ("Vendor contract", "Our cloud vendor wants a three-year commitment in exchange for a 22% discount."),
    ("Customer churn", "Churn among small retail customers doubled after the pricing page changed in June."),
    ("Office move", "The lease ends in October and the shortlist has a cheaper site an hour further out."),
    ("Safety incident", "A contractor slipped on the loading dock; the report says the mats were missing."),
    ("Product recall", "Three batches of the kettle may have faulty thermostats; two complaints so far."),
    ("Remote work", "Team leads disagree on whether to require three office days a week from January."),
    ("Data breach drill", "The tabletop exercise showed nobody knew who informs customers after a breach."),
    ("Grant proposal", "The foundation grant needs outcome metrics we have never measured before."),
    ("Pricing change", "Sales wants to raise the premium tier by 15% before the competitor launches."),
    ("Volunteer program", "Only four people joined the volunteering days; the survey blames the schedule."),
    ("Supplier delay", "Our packaging supplier is six weeks late and the holiday launch depends on them."),
    ("Training budget", "The learning budget was cut in half, and the junior engineers feel it the most."),
    ("Merger rumour", "Staff heard rumours of a merger and productivity dropped; leadership has said nothing."),
    ("Energy costs", "Electricity costs at the plant rose 40% and the night shift is the most expensive."),
]
REPLY = (
    "Thanks for laying this out so clearly. Let's work through it together: before we decide, what do we know "
    "about {topic}? I am not certain the numbers tell the whole story, and the people affected deserve a say. "
    "One option costs more now but protects trust; the other saves money and carries real risk."
)


def seed(gold: int = 3) -> tuple[int, str]:
    """The collaborative persona, its 16 accepted examples (a few gold-starred) and dataset `collab-eval`."""
    personas.seed_samples()
    persona = personas.get_persona("collaborative")
    rows = []
    for i, (title, detail) in enumerate(TOPICS):
        document = f"{title}\n\n{detail} " + " ".join([f"Point {k}: {detail.lower()}" for k in range(1, 4)])
        reply = REPLY.format(topic=title.lower())
        messages = [{"role": "user", "content": document}, {"role": "assistant", "content": reply}]
        rows.append(
            example_row(
                persona_id=persona.id,
                document_type="memo",
                document_title=title,
                document=document,
                response=reply,
                messages=messages,
                traits_stressed=["collaborative"],
                status="accepted",
                gold_star=i < gold,
                content_hash=messages_hash(messages),
                document_words=len(document.split()),
                response_words=len(reply.split()),
            )
        )
    with session_scope() as session:
        session.execute(insert(Example), rows)
    build.save("collab-eval", build.preview(ExampleFilter(persona_id=persona.id, statuses=["accepted"]), 0.25))
    return persona.id, "collab-eval"
