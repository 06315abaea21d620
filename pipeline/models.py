"""Every table in the studio, in one place.

JSON columns hold structured values that are always read and written whole (a persona's
traits, a job's params). SQLAlchemy does not see in-place changes to them: assign a new value.
Schema changes go through an Alembic migration in pipeline/migrations/versions.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    """Aware UTC; SQLModel's UTCDateTime stores it on SQLite and PostgreSQL alike."""
    return datetime.now(UTC)


def _json(default_factory=dict) -> Any:
    return Field(default_factory=default_factory, sa_column=Column(JSON, nullable=False))


def _text(nullable: bool = False, default: str | None = "") -> Any:
    return Field(default=default, sa_column=Column(Text, nullable=nullable))


class Persona(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    description: str = ""
    system_prompt: str = _text()
    # [{"name", "description", "markers": [str, ...]}], validated by personas.TraitSpec
    traits: list[dict] = _json(list)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Job(SQLModel, table=True):
    """One long piece of work (generation, training, evaluation).

    Its status changes only through pipeline.jobs.states.transition (one conditional UPDATE each).
    """

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(index=True)
    name: str = ""
    status: str = Field(default="queued", index=True)  # queued → running → succeeded | failed | cancelled
    params: dict = _json(dict)
    progress_done: int = 0
    progress_total: int = 0
    progress_unit: str = "items"
    pid: int | None = None
    attempt: int = 0  # raised at each claim: what an earlier attempt left in its run folder is ignored
    executor: str = ""  # what runs the current attempt: "local" (the monitor's child) or "foreground" (a command line)
    heartbeat_at: datetime | None = None
    error: str | None = _text(nullable=True, default=None)
    message: str = ""  # the job's latest word on what it is doing
    exit_code: int | None = None
    metrics_offset: int = 0  # bytes of metrics.jsonl already ingested: a restarted monitor resumes here
    cancel_requested: bool = False
    started_by: str = ""
    cost_usd: float = 0.0
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None


class Example(SQLModel, table=True):
    """One training example, from generation or import, with its review state."""

    # a generation run's n-th example exists once: resuming or rerunning never duplicates it
    __table_args__ = (UniqueConstraint("job_id", "slot", name="uq_example_job_slot"),)

    id: int | None = Field(default=None, primary_key=True)
    persona_id: int = Field(foreign_key="persona.id", index=True, ondelete="CASCADE")
    job_id: int | None = Field(default=None, foreign_key="job.id", index=True, ondelete="SET NULL")
    slot: int | None = None  # its place in the generation run's coverage plan
    source: str = "generated"  # generated | imported
    scenario: dict = _json(dict)
    document_type: str = Field(default="", index=True)
    document_title: str = ""
    document: str = _text()
    response: str = _text()
    original_response: str | None = _text(nullable=True, default=None)
    messages: list[dict] = _json(list)
    traits_stressed: list[str] = _json(list)
    stage_models: dict = _json(dict)
    document_words: int = 0
    response_words: int = 0
    token_count: int = 0
    validation_issues: list[str] = _json(list)
    failure: str | None = _text(nullable=True, default=None)  # why generation failed, in plain words
    flags: list[str] = _json(list)  # for the reviewer, not failures: e.g. a near-duplicate of another example
    # the quality gate's reasons ("shouting: 62% of letters are capitals"); any: kept out of datasets by default
    quality_issues: list[str] = _json(list)
    usage: dict = _json(dict)  # per stage: prompt and completion tokens, cost
    # generating | cancelled (a stopped run left it unfinished) | pending | accepted | rejected | failed
    status: str = Field(default="pending", index=True)
    gold_star: bool = Field(default=False, index=True)
    rating: int | None = None
    # the last star, rating, accept or reject: who (the logged-in user or the typed name; "" when neither) and when
    reviewed_by: str = ""
    reviewed_at: datetime | None = None
    notes: str = _text()
    content_hash: str = Field(default="", index=True)
    created_at: datetime = Field(default_factory=utcnow)


# a generation run is still making it, or a run that stopped left it unfinished: not an example yet
UNFINISHED = ("generating", "cancelled")


def messages_hash(messages: list[dict]) -> str:
    """Example.content_hash: the same conversation always hashes the same, whatever made it."""
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()


def example_row(**values) -> dict:
    """An Example as a plain row for a Core `insert`, every default filled in.

    For bulk writes: building thousands of SQLModel objects costs pydantic about 1.6 ms each.
    """
    row = {
        "source": "generated", "scenario": {}, "document_type": "", "document_title": "", "document": "",
        "response": "", "messages": [], "traits_stressed": [], "stage_models": {}, "document_words": 0,
        "response_words": 0, "token_count": 0, "validation_issues": [], "flags": [], "quality_issues": [], "usage": {},
        "status": "pending", "gold_star": False, "notes": "", "content_hash": "", "created_at": utcnow(),
    }  # fmt: skip
    unknown = set(values) - set(Example.model_fields)
    if unknown:
        raise TypeError(f"Example has no field(s) {sorted(unknown)}")
    return row | values


class ExampleEdit(SQLModel, table=True):
    """Every edit of a response: who, when, before and after (feeds preference pairs)."""

    id: int | None = Field(default=None, primary_key=True)
    example_id: int = Field(foreign_key="example.id", index=True, ondelete="CASCADE")
    editor: str = ""
    before: str = _text()
    after: str = _text()
    at: datetime = Field(default_factory=utcnow)


class Dataset(SQLModel, table=True):
    """An immutable snapshot of examples, split and written to files."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    persona_id: int | None = Field(default=None, foreign_key="persona.id", ondelete="CASCADE")
    filter: dict = _json(dict)
    split: dict = _json(dict)
    include_system_prompt: bool = False
    files: dict = _json(dict)
    counts: dict = _json(dict)
    content_hash: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class TrainingMetric(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("job_id", "step", name="uq_metric_job_step"),)

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="job.id", index=True, ondelete="CASCADE")
    step: int
    epoch: float | None = None
    loss: float | None = None
    val_loss: float | None = None
    learning_rate: float | None = None
    tokens_per_s: float | None = None
    values: dict = _json(dict)
    at: datetime = Field(default_factory=utcnow)


class JobLogLine(SQLModel, table=True):
    """A line a job logged straight into the database: a job on another machine (a Ray node) has no run
    folder here to hold its log.txt. Written by jobs.ingest only; keys are masked before it is stored."""

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="job.id", index=True, ondelete="CASCADE")
    attempt: int = 0
    line: str = _text()
    at: datetime = Field(default_factory=utcnow)


class ModelEntry(SQLModel, table=True):
    """The registry: every model the studio can call, by its gateway reference."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    reference: str  # the gateway model string, e.g. local/my-adapter, openai/ft:...
    base_model: str = ""
    backend: str = ""  # embedded | local | together | openai | prompt
    persona_id: int | None = Field(default=None, foreign_key="persona.id", ondelete="SET NULL")
    job_id: int | None = Field(default=None, foreign_key="job.id", ondelete="SET NULL")
    dataset_id: int | None = Field(default=None, foreign_key="dataset.id", ondelete="SET NULL")
    status: str = "candidate"  # candidate | deployed | archived
    config: dict = _json(dict)
    metrics: dict = _json(dict)
    created_at: datetime = Field(default_factory=utcnow)


class PromptVersion(SQLModel, table=True):
    """A version of a persona's system prompt: the prompt-engineering baseline fine-tuning must beat."""

    __table_args__ = (UniqueConstraint("persona_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    persona_id: int = Field(foreign_key="persona.id", index=True, ondelete="CASCADE")
    version: int
    system_prompt: str = _text()
    source: str = ""  # "original", "edited", or the model that proposed it
    based_on: list[int] = _json(list)  # example ids it was proposed from
    notes: str = _text()
    created_by: str = ""
    active: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class DeploymentEvent(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    model_id: int = Field(foreign_key="modelentry.id", index=True, ondelete="CASCADE")
    persona_id: int | None = Field(default=None, foreign_key="persona.id", ondelete="SET NULL")
    action: str  # deploy | rollback | archive
    actor: str = ""
    notes: str = _text()
    config: dict = _json(dict)
    at: datetime = Field(default_factory=utcnow)


class EvalResponse(SQLModel, table=True):
    """One contestant's reply to one prompt of an evaluation run: made once, judged many times."""

    __table_args__ = (UniqueConstraint("job_id", "prompt_id", "contestant"),)

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="job.id", index=True, ondelete="CASCADE")
    prompt_id: int
    contestant: str
    text: str = _text()
    error: str | None = _text(nullable=True, default=None)  # the contestant failed here: its battles are missing
    latency_ms: int = 0
    completion_tokens: int = 0
    at: datetime = Field(default_factory=utcnow)


class Battle(SQLModel, table=True):
    """One judged comparison of two contestants on one prompt and criterion, in one presentation order.

    `verdict` always names the stored pair (a = contestant_a won), whichever side the judge saw it on;
    `order` says how it was shown ("ba": contestant_b's response came first, as "A").
    """

    id: int | None = Field(default=None, primary_key=True)
    job_id: int | None = Field(default=None, foreign_key="job.id", index=True, ondelete="SET NULL")
    prompt_id: int | None = None
    prompt: str = _text()
    prompt_group: str = ""
    contestant_a: str
    contestant_b: str
    response_a: str = _text()
    response_b: str = _text()
    judge: str = ""  # a gateway model, "human:<name>", or an offline judge
    criterion: str = "overall"
    verdict: str = ""  # a | b | tie | bothbad | unparsed | missing
    order: str = "ab"
    rationale: str = _text()
    cache_key: str = Field(default="", index=True)  # judge + criterion + order + texts: never asked twice
    at: datetime = Field(default_factory=utcnow)


class TraitScore(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    job_id: int | None = Field(default=None, foreign_key="job.id", index=True, ondelete="SET NULL")
    prompt_id: int | None = None
    contestant: str
    prompt: str = _text()
    trait: str
    score: float | None = None  # None: the judge's answer held no score
    judge: str = ""
    rationale: str = _text()
    cache_key: str = Field(default="", index=True)
    at: datetime = Field(default_factory=utcnow)


class LLMCall(SQLModel, table=True):
    """Every gateway call: what was asked, what answered, what it cost. Never the key."""

    id: int | None = Field(default=None, primary_key=True)
    purpose: str = Field(default="", index=True)  # playground | generation | judge | ...
    job_id: int | None = Field(default=None, foreign_key="job.id", index=True, ondelete="SET NULL")
    models_requested: list[str] = _json(list)
    model_used: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: int = 0
    cost_usd: float = 0.0
    cached: bool = False
    attempts: list[dict] = _json(list)  # [{"model", "error"}] for each model that failed before
    error: str | None = _text(nullable=True, default=None)
    at: datetime = Field(default_factory=utcnow, index=True)
