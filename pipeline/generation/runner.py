"""Running a generation: every example's slot exists before work starts, each stage's output is
saved the moment it lands, at most `concurrency` examples are in flight, and a stopped run picks
up where it was. An item that fails records why and the run goes on.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, fields

from sqlalchemy import case, delete, insert, update
from sqlmodel import func, select

from pipeline import embeddings, personas
from pipeline.datasets import tokens
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.generation import prompts, quality, validate
from pipeline.generation.config import GenerationConfig
from pipeline.generation.plan import Slot, coverage_plan
from pipeline.llm import ChatResult, achat, catalog
from pipeline.models import UNFINISHED, Example, Persona, example_row, messages_hash

STAGES = ("scenario", "document", "response")
FINISHED = ("pending", "failed")  # generated (awaiting review) or given up on, with a reason


@dataclass(frozen=True)
class PersonaBrief:
    id: int
    name: str
    system_prompt: str
    traits: list[dict]


def prepare(config: GenerationConfig) -> PersonaBrief:
    """Everything that can be wrong before a single call: say so now, in plain words."""
    if config.persona_id is not None:
        persona = personas.get_persona(config.persona_id)
        if not persona.traits:
            raise UserFacingError(
                f"Persona {persona.name!r} has no traits. Add at least one on the Personas page: "
                "generation stresses one trait per example."
            )
    else:
        persona = _prompt_persona(config.system_prompt or "")
    for stage, chain in config.chains().items():
        resolved = [catalog.resolve(model) for model in chain]  # unknown names raise here
        if not any(r.configured for r in resolved):
            needs = ", ".join(sorted({r.missing for r in resolved}))
            raise UserFacingError(f"No model for the {stage} stage is configured: {needs}, or add the embedded model.")
    return PersonaBrief(persona.id, persona.name, persona.system_prompt, list(persona.traits))


def _prompt_persona(system_prompt: str) -> Persona:
    """A system prompt given without a persona is stored as one, so its examples can be reviewed."""
    name = f"prompt {hashlib.sha256(system_prompt.encode()).hexdigest()[:8]}"
    try:
        return personas.get_persona(name)
    except UserFacingError:
        return personas.create_persona(
            {
                "name": name,
                "system_prompt": system_prompt,
                "description": "From a system prompt given on the command line.",
            }
        )


def ensure_slots(job_id: int, persona: PersonaBrief, config: GenerationConfig) -> list[int]:
    """Create the examples the plan calls for, once. Returns the ids still to be worked on."""
    plan = coverage_plan(persona.traits, config.document_types, config.examples, config.seed)
    with session_scope() as session:
        existing = dict(session.exec(select(Example.slot, Example.status).where(Example.job_id == job_id)).all())
        missing = [
            example_row(
                persona_id=persona.id,
                job_id=job_id,
                slot=slot.index,
                status="generating",
                scenario=slot.as_scenario(),
                document_type=slot.document_type,
                traits_stressed=[slot.trait],
            )
            for slot in plan
            if slot.index not in existing
        ]
        if missing:  # Core insert: a 10,000-example plan as objects would cost pydantic ~16 s
            session.execute(insert(Example), missing)
        # resumed: what a stopped run left unfinished is being made again
        session.execute(
            update(Example).where(Example.job_id == job_id, Example.status == "cancelled").values(status="generating")
        )
        # a failed item gets a fresh try on resume: most failures are a provider's bad moment
        query = select(Example.id).where(Example.job_id == job_id, Example.status.in_(("generating", "failed")))
        return sorted(session.exec(query).all())


def mark_cancelled(job_id: int) -> int:
    """A run that stops leaves its unfinished examples "cancelled": out of counts, never reviewable as
    if finished, deletable; resuming the run takes them up again. Returns how many."""
    with session_scope() as session:
        result = session.execute(
            update(Example).where(Example.job_id == job_id, Example.status == "generating").values(status="cancelled")
        )
        return result.rowcount or 0


def delete_cancelled(job_id: int) -> int:
    """Delete a stopped run's unfinished examples (a resume would plan them afresh). Returns how many."""
    with session_scope() as session:
        result = session.execute(delete(Example).where(Example.job_id == job_id, Example.status == "cancelled"))
        return result.rowcount or 0


def _save(example_id: int, **fields) -> Example:
    with session_scope() as session:
        example = session.get(Example, example_id)
        for key, value in fields.items():
            setattr(example, key, value)
        session.add(example)
        session.flush()
        session.refresh(example)
    return example


def _landed(example: Example, stage: str, result: ChatResult, **fields) -> Example:
    """Save a stage's output the moment it lands, with the model that made it and what it cost."""
    return _save(
        example.id,
        stage_models={**example.stage_models, stage: result.model_used},
        usage=_usage(example, stage, result),
        **fields,
    )


