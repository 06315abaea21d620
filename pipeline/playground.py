"""Chat with any model, with or without a persona's system prompt; several models side by side."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from pipeline import personas
from pipeline.errors import UserFacingError
from pipeline.llm import ChatResult, achat, chat


@dataclass
class Reply:
    model: str
    result: ChatResult | None = None
    error: str | None = None


def build_messages(persona_id: int | None, with_system_prompt: bool, history: list[dict], message: str) -> list[dict]:
    message = (message or "").strip()
    if not message:
        raise UserFacingError("Type a message first.")
    messages = []
    if with_system_prompt:
        if persona_id is None:
            raise UserFacingError("Pick a persona to use its system prompt, or choose 'without'.")
        messages.append({"role": "system", "content": personas.get_persona(persona_id).system_prompt})
    messages += [{"role": m["role"], "content": m["content"]} for m in history]
    messages.append({"role": "user", "content": message})
    return messages


def reply(
    chain: list[str],
    message: str,
    *,
    persona_id: int | None = None,
    with_system_prompt: bool = True,
    history: list[dict] | None = None,
    temperature: float = 0.7,
    max_tokens: int = 256,
) -> ChatResult:
    messages = build_messages(persona_id, with_system_prompt, history or [], message)
    return chat(messages, chain, temperature=temperature, max_tokens=max_tokens, purpose="playground")


def side_by_side(
    chains: list[list[str]],
    message: str,
    *,
    persona_id: int | None = None,
    with_system_prompt: bool = True,
    histories: list[list[dict]] | None = None,
    temperature: float = 0.7,
    max_tokens: int = 256,
) -> list[Reply]:
    """The same message to each chain at once; one failing chain does not hide the others' replies."""
    histories = histories or [[] for _ in chains]
    requests = [build_messages(persona_id, with_system_prompt, h, message) for h in histories]

    async def one(chain, messages) -> Reply:
        try:
            result = await achat(messages, chain, temperature=temperature, max_tokens=max_tokens, purpose="playground")
            return Reply(chain[0], result=result)
        except UserFacingError as exc:
            return Reply(chain[0], error=str(exc))

    async def every():
        return await asyncio.gather(*(one(c, m) for c, m in zip(chains, requests, strict=True)))

    return asyncio.run(every())


def default_model(persona_id: int | None) -> str:
    """The persona's deployed model when it has one, else the embedded model."""
    from pipeline import settings
    from pipeline.registry import lifecycle

    active = lifecycle.deployed(persona_id) if persona_id is not None else None
    return active.reference if active is not None else settings.EMBEDDED_MODEL


def star_reply(persona_id: int | None, model: str, history: list[dict], reply_text: str, by: str = "") -> int:
    """A ★ on a playground reply: production feedback, sent to Review as a gold-starred pending example."""
    from pipeline.db import session_scope
    from pipeline.models import Example, messages_hash

    if persona_id is None:
        raise UserFacingError("Pick a persona: a starred reply becomes one of its examples.")
    asked = next((m["content"] for m in reversed(history) if m["role"] == "user"), "")
    if not asked or not reply_text:
        raise UserFacingError("There is no reply to star yet.")
    messages = [{"role": "user", "content": asked}, {"role": "assistant", "content": reply_text}]
    example = Example(persona_id=persona_id, source="playground", document=asked, document_title=asked[:60],
                      response=reply_text, messages=messages, stage_models={"response": model}, gold_star=True,
                      status="pending", notes=f"starred in the playground by {by or 'someone'}",
                      document_words=len(asked.split()), response_words=len(reply_text.split()),
                      content_hash=messages_hash(messages))  # fmt: skip
    with session_scope() as session:
        session.add(example)
        session.flush()
        return example.id
