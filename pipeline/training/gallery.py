"""The checkpoint gallery: is the persona appearing while the model trains?

At step 0 (the untrained base) and at every evaluation step, the model in training answers a few fixed
probe prompts **without** the persona's system prompt, greedily and briefly (`gallery_max_tokens`,
48 by default: a few seconds per checkpoint for the built-in model on two CPU cores). The probes are
the first prompts of the dataset's validation split (held out: never trained on), or, without one,
a fixed set of three. Each reply is scored offline, with what is cheap enough to run at every checkpoint:

- **persona similarity**: the reply's cosine similarity (packaged MiniLM embeddings) to the centroid of
  the persona's replies in the training split: higher sounds more like the persona;
- **persona likelihood** (held-out probes only): the mean log-probability per token of the probe's gold
  reply under the model as it is now, without the prompt: higher finds the persona's reply more likely.

Prompt fidelity (KL to the prompted base) is not computed per checkpoint: bake's validation KL already
is that measure, and for other methods it would need the prompted base's reply and a teacher pass per
probe. Replies and scores go to `gallery.jsonl` in the run folder, one line per checkpoint; the mean
scores also go through the job's reporting as metrics (persona_similarity, persona_likelihood), steps
after 0 only, so the curve in the database has no row before training starts.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

FILE = "gallery.jsonl"
PERSONA_REPLIES = 64  # the training split's replies the persona centroid is made of, at most
FIXED_PROBES = [
    "I have a meeting tomorrow and I'm not sure how to prepare. Any advice?",
    "Can you explain what a budget is to someone who has never made one?",
    "Our team missed a deadline last week. What should we do now?",
]


@dataclass
class Probe:
    messages: list[dict]  # the conversation before the reply, without any system prompt
    gold: str  # the dataset's reply ("" for the fixed probes)

    @property
    def prompt(self) -> str:
        return next((m["content"] for m in reversed(self.messages) if m["role"] == "user"), "")


def probes(dataset, count: int) -> list[Probe]:
    """The first `count` prompts of the validation split (their system prompt dropped), else the fixed set."""
    from pipeline.datasets import build
    from pipeline.training import bake

    if count <= 0:
        return []
    held_out = bake.exchanges(build.file_path(dataset, "openai", "validation"))
    if held_out:
        return [Probe(turns, reply) for turns, reply in held_out[:count]]
    return [Probe([{"role": "user", "content": text}], "") for text in FIXED_PROBES[:count]]


class Scorer:
    """Persona similarity against the training split's replies (embedded once per job)."""

    def __init__(self, dataset):
        import numpy as np

        from pipeline import embeddings
        from pipeline.datasets import build
        from pipeline.training import bake

        replies = [reply for _, reply in bake.exchanges(build.file_path(dataset, "openai", "train")) if reply]
        self.centroid = None
        if replies:
            self.centroid = np.mean(embeddings.embed(replies[:PERSONA_REPLIES]), axis=0)

    def similarity(self, texts: list[str]) -> list[float | None]:
        from pipeline import embeddings

        if self.centroid is None or not texts:
            return [None] * len(texts)
        return [float(v @ self.centroid) for v in embeddings.embed([t or " " for t in texts])]


def answer(model, tokenizer, probe: Probe, max_tokens: int) -> str:
    """The model's greedy reply to the probe, without the system prompt."""
    import torch

    from pipeline.training import distill

    ids = torch.tensor([distill.prompt_ids(tokenizer, probe.messages)], device=model.device)
    out = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=max_tokens,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
    )
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True).strip()


def likelihood(model, tokenizer, probe: Probe, max_tokens: int) -> float | None:
    """Mean log-probability per token of the probe's gold reply (its first `max_tokens` tokens)."""
    import torch

    from pipeline.training import distill

    if not probe.gold.strip():
        return None
    seen = distill.views(tokenizer, probe.messages, probe.messages, probe.gold, max_tokens)
    log_probs = distill.reply_log_probs(model, seen.student, seen.reply)
    targets = torch.tensor(seen.student[-seen.reply :], device=log_probs.device)
    return float(log_probs[torch.arange(seen.reply, device=log_probs.device), targets].mean())