def _usage(example: Example, stage: str, result: ChatResult) -> dict:
    return {
        **example.usage,
        stage: {
            "model": result.model_used,
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "cost_usd": result.cost_usd,
        },
    }


class IdeaRegistry:
    """The run's scenario ideas, embedded, so a near-copy of one can be caught as it is made.

    Ideas that land together are embedded together: one batch of sixteen costs about what four
    single ones do, and the embedding runs off the event loop so calls in flight keep moving.
    """

    THRESHOLD = 0.93  # distinct ideas in one setting reach ~0.91; a model repeating itself scores higher
    WINDOW_S = 0.005  # how long the first idea waits for others landing with it

    def __init__(self, job_id: int):
        with session_scope() as session:
            rows = session.exec(select(Example).where(Example.job_id == job_id, Example.document_title != ""))
            self.ideas = {e.id: f"{e.document_title}. {e.scenario.get('situation', '')}" for e in rows}
        self.vectors = dict(zip(self.ideas, embeddings.embed(list(self.ideas.values())), strict=True))
        self._waiting: list[tuple[int, str, asyncio.Future]] = []

    async def twin(self, example_id: int, idea: str) -> tuple[int, str] | None:
        """The other example whose idea this one nearly repeats; otherwise record it and return None."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((example_id, idea, future))
        if len(self._waiting) == 1:
            asyncio.get_running_loop().create_task(self._embed_waiting())
        return await future

    async def _embed_waiting(self) -> None:
        await asyncio.sleep(self.WINDOW_S)
        batch, self._waiting = self._waiting, []
        try:
            vectors = await asyncio.to_thread(embeddings.embed, [idea for _, idea, _ in batch])
        except Exception as exc:  # noqa: BLE001 - each waiting idea gets the error
            for *_, future in batch:
                future.set_exception(exc)
            return
        # checked one by one in arrival order: two near-copies in the same batch still catch each other
        for (example_id, idea, future), vector in zip(batch, vectors, strict=True):
            future.set_result(self._check_and_record(example_id, idea, vector))

    def _check_and_record(self, example_id: int, idea: str, vector) -> tuple[int, str] | None:
        for other, seen in self.vectors.items():
            if other != example_id and float(vector @ seen) >= self.THRESHOLD:
                return other, self.ideas[other]
        self.ideas[example_id], self.vectors[example_id] = idea, vector
        return None


class Generation:
    def __init__(
        self,
        job_id: int,
        config: GenerationConfig,
        persona: PersonaBrief,
        cancelled: Callable[[], bool] = lambda: False,
        on_item_done: Callable[[Example], None] = lambda example: None,
        on_stage_done: Callable[[str, Example], None] = lambda stage, example: None,
    ):
        self.job_id, self.config, self.persona = job_id, config, persona
        self.cancelled, self.on_item_done, self.on_stage_done = cancelled, on_item_done, on_stage_done
        self.ideas = IdeaRegistry(job_id)
        self.gate = quality.Gate(persona.name, persona.traits)

    async def run(self) -> None:
        todo = ensure_slots(self.job_id, self.persona, self.config)
        gate = asyncio.Semaphore(self.config.concurrency)

        async def one(example_id: int) -> None:
            async with gate:
                if self.cancelled():
                    return
                example = await self.process(example_id)
                if example is not None:
                    self.on_item_done(example)

        try:
            await asyncio.gather(*(one(example_id) for example_id in todo))
        finally:  # stopped, crashed or done: nothing stays "generating" once no run is making it
            mark_cancelled(self.job_id)

    async def _scenario(self, slot: Slot, example_id: int) -> tuple[ChatResult, str, str]:
        """A scenario idea unlike the run's others: a near-copy is asked for again once, then dropped."""
        avoid = None
        for _attempt in range(2):
            messages = prompts.scenario_messages(slot, avoid=avoid)
            result = await self._ask("scenario", messages, 200)
            parsed = prompts.parse_scenario(result.text, slot)
            if parsed is None:
                raise UserFacingError(f"the scenario answer could not be read: {result.text[:160]!r}")
            title, situation = parsed
            twin = await self.ideas.twin(example_id, f"{title}. {situation}")
            if twin is None:
                return result, title, situation
            avoid = twin[1]
        raise UserFacingError(f"dropped: its idea nearly repeats example {twin[0]}'s ({twin[1][:80]!r})")

    async def _ask(self, stage: str, messages: list[dict], max_tokens: int) -> ChatResult:
        return await achat(
            messages,
            self.config.chains()[stage],
            temperature=self.config.temperature,
            max_tokens=max_tokens,
            timeout=self.config.timeout_s,
            purpose=f"generation:{stage}",
            job_id=self.job_id,
        )

    async def process(self, example_id: int) -> Example | None:
        """Take one example through whatever stages it still needs. None when stopped by a cancel."""
        with session_scope() as session:
            example = session.get(Example, example_id)
        slot = Slot(**{f.name: example.scenario[f.name] for f in fields(Slot)})
        stage = "scenario"
        try:
            if not example.document_title:
                result, title, situation = await self._scenario(slot, example_id)
                example = _landed(
                    example,
                    "scenario",
                    result,
                    document_title=title,
                    scenario={**example.scenario, "title": title, "situation": situation},
                )
                self.on_stage_done("scenario", example)
            stage = "document"
            if self.cancelled():
                return None
            if not example.document:
                low, high = self.config.document_words
                result = await self._ask(
                    "document",
                    prompts.document_messages(
                        slot, example.document_title, example.scenario.get("situation", ""), (low, high)
                    ),
                    int(high * 1.6),
                )
                example = _landed(
                    example, "document", result, document=result.text, document_words=validate.words(result.text)
                )
                self.on_stage_done("document", example)
            stage = "response"
            if self.cancelled():
                return None
            if not example.response:
                user_turn = prompts.response_request(example.document_title, example.document)
                result = await self._ask(
                    "response",
                    prompts.response_messages(
                        self.persona.system_prompt, self.persona.traits, user_turn, self.config.response_words
                    ),
                    int(self.config.response_words * 1.8),
                )
                example = _landed(
                    example, "response", result, response=result.text, response_words=validate.words(result.text)
                )
                self.on_stage_done("response", example)
        except UserFacingError as exc:
            return _save(example_id, status="failed", failure=f"{stage} stage: {exc}")
        return await self._finish(example)

    async def _finish(self, example: Example) -> Example:
        user_turn = prompts.response_request(example.document_title, example.document)
        messages = prompts.training_messages(
            self.persona.system_prompt, user_turn, example.response, self.config.include_system_prompt
        )
        record = {
            "document": example.document,
            "response": example.response,
            "messages": messages,
            "metadata": {
                "document_type": example.document_type,
                "title": example.document_title,
                "domain": example.scenario.get("domain"),
                "trait": ", ".join(example.traits_stressed),
            },
        }
        issues = validate.check(record, self.config.min_document_words, self.config.min_response_words)
        digest = messages_hash(messages)
        # the quality gate: a flagged reply stays reviewable, with its reasons, and is left out of datasets
        gated = [] if issues else await self.gate.acheck(example.document, example.response, self.job_id)
        return _save(
            example.id,
            messages=messages,
            validation_issues=issues,
            quality_issues=gated,
            content_hash=digest,
            token_count=tokens.count_cl100k([messages])[0],
            status="failed" if issues else "pending",
            failure=("validation: " + "; ".join(issues)) if issues else None,
        )


