"""What the Evaluate, Arena and Leaderboard pages and `python -m pipeline evaluate` call."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from sqlmodel import select

from pipeline import access, jobs, limits, personas
from pipeline.datasets import build
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.evaluation import contestants as cs
from pipeline.evaluation import judge, prompts
from pipeline.llm import catalog
from pipeline.models import Battle, EvalResponse, Example, Job, ModelEntry
from pipeline.settings import EMBEDDED_MODEL

KIND = "evaluation"
VOTES = {"A": "a", "B": "b", "Tie": "tie", "Both bad": "bothbad"}


def model_choices() -> list[str]:
    """Every model a contestant can be: local models, added endpoints, providers with keys, the registry."""
    names = list(catalog.available_models())
    with session_scope() as session:
        names += [e.reference for e in session.exec(select(ModelEntry).order_by(ModelEntry.id)).all()]
    return list(dict.fromkeys(names))


def prompt_variants(persona_id: int) -> list[str]:
    """Contestant names of the persona's prompt-only variants in the registry (base model + a prompt version)."""
    from pipeline.registry import prompts as prompt_versions

    with session_scope() as session:
        rows = session.exec(
            select(ModelEntry).where(ModelEntry.backend == "prompt", ModelEntry.persona_id == persona_id)
        ).all()
    return [
        cs.Contestant(row.reference, prompt_versions.variant_mode(row)).name for row in rows if row.status != "archived"
    ]


def judge_choices() -> list[str]:
    """The offline judge first (no key needed), then every model that is not local (too small to judge)."""
    return ["offline"] + [m for m in catalog.available_models() if not m.startswith("local/")]


def drift_user_choices() -> list[str]:
    """Models that can play the simulated user in persona drift: the built-in one first, then the rest."""
    models = catalog.available_models()
    return [EMBEDDED_MODEL] + [m for m in models if m != EMBEDDED_MODEL]


def judge_note() -> str | None:
    """What to do to get an LLM judge, when no model that could judge is configured; None otherwise."""
    if len(judge_choices()) > 1:
        return None
    return (
        "An LLM judge needs a provider key (ANTHROPIC_API_KEY, OPENAI_API_KEY or TOGETHER_API_KEY) in "
        ".streamlit/secrets.toml or the environment the studio starts with. Without one, the offline judge "
        "and your own votes in the Arena still rate the models."
    )


def generation_models(persona_id: int) -> list[str]:
    with session_scope() as session:
        stages = session.exec(select(Example.stage_models).where(Example.persona_id == persona_id).limit(200)).all()
    return sorted({m for row in stages for m in (row or {}).values() if isinstance(m, str)})


@dataclass
class Plan:
    persona_id: int
    contestants: list[str]
    anchor: str
    judge: str
    prompt_set: prompts.PromptSet
    dataset: str | None
    max_battles: int
    max_cost: float
    target_width: float
    criteria_traits: bool
    trait_scores: bool
    max_tokens: int
    warnings: list[str] = field(default_factory=list)
    drift_turns: int = 0  # persona drift: turns per simulated conversation (0: not measured)
    drift_prompts: int = 2
    drift_user: str = ""  # the model playing the user in drift conversations; empty: the built-in one

    @property
    def pairs(self) -> int:
        n = len(self.contestants)
        return n * (n - 1) // 2

    @property
    def possible_battles(self) -> int:
        return self.pairs * len(self.prompt_set.prompts)

    def judge_calls(self) -> int:
        """Calls at most: two orders per criterion per battle, plus trait scores of the replies judged."""
        if self.judge == "offline":
            return 0
        persona = personas.get_persona(self.persona_id)
        criteria = 1 + (len(persona.traits) if self.criteria_traits else 0)
        battles = min(self.max_battles, self.possible_battles)
        scores = min(2 * battles, len(self.contestants) * len(self.prompt_set.prompts)) * len(persona.traits)
        # persona drift: the judge scores every reply of every simulated conversation on each trait
        drift = self.drift_prompts * len(self.contestants) * self.drift_turns * len(persona.traits)
        return battles * 2 * criteria + (scores if self.trait_scores else 0) + (drift if self.drift_turns > 1 else 0)

    def replies(self) -> int:
        return len(self.contestants) * len(self.prompt_set.prompts)

    def params(self) -> dict:
        return {
            "persona_id": self.persona_id,
            "contestants": self.contestants,
            "anchor": self.anchor,
            "judge": self.judge,
            "prompts": self.prompt_set.to_json(),
            "dataset": self.dataset,
            "max_battles": self.max_battles,
            "max_cost": self.max_cost,
            "target_width": self.target_width,
            "criteria_traits": self.criteria_traits,
            "trait_scores": self.trait_scores,
            "max_tokens": self.max_tokens,
            "drift_turns": self.drift_turns,
            "drift_prompts": self.drift_prompts,
            "drift_user": self.drift_user,
        }