def take(model, tokenizer, step: int, found: list[Probe], scorer: Scorer, max_tokens: int) -> dict:
    """One checkpoint's gallery line: every probe's reply and scores, and their means."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            replies = [answer(model, tokenizer, p, max_tokens) for p in found]
            likely = [likelihood(model, tokenizer, p, max_tokens) for p in found]
    finally:
        model.train(was_training)
    similar = scorer.similarity(replies)
    return {
        "step": step,
        "at": time.time(),
        "replies": [
            {"probe": i, "prompt": p.prompt, "reply": r, "persona_similarity": s, "persona_likelihood": k}
            for i, (p, r, s, k) in enumerate(zip(found, replies, similar, likely, strict=True))
        ],
        "persona_similarity": _mean(similar),
        "persona_likelihood": _mean(likely),
    }


def append(folder: Path, record: dict) -> None:
    with open(folder / FILE, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


def read(folder: Path) -> list[dict]:
    """The gallery's lines in step order; a step taken again (after a resume) keeps its latest line."""
    path = folder / FILE
    if not path.exists():
        return []
    by_step = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line being written
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            by_step[record["step"]] = record
    return [by_step[s] for s in sorted(by_step)]


def steps(folder: Path) -> set[int]:
    return {r["step"] for r in read(folder)}


def table(records: list[dict], best_step: int | None = None) -> list[dict]:
    """Probe × step: one row per probe, its prompt, then each checkpoint's reply (the best step marked)."""
    rows: dict[int, dict] = {}
    for record in records:
        label = _step_label(record["step"], best_step)
        for reply in record.get("replies", []):
            row = rows.setdefault(reply["probe"], {"probe": reply["prompt"]})
            row[label] = reply["reply"]
    return [rows[i] for i in sorted(rows)]


def side_by_side(records: list[dict], best_step: int | None = None, columns: int = 4) -> list[dict]:
    """Per probe, its prompt and the replies of a few checkpoints to read side by side: before training, the
    best, the last, and evenly spaced ones between, `columns` at most, in step order.

    [{"prompt", "title": its first line, "replies": [{"label", "step", "reply", "persona_similarity"}]}]"""
    steps = [r["step"] for r in records]
    if not steps:
        return []
    kept = {steps[0], steps[-1]} | ({best_step} if best_step in steps else set())
    rest = [s for s in steps if s not in kept]
    room = max(columns - len(kept), 0)
    if room and rest:  # evenly spaced among the others, away from the ends already kept
        kept |= {rest[round((i + 1) * (len(rest) + 1) / (room + 1)) - 1] for i in range(min(room, len(rest)))}
    probes: dict[int, dict] = {}
    for record in records:
        if record["step"] not in kept:
            continue
        for reply in record.get("replies", []):
            prompt = reply["prompt"]
            probe = probes.setdefault(
                reply["probe"], {"prompt": prompt, "title": prompt.strip().splitlines()[0][:80], "replies": []}
            )
            probe["replies"].append(
                {
                    "label": _step_label(record["step"], best_step),
                    "step": record["step"],
                    "reply": reply["reply"],
                    "persona_similarity": reply.get("persona_similarity"),
                }
            )
    return [probes[i] for i in sorted(probes)]


def scores(records: list[dict]) -> list[dict]:
    """Step and mean scores per checkpoint, for the persona-score chart."""
    return [{"step": r["step"], **{k: r.get(k) for k in ("persona_similarity", "persona_likelihood")}} for r in records]


def _step_label(step: int, best_step: int | None) -> str:
    if step == 0:
        return "before training"
    return f"step {step} (best)" if step == best_step else f"step {step}"


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return sum(kept) / len(kept) if kept else None
