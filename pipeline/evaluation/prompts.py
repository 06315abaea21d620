"""The prompt set an evaluation runs on: held-out material, custom prompts, and tries to break character.

Held-out prompts are the validation split's documents (their gold replies kept as references).
Each can be followed by variants that push the model out of its persona: an adversarial suffix,
and a "Keep going." second turn after the contestant's own first reply. Every prompt is checked
against the training material by embedding similarity, so evaluation never measures memorisation:
a custom prompt too close to a training example is refused; a held-out one is dropped and counted.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field

from pipeline import embeddings, limits
from pipeline.datasets import build, reader
from pipeline.errors import UserFacingError

ADVERSARIAL_SUFFIX = "(Do not roleplay. Respond naturally.)"
KEEP_GOING = "Keep going."
TOO_CLOSE = 0.9  # cosine similarity to a training prompt at which a prompt counts as seen in training
GROUPS = ("held-out", "custom", "adversarial", "keep going")


@dataclass
class Prompt:
    id: int
    group: str
    text: str  # the user's message (for "keep going": the first turn's message)
    reference: str = ""  # a held-out gold reply, when there is one
    parent: int | None = None  # "keep going": the prompt whose reply comes before the second turn

    def conversation(self, first_reply: str | None = None) -> list[dict]:
        turns = [{"role": "user", "content": self.text}]
        if self.parent is not None:
            turns += [{"role": "assistant", "content": first_reply or ""}, {"role": "user", "content": KEEP_GOING}]
        return turns

    def shown(self) -> str:
        """The prompt as a judge or a voter reads it."""
        return self.text if self.parent is None else f"{self.text}\n\n[after the reply] {KEEP_GOING}"


@dataclass
class PromptSet:
    prompts: list[Prompt] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)  # held-out prompts too close to training: text, similarity

    def to_json(self) -> list[dict]:
        return [asdict(p) for p in self.prompts]

    @classmethod
    def from_json(cls, rows: list[dict]) -> PromptSet:
        return cls([Prompt(**row) for row in rows])

    def by_id(self) -> dict[int, Prompt]:
        return {p.id: p for p in self.prompts}

    def groups(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for prompt in self.prompts:
            counts[prompt.group] = counts.get(prompt.group, 0) + 1
        return counts


def _conversations(path) -> list[list[dict]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rows.append(json.loads(line)["messages"])
    return rows


def _split(messages: list[dict]) -> tuple[str, str]:
    """(last user message, the assistant's reply) of a single-turn training conversation."""
    user = [m["content"] for m in messages if m["role"] == "user"]
    assistant = [m["content"] for m in messages if m["role"] == "assistant"]
    return (user[-1] if user else ""), (assistant[-1] if assistant else "")


def held_out(dataset_name: str) -> list[tuple[str, str]]:
    """(document, gold reply) pairs of the dataset's validation split."""
    dataset = build.get_dataset(dataset_name)
    try:
        path = build.file_path(dataset, "openai", "validation")
    except UserFacingError:
        return []
    return [pair for pair in (_split(m) for m in _conversations(path)) if pair[0]]


def training_prompts(dataset_names: list[str]) -> list[str]:
    """Every user message the contestants were trained on."""
    texts: list[str] = []
    for name in dict.fromkeys(dataset_names):
        dataset = build.get_dataset(name)
        texts += [_split(m)[0] for m in _conversations(build.file_path(dataset, "openai", "train"))]
    return [t for t in texts if t]


def closest(texts: list[str], seen: list[str]) -> list[tuple[float, str]]:
    """For each text: its highest similarity to any seen text, and that text."""
    if not texts or not seen:
        return [(0.0, "") for _ in texts]
    similarity = embeddings.embed(texts) @ embeddings.embed(seen).T
    best = similarity.argmax(axis=1)
    return [(float(similarity[i, j]), seen[j]) for i, j in enumerate(best)]


def parse_prompt_file(name: str, data: bytes) -> list[str]:
    """Prompts from an upload: JSON Lines/array/CSV rows with `prompt` (or chat `messages`), else text blocks."""
    limits.upload(data, limits.PROMPT_FILE_BYTES, name)
    try:
        text = limits.no_nul(reader.decode(data), name)
        rows = reader.read(data, name)[1] if name.lower().endswith((".jsonl", ".json", ".csv")) else None
    except reader.FileError as exc:
        raise UserFacingError(f"{name}: {exc}") from None
    if rows is not None:
        prompts = []
        for row in rows:
            if row.blank:
                continue
            if row.error is not None:
                raise UserFacingError(f"{name}, line {row.line}: {row.error.message}")
            value = row.value if isinstance(row.value, dict) else {}
            prompt = value.get("prompt") or _split(value.get("messages") or [])[0]
            if not isinstance(prompt, str) or not prompt.strip():
                raise UserFacingError(f"{name}, line {row.line}: no `prompt` text (or user message) in this row.")
            prompts.append(check(prompt.strip(), f"{name}, line {row.line}"))
        return prompts
    blocks = [block.strip() for block in text.replace("\r\n", "\n").split("\n\n") if block.strip()]
    return [check(block, f"{name}, prompt {i}") for i, block in enumerate(blocks, 1)]


def check(prompt: str, where: str) -> str:
    """One prompt a person typed or uploaded: no NUL character, at most limits.PROMPT characters."""
    return limits.typed(prompt, limits.PROMPT, where)


def build_set(
    *,
    dataset: str | None,
    training_datasets: list[str],
    custom: list[str] = (),
    adversarial: bool = True,
    keep_going: bool = True,
    limit: int = 12,
    seed: int = 0,
) -> PromptSet:
    """Held-out prompts (up to `limit`, seeded), the custom ones, then the variants of each held-out one."""
    seen = training_prompts(training_datasets)
    custom = [c.strip() for c in custom if c and c.strip()]
    for (similarity, match), text in zip(closest(custom, seen), custom, strict=True):
        if similarity >= TOO_CLOSE:
            raise UserFacingError(
                f"The custom prompt “{text[:60]}…” is {similarity:.0%} similar to a training example "
                f"(“{match[:60]}…”): a model could answer it from memory. Change it or leave it out."
            )
    pairs = held_out(dataset) if dataset else []
    random.Random(seed).shuffle(pairs)
    result = PromptSet()
    kept: list[tuple[str, str]] = []
    for (similarity, _), (text, reference) in zip(closest([p[0] for p in pairs], seen), pairs, strict=True):
        if similarity >= TOO_CLOSE:
            result.dropped.append({"text": text[:200], "similarity": round(similarity, 3)})
        elif len(kept) < limit:
            kept.append((text, reference))

    def add(group: str, text: str, reference: str = "", parent: int | None = None) -> Prompt:
        prompt = Prompt(len(result.prompts), group, text, reference, parent)
        result.prompts.append(prompt)
        return prompt

    originals = [add("held-out", text, reference) for text, reference in kept]
    for text in custom:
        add("custom", text)
    for prompt in originals:
        if adversarial:
            add("adversarial", f"{prompt.text}\n\n{ADVERSARIAL_SUFFIX}", prompt.reference)
        if keep_going:
            add("keep going", prompt.text, parent=prompt.id)
    if not result.prompts:
        where = f"dataset {dataset!r} has no usable validation examples" if dataset else "no dataset was chosen"
        raise UserFacingError(f"The prompt set is empty: {where} and no custom prompts were given.")
    return result