def plan(
    *,
    persona: str | int,
    contestants: list[str],
    judge_model: str = "offline",
    dataset: str | None = None,
    custom_prompts: list[str] = (),
    adversarial: bool = True,
    keep_going: bool = True,
    held_out_limit: int = 12,
    max_battles: int = 60,
    max_cost: float = 0.0,
    target_width: float = 0.0,
    criteria_traits: bool = True,
    trait_scores: bool = True,
    max_tokens: int = 256,
    anchor: str | None = None,
    drift_turns: int = 0,
    drift_prompts: int = 2,
    drift_user: str = "",
) -> Plan:
    """Everything checked before any call: contestants, prompts (and their overlap with training), judge."""
    found = personas.get_persona(persona)
    chosen = list(dict.fromkeys(cs.Contestant.parse(c).name for c in contestants if c and c.strip()))
    if len(chosen) < 2:
        raise UserFacingError("Choose at least two contestants: a rating compares models with each other.")
    parsed = [cs.Contestant.parse(c) for c in chosen]
    tuned = cs.fine_tuned_models()
    training = [build.get_dataset(dataset).name] if dataset else []
    with session_scope() as session:
        for contestant in parsed:
            entry = tuned.get(contestant.model)
            if entry is not None and entry.dataset_id:
                from pipeline.models import Dataset

                trained_on = session.get(Dataset, entry.dataset_id)
                if trained_on is not None:
                    training.append(trained_on.name)
    prompt_set = prompts.build_set(
        dataset=dataset,
        training_datasets=training,
        custom=[prompts.check(p, f"Custom prompt {i}") for i, p in enumerate(custom_prompts, 1)],
        adversarial=adversarial,
        keep_going=keep_going,
        limit=held_out_limit,
    )
    warnings = []
    if prompt_set.dropped:
        warnings.append(f"{len(prompt_set.dropped)} held-out prompt(s) left out: too similar to a training example.")
    if judge_model != "offline":
        warning = judge.same_family_warning(judge_model, generation_models(found.id))
        if warning:
            warnings.append(warning)
    if max_battles < 1:
        raise UserFacingError("The battle budget must be at least 1.")
    if drift_turns and not 2 <= drift_turns <= 20:
        raise UserFacingError("A drift conversation has 2 to 20 turns (or 0 to leave the drift measure out).")
    anchor_name = cs.Contestant.parse(anchor).name if anchor else cs.anchor(parsed)
    if anchor_name not in chosen:
        raise UserFacingError(f"The base contestant {anchor_name!r} is not among the contestants.")
    return Plan(
        found.id,
        chosen,
        anchor_name,
        judge_model,
        prompt_set,
        dataset,
        max_battles,
        max_cost,
        target_width,
        criteria_traits,
        trait_scores,
        max_tokens,
        warnings,
        drift_turns,
        max(1, drift_prompts),
        drift_user.strip(),
    )


def start(evaluation: Plan, name: str = "", run_here: bool = False) -> Job:
    """Queue the evaluation for the background worker, or with `run_here` claim it for this process."""
    access.check("evaluate")
    persona = personas.get_persona(evaluation.persona_id)
    label = name or f"{persona.name}: {len(evaluation.contestants)} contestants, {evaluation.judge} judge"
    return jobs.submit(KIND, evaluation.params(), name=label, run_here=run_here)


def runs(limit: int = 50) -> list[Job]:
    with session_scope() as session:
        rows = session.exec(select(Job).where(Job.kind == KIND).order_by(Job.id.desc()).limit(limit)).all()
    return list(rows)


# --- the arena: blind human votes ------------------------------------------------------------------


@dataclass
class Match:
    job_id: int
    prompt_id: int
    prompt: str
    group: str
    left: str  # contestant shown as A
    right: str  # contestant shown as B
    left_text: str
    right_text: str


def next_match(job_id: int, voter: str, seed: int | None = None) -> Match | None:
    """A random prompt and pair both answered, preferring what this voter has not voted on yet."""
    voter = access.actor(voter).strip()  # with a login, the logged-in name
    with session_scope() as session:
        job = session.get(Job, job_id)
        replies = session.exec(
            select(EvalResponse).where(EvalResponse.job_id == job_id, EvalResponse.error.is_(None))
        ).all()
        voted = session.exec(
            select(Battle.prompt_id, Battle.contestant_a, Battle.contestant_b).where(
                Battle.job_id == job_id, Battle.judge == f"human:{voter}"
            )
        ).all()
    if job is None:
        raise UserFacingError(f"There is no evaluation run {job_id}.")
    prompt_set = prompts.PromptSet.from_json(job.params.get("prompts", [])).by_id()
    by_prompt: dict[int, dict[str, str]] = {}
    for reply in replies:
        if reply.text:
            by_prompt.setdefault(reply.prompt_id, {})[reply.contestant] = reply.text
    seen = {(p, *sorted((a, b))) for p, a, b in voted}
    options = [(p, a, b) for p, texts in by_prompt.items() for a in texts for b in texts if a < b and p in prompt_set]
    if not options:
        return None
    rng = random.Random(seed)
    fresh = [o for o in options if o not in seen]
    prompt_id, a, b = rng.choice(fresh or options)
    if rng.random() < 0.5:
        a, b = b, a
    prompt = prompt_set[prompt_id]
    texts = by_prompt[prompt_id]
    return Match(job_id, prompt_id, prompt.shown(), prompt.group, a, b, texts[a], texts[b])


def vote(match: Match, choice: str, voter: str) -> Battle:
    """Record a vote: A, B, Tie or Both bad, by a named voter, as a battle the ratings can use."""
    voter = limits.no_nul(access.actor(voter), "Your name").strip()  # with a login, the logged-in name
    if not voter:
        raise UserFacingError("Type your name first: votes are counted per person.")
    if choice not in VOTES:
        raise UserFacingError(f"A vote is one of {', '.join(VOTES)}.")
    battle = Battle(
        job_id=match.job_id,
        prompt_id=match.prompt_id,
        prompt=match.prompt,
        prompt_group=match.group,
        contestant_a=match.left,
        contestant_b=match.right,
        response_a=match.left_text,
        response_b=match.right_text,
        judge=f"human:{voter}",
        verdict=VOTES[choice],
        order="ab",
    )
    with session_scope() as session:
        session.add(battle)
        session.flush()
        session.refresh(battle)
    return battle


def votes(job_id: int) -> int:
    with session_scope() as session:
        rows = session.exec(select(Battle.id).where(Battle.job_id == job_id, Battle.judge.like("human:%"))).all()
    return len(rows)
