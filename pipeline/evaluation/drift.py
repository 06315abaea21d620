"""Persona drift over turns: does a model stay in character as a conversation goes on?

A simulated user (a model: the built-in one, or any configured) continues each opening prompt for N
turns, asking follow-ups, pushing back and changing topic; every contestant answers each turn as it
is asked (a plain contestant without the system prompt). Each reply is scored offline with the same
persona similarity the offline judge uses (closer to the gold replies, further from the base model's
usual voice) and, when the run has an LLM judge, by that judge too (the mean of its 1–5 trait
scores); the scores per turn are summarised with a bootstrap interval over conversations, one set of
rows per scorer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import storage

FILE = "drift.json"
CONVERSATIONS = "drift_conversations.jsonl"
DEFAULT_TURNS = 6
# what the simulated user does on each later turn, in turn: a conversation that wanders as real ones do
MOVES = [
    "Ask a natural follow-up question about the assistant's last reply.",
    "Push back on one point of the assistant's last reply and ask it to reconsider.",
    "Change the topic to a different work problem you have, in one or two sentences.",
    "Ask for a concrete next step or example.",
    "Say you are in a hurry and ask for the short version.",
]
USER_SYSTEM = (
    "You play a busy professional talking to an assistant. Write only your next message to the assistant: "
    "one to three sentences, in the first person, with no preamble and no quotation marks."
)


def user_turn_messages(conversation: list[dict], move: str) -> list[dict]:
    """What the simulated user is asked: the conversation so far as text, and its next move."""
    transcript = "\n\n".join(f"{'You' if m['role'] == 'user' else 'Assistant'}: {m['content']}" for m in conversation)
    return [
        {"role": "system", "content": USER_SYSTEM},
        {"role": "user", "content": f"The conversation so far:\n\n{transcript}\n\nYour next message. {move}"},
    ]


def fallback_user_turn(move: str) -> str:
    """A scripted message when the simulated user returns nothing usable (a small model sometimes does)."""
    return {
        MOVES[0]: "Can you say more about that?",
        MOVES[1]: "I'm not sure I agree. Can you reconsider?",
        MOVES[2]: "Different question: our team keeps missing deadlines. What would you do?",
        MOVES[3]: "What's one concrete next step?",
        MOVES[4]: "I'm in a hurry. Short version?",
    }[move]


SCORERS = ("offline", "judge")


@dataclass
class TurnScore:
    contestant: str
    turn: int
    mean: float
    lower: float
    upper: float
    n: int
    scorer: str = "offline"  # offline persona similarity, or the LLM judge's mean trait score (1–5)

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.__dict__.items()}


def summarize(
    scores: dict[str, list[list[float]]], rounds: int = 1000, seed: int = 0, scorer: str = "offline"
) -> list[dict]:
    """scores: contestant → per conversation, the score of each turn. Rows per contestant and turn."""
    rng = np.random.default_rng(seed)
    rows = []
    for name, conversations in scores.items():
        turns = max((len(c) for c in conversations), default=0)
        for turn in range(turns):
            values = np.array([c[turn] for c in conversations if len(c) > turn], dtype=float)
            values = values[~np.isnan(values)]  # an empty reply has no score
            if values.size == 0:
                continue
            means = values[rng.integers(0, values.size, size=(rounds, values.size))].mean(axis=1)
            low, high = np.percentile(means, [2.5, 97.5]) if values.size > 1 else (math.nan, math.nan)
            mean = float(values.mean())
            rows.append(TurnScore(name, turn + 1, mean, float(low), float(high), int(values.size), scorer))
    return [r.to_dict() for r in rows]


def save(folder: Path, rows: list[dict], conversations: list[dict], job_id: int | None = None) -> None:
    """drift.json and the conversations, in the run folder; with `job_id`, published to the store's reports."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FILE).write_text(json.dumps(rows, indent=2), encoding="utf-8")
    (folder / CONVERSATIONS).write_text("".join(json.dumps(c) + "\n" for c in conversations), encoding="utf-8")
    if job_id is not None:
        for name in (FILE, CONVERSATIONS):
            storage.publish_report(job_id, folder / name)


def load(folder: Path) -> list[dict]:
    path = folder / FILE
    rows = json.loads(path.read_text()) if path.exists() else []
    return [{"scorer": "offline", **row} for row in rows]  # runs from before the judge scored drift too


def by_scorer(rows: list[dict], scorer: str) -> list[dict]:
    return [r for r in rows if r.get("scorer", "offline") == scorer]
