"""Chat transcripts of the persona → user/assistant pairs, added as examples with source "imported".

Read deterministically when the format is known: "Name: message" lines (a line without a speaker
continues the previous message), JSON or JSONL chat exports (OpenAI `messages`, ShareGPT
`conversations`, ChatGPT's `conversations.json` with its `mapping` tree, or a bare list of role and
content). Anything else can be handed to an LLM, which rewrites it as "Name: message" lines that
the same reader then takes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from sqlmodel import select

from pipeline import limits
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.generation import quality, validate
from pipeline.llm import chat
from pipeline.models import Example, Persona, messages_hash

SPEAKER_LINE = re.compile(r"^\s*(?:\[[^\]]*\]\s*)?([A-Za-z][\w .'-]{0,40}?)\s*:\s+(.*)$")
ASSISTANT_ROLES = {"assistant", "gpt", "bot", "model", "chatgpt"}
USER_ROLES = {"user", "human", "customer"}


@dataclass
class Transcript:
    source: str
    conversations: list[list[dict]] = field(default_factory=list)  # [{"role": user|assistant, "content"}]
    speakers: list[str] = field(default_factory=list)  # for "Name: message" text: who spoke, in order

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """Each assistant turn with the user turn just before it."""
        found = []
        for conversation in self.conversations:
            for before, turn in zip(conversation, conversation[1:], strict=False):
                if before["role"] == "user" and turn["role"] == "assistant":
                    found.append((before["content"].strip(), turn["content"].strip()))
        return [(u, a) for u, a in found if u and a]


def decode(data: bytes, source: str) -> str:
    limits.upload(data, limits.TRANSCRIPT_BYTES, source)
    if not data.strip():
        raise UserFacingError(f"{source} is empty.")
    if b"\x00" in data[:4096]:
        raise UserFacingError(f"{source} is not a text file.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserFacingError(f"{source} is not UTF-8 text.") from None
    return limits.no_nul(text, source)


def parse(data: bytes, source: str, persona_speaker: str | None = None) -> Transcript:
    """Read a transcript file. Raises UserFacingError naming the file when nothing can be read."""
    text = decode(data, source)
    transcript = _parse_json(text, source) or _parse_lines(text, source, persona_speaker)
    if transcript is None or not transcript.pairs:
        raise UserFacingError(
            f"{source}: no conversation found (expected 'Name: message' lines or a JSON chat export). "
            "Try the LLM extraction for other formats."
        )
    for c, conversation in enumerate(transcript.conversations, 1):  # e.g. a JSON export spelling \u0000
        for m, turn in enumerate(conversation, 1):
            limits.no_nul(turn["content"], f"{source}: conversation {c}, message {m}")
    return transcript


def _role(value: str) -> str | None:
    value = (value or "").lower()
    return "assistant" if value in ASSISTANT_ROLES else "user" if value in USER_ROLES else None


def _turns(messages: list) -> list[dict]:
    turns = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = _role(message.get("role") or message.get("from") or "")
        content = message.get("content", message.get("value"))
        if isinstance(content, list):  # content parts
            content = " ".join(p if isinstance(p, str) else p.get("text", "") for p in content)
        if role and isinstance(content, str) and content.strip():
            turns.append({"role": role, "content": content})
    return turns


def _chatgpt_export(conversation: dict) -> list[dict]:
    """ChatGPT's conversations.json: walk the mapping tree from the current node back to the root."""
    mapping, node, path = conversation["mapping"], conversation.get("current_node"), []
    while node:
        entry = mapping.get(node, {})
        message = entry.get("message") or {}
        parts = (message.get("content") or {}).get("parts") or []
        role = (message.get("author") or {}).get("role")
        if role in ("user", "assistant") and parts:
            path.append({"role": role, "content": " ".join(p for p in parts if isinstance(p, str))})
        node = entry.get("parent")
    return path[::-1]


def _conversation(item) -> list[dict] | None:
    if isinstance(item, dict):
        if isinstance(item.get("mapping"), dict):
            return _chatgpt_export(item)
        for key in ("messages", "conversations", "conversation"):
            if isinstance(item.get(key), list):
                return _turns(item[key])
    return None


