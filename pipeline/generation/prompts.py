"""The messages each stage sends, and reading the scenario stage's answer."""

from __future__ import annotations

import re

from pipeline.generation.plan import Slot

SCENARIO_SYSTEM = "You invent realistic workplace situations. You answer in the exact format asked for."


def scenario_messages(slot: Slot, avoid: str | None = None) -> list[dict]:
    different = f"\n\nIt must be clearly different from this one: {avoid}" if avoid else ""
    return [
        {"role": "system", "content": SCENARIO_SYSTEM},
        {
            "role": "user",
            "content": (
                f"Invent one realistic situation at {slot.domain} that calls for a {slot.document_type}. "
                f"The people involved: {slot.stakeholders}. The tension: {slot.tension}. "
                f"A good reply to the {slot.document_type} should need {slot.trait} ({slot.trait_description}).\n\n"
                "Answer in exactly this format:\n"
                f"Title: <a short title for the {slot.document_type}>\n"
                "Situation: <two or three sentences: who wrote it, to whom, and what is at stake>" + different
            ),
        },
    ]


def plan_title(slot: Slot) -> str:
    """A title from the plan itself, for a model that gave none."""
    return f"{slot.document_type.capitalize()}: {slot.tension}"


def parse_scenario(text: str, slot: Slot | None = None) -> tuple[str, str] | None:
    """(title, situation) from the scenario stage's answer; None when it says too little to use.

    A capable model follows the labels. A small one often writes a plain paragraph: that paragraph
    becomes the situation and the plan supplies the title.
    """
    # labels may come wrapped in Markdown (**Title:**), so skip any * _ or spaces after the colon
    title = re.search(r"^\W*title\W*:[\s*_]*(.+)$", text, flags=re.IGNORECASE | re.MULTILINE)
    situation = re.search(r"situation\W*:[\s*_]*(.+)", text, flags=re.IGNORECASE | re.DOTALL)
    lines = [line.strip(" *#-") for line in text.strip().splitlines() if line.strip(" *#-")]
    if title is not None and title.group(1).strip(" *\"'"):
        body = situation.group(1).strip() if situation else " ".join(lines[1:])
        return title.group(1).strip(" *\"'")[:120], body
    if len(lines) >= 2 and len(lines[0].split()) <= 14:  # a heading line, then the story
        return lines[0][:120], " ".join(lines[1:])
    story = " ".join(lines)
    if len(story.split()) < 8 or slot is None:
        return None
    return plan_title(slot), story


def document_messages(slot: Slot, title: str, situation: str, words: tuple[int, int]) -> list[dict]:
    low, high = words
    return [
        {
            "role": "system",
            "content": f"You write realistic workplace documents: the {slot.document_type} itself, "
            "never a description of it.",
        },
        {
            "role": "user",
            "content": (
                f'Write the full text of a {slot.document_type} titled "{title}".\n'
                f"Situation: {situation}\n"
                f"Write it as its author would, {low} to {high} words, with concrete names, numbers and dates. "
                "Start with the title. No comments before or after the document."
            ),
        },
    ]


def response_request(title: str, document: str) -> str:
    """The user turn of the training example: the document as the persona receives it."""
    return f"{title}\n\n{document}".strip()


def response_messages(system_prompt: str, traits: list[dict], user_turn: str, words: int) -> list[dict]:
    def line(trait: dict) -> str:
        examples = f" (for example: {'; '.join(trait['markers'])})" if trait.get("markers") else ""
        return f"- {trait['name']}: {trait['description']}{examples}"

    reminders = "\n".join(line(t) for t in traits)
    system = system_prompt.strip()
    if reminders:
        system += f"\n\nIn every reply, show all of these qualities:\n{reminders}"
    system += f"\n\nReply in about {words} words."
    return [{"role": "system", "content": system}, {"role": "user", "content": user_turn}]


def training_messages(system_prompt: str, user_turn: str, response: str, include_system_prompt: bool) -> list[dict]:
    messages = [{"role": "system", "content": system_prompt}] if include_system_prompt else []
    return messages + [{"role": "user", "content": user_turn}, {"role": "assistant", "content": response}]