@dataclass(frozen=True)
class StageProgress:
    """How far a run is, stage by stage: outputs landed, of the examples planned."""

    scenario: int
    document: int
    response: int
    finished: int  # pending or failed: nothing more will be made for it
    failed: int
    cancelled: int
    total: int

    def summary(self) -> str:
        """e.g. "scenarios 6/6 · documents 3/6 · responses 0/6 · 1 failed"."""
        parts = [f"{name} {getattr(self, stage)}/{self.total}" for stage, name in zip(STAGES, STAGE_NAMES, strict=True)]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.cancelled:
            parts.append(f"{self.cancelled} cancelled")
        return " · ".join(parts)


STAGE_NAMES = ("scenarios", "documents", "responses")


def stage_progress(job_id: int) -> StageProgress:
    """Counted by the database in one query, so it can be asked after every stage of every example."""

    def landed(column) -> object:
        return func.coalesce(func.sum(case((column != "", 1), else_=0)), 0)

    def with_status(*statuses: str) -> object:
        return func.coalesce(func.sum(case((Example.status.in_(statuses), 1), else_=0)), 0)

    with session_scope() as session:
        row = session.exec(
            select(
                landed(Example.document_title),
                landed(Example.document),
                landed(Example.response),
                with_status(*FINISHED),
                with_status("failed"),
                with_status("cancelled"),
                func.count(),
            ).where(Example.job_id == job_id)
        ).one()
    return StageProgress(*(int(v) for v in row))


def progress(job_id: int) -> tuple[int, int, int]:
    """(finished, failed, total) examples of a run."""
    with session_scope() as session:  # counted by the database: called after every item, on runs of thousands
        counts = dict(
            session.exec(
                select(Example.status, func.count()).where(Example.job_id == job_id).group_by(Example.status)
            ).all()
        )
    return (sum(counts.get(s, 0) for s in FINISHED), counts.get("failed", 0), sum(counts.values()))


def gate_counts(job_id: int) -> dict:
    """What the quality gate caught in a run: {"flagged": n, "by_check": {check: n}} over its finished replies."""
    with session_scope() as session:
        issues = session.exec(
            select(Example.quality_issues).where(Example.job_id == job_id, Example.status.not_in(UNFINISHED))
        ).all()
    return {"flagged": sum(bool(i) for i in issues), "by_check": quality.counts(issues)}