def _parse_json(text: str, source: str) -> Transcript | None:
    stripped = text.strip()
    if stripped[:1] not in "[{":
        return None
    try:
        items = [json.loads(stripped)]
    except json.JSONDecodeError:
        try:
            items = [json.loads(line) for line in stripped.splitlines() if line.strip()]
        except json.JSONDecodeError:
            return None
    if len(items) == 1 and isinstance(items[0], list):
        items = items[0]
        if all(isinstance(m, dict) and ("role" in m or "from" in m) for m in items):
            return Transcript(source, [_turns(items)])  # one conversation as a bare list of turns
    conversations = [c for c in (_conversation(i) for i in items) if c]
    return Transcript(source, conversations) if conversations else None


def _parse_lines(text: str, source: str, persona_speaker: str | None) -> Transcript | None:
    lines: list[list[str]] = []  # [speaker, message]
    for raw in text.splitlines():
        match = SPEAKER_LINE.match(raw)
        if match:
            lines.append([match.group(1).strip(), match.group(2).strip()])
        elif raw.strip() and lines:
            lines[-1][1] += "\n" + raw.strip()
    speakers = list(dict.fromkeys(speaker for speaker, _ in lines))
    if len(speakers) < 2:
        return None
    persona = persona_speaker if persona_speaker in speakers else speakers[1]  # usually the one who answers
    turns = [{"role": "assistant" if s == persona else "user", "content": m} for s, m in lines]
    merged: list[dict] = []
    for turn in turns:  # consecutive lines by one side are one turn
        if merged and merged[-1]["role"] == turn["role"]:
            merged[-1]["content"] += "\n" + turn["content"]
        else:
            merged.append(dict(turn))
    return Transcript(source, [merged], speakers)


def extract_with_llm(data: bytes, source: str, models: list[str], persona_speaker: str = "Persona") -> Transcript:
    """Have a model rewrite an unknown format as 'User: ...' / 'Persona: ...' lines, then read those."""
    text = decode(data, source)[:12_000]
    result = chat(
        [
            {"role": "system", "content": "You convert chat logs into plain dialogue lines. Output only the lines."},
            {
                "role": "user",
                "content": (
                    f"Rewrite this chat log as lines of the form 'User: <message>' and "
                    f"'{persona_speaker}: <message>', where {persona_speaker} is the assistant or the person whose "
                    f"replies we want. Keep every message's words exactly.\n\n{text}"
                ),
            },
        ],
        models,
        temperature=0,
        max_tokens=4000,
        purpose="transcript-extraction",
    )
    return parse(result.text.encode(), f"{source} (via {result.model_used})", persona_speaker)


def _pair_hash(user: str, assistant: str) -> str:
    return messages_hash([{"role": "user", "content": user}, {"role": "assistant", "content": assistant}])


def import_pairs(persona_id: int, transcript: Transcript) -> tuple[int, int]:
    """Add each pair as an imported example; a pair already imported is skipped. (added, skipped)."""
    added = skipped = 0
    with session_scope() as session:
        persona = session.get(Persona, persona_id)
        known = set(session.exec(select(Example.content_hash).where(Example.persona_id == persona_id)))
        fresh = [p for p in transcript.pairs if _pair_hash(*p) not in known]
        checker = quality.Gate(persona.name, persona.traits) if persona and fresh else None
        gated = dict(zip(fresh, checker.check(fresh), strict=True)) if checker else {}
        for user, assistant in transcript.pairs:
            messages = [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
            digest = messages_hash(messages)
            if digest in known:
                skipped += 1
                continue
            known.add(digest)
            session.add(
                Example(
                    persona_id=persona_id,
                    source="imported",
                    document=user,
                    response=assistant,
                    messages=messages,
                    document_words=validate.words(user),
                    response_words=validate.words(assistant),
                    scenario={"source_file": transcript.source},
                    content_hash=digest,
                    quality_issues=gated.get((user, assistant), []),
                    status="pending",
                )
            )
            added += 1
    return added, skipped


def few_shot(persona_id: int, count: int = 3) -> list[dict]:
    """A few imported exchanges to show a model the persona's voice: the fullest replies, one per opener."""
    with session_scope() as session:
        imported = list(
            session.exec(select(Example).where(Example.persona_id == persona_id, Example.source == "imported"))
        )
    chosen, openers = [], set()
    for example in sorted(imported, key=lambda e: e.response_words, reverse=True):
        opener = example.document[:40].lower()
        if opener not in openers:
            openers.add(opener)
            chosen.extend(example.messages)
        if len(chosen) >= 2 * count:
            break
    return chosen
