"""Chat with any model, with or without a persona's system prompt; several models side by side.

A single chat streams (`stream_reply`, read by a `LiveReply` thread so a page can wait with a heartbeat
and stop at any moment); side by side stays one non-streaming call per model, sent at once.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pipeline import personas
from pipeline.errors import UserFacingError
from pipeline.llm import ChatResult, ChatStream, achat, chat, stream


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


def stream_reply(
    chain: list[str],
    message: str,
    *,
    persona_id: int | None = None,
    with_system_prompt: bool = True,
    history: list[dict] | None = None,
    temperature: float = 0.7,
    max_tokens: int = 256,
) -> ChatStream:
    """`reply`, streamed: the gateway's ChatStream (text chunks, then the ChatResult)."""
    messages = build_messages(persona_id, with_system_prompt, history or [], message)
    return stream(messages, chain, temperature=temperature, max_tokens=max_tokens, purpose="playground")


class LiveReply:
    """A ChatStream read by a thread of its own, so whoever shows it never blocks on the model.

    `events()` yields each new text chunk, None when nothing new came for `every` seconds (a heartbeat:
    time to redraw, and a moment a page can be interrupted), and last the ChatResult. `stop()` ends the
    stream; the thread finishes on its own (the partial reply is recorded) and calls `on_done(self)`.
    """

    def __init__(self, chat_stream: ChatStream, on_done: Callable[[LiveReply], None] | None = None):
        self.stream = chat_stream
        self.on_done = on_done
        self.result: ChatResult | None = None
        self.error: str | None = None
        self.started = time.monotonic()
        self._items: queue.Queue = queue.Queue()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, name="live-reply", daemon=True)
        self._thread.start()

    @property
    def text(self) -> str:
        return self.stream.text

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def stop(self) -> None:
        self.stream.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the stream to end; whether it has."""
        return self._done.wait(timeout)

    def _read(self) -> None:
        try:
            for item in self.stream:
                if isinstance(item, ChatResult):
                    self.result = item
                else:
                    self._items.put(item)
        except UserFacingError as exc:
            self.error = str(exc)
        except Exception as exc:  # noqa: BLE001 - shown on the page, never a traceback
            self.error = f"The reply failed: {type(exc).__name__}: {exc}"
        finally:
            self._done.set()
            self._items.put(None)
            if self.on_done is not None:
                self.on_done(self)

    def events(self, every: float = 0.25) -> Iterator[str | ChatResult | None]:
        while True:
            try:
                item = self._items.get(timeout=every)
            except queue.Empty:
                yield None
                continue
            if item is None and self._done.is_set():
                break
            if item is not None:
                yield item
        if self.error is not None:
            raise UserFacingError(self.error)
        if self.result is not None:
            yield self.result


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


def defaults(persona_id: int | None) -> tuple[str, bool]:
    """What a chat with this persona starts on: (model, with the system prompt?).

    A persona with a deployed fine-tuned model starts on it *without* the system prompt: the point of
    the fine-tune is to carry the persona alone. Otherwise the embedded model (or a deployed base or
    prompt-only variant), with the prompt."""
    from pipeline import settings
    from pipeline.registry import lifecycle

    active = lifecycle.deployed(persona_id) if persona_id is not None else None
    if active is None:
        return settings.EMBEDDED_MODEL, persona_id is not None
    return active.reference, active.backend in ("embedded", "prompt")


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
