"""The `evaluation` job kind: replies from every contestant, then judging, adaptively, within a budget.

1. Every contestant answers every prompt once (saved as each lands; a resumed job skips them).
2. Persona likelihood and prompt fidelity for local contestants (offline, cheap, always).
3. Battles: each pair on a few prompts first, then judging effort goes where ratings still overlap
   (`ratings.next_pairs`), until the order is separated, every interval is narrow enough, or the
   battle or cost budget is spent. A judgement already made (same judge, criterion, order and
   texts, in any run) is copied, never asked again.
4. Trait scores (LLM judge): each reply that took part in a battle, 1–5 per trait.
5. The report files, and each registered model's quality figures.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import random
from dataclasses import dataclass

from sqlmodel import select

from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.evaluation import contestants as cs
from pipeline.evaluation import drift, fidelity, judge, leaderboard, offline, ratings, report, results
from pipeline.evaluation.prompts import Prompt, PromptSet
from pipeline.jobs.context import JobContext
from pipeline.llm import embedded, gateway
from pipeline.models import Battle, EvalResponse, Example, Persona, TraitScore
from pipeline.settings import EMBEDDED_MODEL

TRANSIENT = (
    "RateLimitError",
    "Timeout",
    "APIConnectionError",
    "InternalServerError",
    "ServiceUnavailable",
    "BadGatewayError",
)
FIRST_ROUND = 2  # prompts per pair before adaptive sampling takes over
CHECK_ROUNDS = 200  # bootstrap rounds while deciding where to judge next (the report uses 1,000)


def run(ctx: JobContext, params: dict) -> dict:
    evaluation = Evaluation(ctx, params)
    return asyncio.run(evaluation.run())


@dataclass
class Settings:
    persona_id: int
    contestants: list[str]
    anchor: str
    judge: str  # "offline" or a gateway model
    prompts: list[dict]
    max_battles: int = 60
    max_cost: float = 0.0  # dollars; 0 = no cost limit
    target_width: float = 0.0  # Elo points; 0 = only stop when separated or out of budget
    criteria_traits: bool = True
    trait_scores: bool = True
    max_tokens: int = 256
    temperature: float = 0.7
    concurrency: int = 4
    seed: int = 0
    dataset: str | None = None
    drift_turns: int = 0  # 0: no drift measure; else turns per conversation (the opening one included)
    drift_prompts: int = 2  # openings the simulated user continues
    drift_user: str = ""  # the simulated user's model; empty: the built-in one

    @classmethod
    def load(cls, params: dict) -> Settings:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in params.items() if k in known})


class Evaluation:
    def __init__(self, ctx: JobContext, params: dict):
        self.ctx = ctx
        self.settings = Settings.load(params)
        self.prompts = PromptSet.from_json(self.settings.prompts).by_id()
        self.contestants = [cs.Contestant.parse(name) for name in self.settings.contestants]
        with session_scope() as session:
            self.persona = session.get(Persona, self.settings.persona_id)
        if self.persona is None:
            raise UserFacingError("The persona of this evaluation no longer exists.")
        self.offline = self.settings.judge == "offline"
        self.judge_name = offline.SIMILARITY_JUDGE if self.offline else self.settings.judge
        self.criteria = [] if self.offline else judge.criteria(self.persona, self.settings.criteria_traits)
        self.cost = 0.0
        self.replies: dict[tuple[int, str], EvalResponse] = {}

    # --- 1. replies ------------------------------------------------------------------------------

    async def run(self) -> dict:
        await self.collect_replies()
        if self.ctx.cancelled():
            return {}
        self.likelihoods()
        self.fidelities()
        await self.battles()
        if not self.ctx.cancelled() and self.settings.trait_scores and not self.offline:
            await self.score_traits()
        if not self.ctx.cancelled() and self.settings.drift_turns > 1:
            await self.drift()
        paths = report.write(self.ctx.job_id, self.ctx.folder)
        report.update_registry(self.ctx.job_id)
        headline = leaderboard.board(self.ctx.job_id).headline()  # the Leaderboard's own figure, as Home shows it
        judged = leaderboard.battle_count(self.ctx.job_id, "judge")  # battles, as every page counts them
        self.ctx.report_progress(judged, judged, unit="battles", message=headline)
        self.ctx.log(f"wrote {paths['json'].name}, {paths['markdown'].name} and {paths['html'].name}")
        return {k: str(v) for k, v in paths.items()}

    def _load_replies(self) -> None:
        with session_scope() as session:
            rows = session.exec(select(EvalResponse).where(EvalResponse.job_id == self.ctx.job_id)).all()
        self.replies = {(r.prompt_id, r.contestant): r for r in rows}

    async def collect_replies(self) -> None:
        self._load_replies()
        few_shot = cs.few_shot_messages(self.persona.id, {p.text for p in self.prompts.values()})
        total = len(self.prompts) * len(self.contestants)
        gate = asyncio.Semaphore(self.settings.concurrency)

        async def one(prompt: Prompt, contestant: cs.Contestant) -> None:
            if (prompt.id, contestant.name) in self.replies or self.ctx.cancelled():
                return
            first = None
            if prompt.parent is not None:
                parent = self.replies.get((prompt.parent, contestant.name))
                first = parent.text if parent and not parent.error else None
            row = EvalResponse(job_id=self.ctx.job_id, prompt_id=prompt.id, contestant=contestant.name)
            if prompt.parent is not None and first is None:
                row.error = "its first-turn reply failed, so there is no second turn"
            else:
                messages = cs.messages_for(contestant, self.persona, prompt.conversation(first), few_shot)
                async with gate:
                    try:
                        result = await gateway.achat(
                            messages,
                            contestant.model,
                            temperature=self.settings.temperature,
                            max_tokens=self.settings.max_tokens,
                            purpose="evaluation",
                            job_id=self.ctx.job_id,
                            seed=self.settings.seed,
                        )
                        row.text, row.latency_ms = result.text.strip(), result.latency_ms
                        row.completion_tokens = result.completion_tokens
                        self.cost += result.cost_usd
                        if not row.text:
                            row.error = "an empty reply"
                    except UserFacingError as exc:
                        row.error = str(exc)[:500]
            with session_scope() as session:
                session.add(row)
                session.flush()
                session.refresh(row)
            self.replies[(prompt.id, contestant.name)] = row
            if row.error:
                self.ctx.log(f"{contestant.name} on prompt {prompt.id}: {row.error}")
            self.ctx.report_progress(len(self.replies), total, unit="replies", message=f"replies: {contestant.name}")

        firsts = [p for p in self.prompts.values() if p.parent is None]
        seconds = [p for p in self.prompts.values() if p.parent is not None]
        for batch in (firsts, seconds):  # a second turn needs its first
            await asyncio.gather(*(one(p, c) for p in batch for c in self.contestants))
        self.ctx.report_progress(len(self.replies), total, unit="replies", message="replies ready")

    # --- 2. persona likelihood --------------------------------------------------------------------

    def likelihoods(self) -> None:
        held = [p for p in self.prompts.values() if p.reference and p.group == "held-out"]
        local = [c for c in self.contestants if c.model.startswith("local/")]
        if not held or not local:
            return
        self.ctx.report_progress(0, len(local), unit="models", message="persona likelihood of held-out replies")
        found = []
        for done, contestant in enumerate(local, start=1):
            loaded = embedded.load(contestant.model.removeprefix("local/"))
            conversations = [
                (cs.messages_for(contestant, self.persona, p.conversation(), []), p.reference) for p in held
            ]
            found.append(offline.persona_likelihood(contestant.name, loaded, conversations).to_dict())
            self.ctx.report_progress(done, len(local), unit="models", message=f"likelihood: {contestant.name}")
        report.save_likelihood(self.ctx.folder, found, self.ctx.job_id)

    def fidelities(self) -> None:
        """Prompt fidelity of every local contestant against its base model with the persona's prompt."""
        held = [p for p in self.prompts.values() if p.group == "held-out" and p.parent is None]
        held = held[: fidelity.PROMPTS]
        local = [c for c in self.contestants if c.model.startswith("local/")]
        if not held or not local or not self.persona.system_prompt.strip():
            return
        by_base: dict[str, list[cs.Contestant]] = {}
        for contestant in local:
            by_base.setdefault(fidelity.base_of(contestant.model.removeprefix("local/")), []).append(contestant)
        self.ctx.report_progress(0, len(local), unit="models", message="prompt fidelity on held-out prompts")
        found, done = [], 0
        for base, members in by_base.items():
            conversations = [p.conversation() for p in held]
            replies = self._prompted_replies(base, held) or fidelity.teacher_replies(
                base, self.persona.system_prompt, conversations, self.settings.seed
            )
            students = {
                c.name: (
                    c.model.removeprefix("local/"),
                    [cs.messages_for(c, self.persona, v, []) for v in conversations],
                )
                for c in members
            }
            found += [
                f.to_dict()
                for f in fidelity.measure(base, self.persona.system_prompt, conversations, replies, students)
            ]
            done += len(members)
            self.ctx.report_progress(done, len(local), unit="models", message=f"prompt fidelity: local/{base}")
        report.save_fidelity(self.ctx.folder, found, self.ctx.job_id)

    def _prompted_replies(self, base: str, held: list[Prompt]) -> list[str] | None:
        """The prompted base's replies this run already has (the contestant "local/BASE + prompt"), if all are there."""
        name = cs.Contestant(f"local/{base}", "prompt").name
        found = [self.replies.get((p.id, name)) for p in held]
        if all(r is not None and not r.error and r.text.strip() for r in found):
            return [r.text for r in found]
        return None

    # --- 3. battles -------------------------------------------------------------------------------

    def _pairs(self) -> list[tuple[str, str]]:
        names = [c.name for c in self.contestants]
        return list(itertools.combinations(names, 2))

    def _ready(self, prompt_id: int, name: str) -> bool:
        reply = self.replies.get((prompt_id, name))
        return reply is not None and not reply.error

    async def battles(self) -> None:
        rows = results.battles(self.ctx.job_id)
        done = {(r.contestant_a, r.contestant_b, r.prompt_id) for r in rows if not r.judge.startswith("human:")}
        order = sorted(self.prompts)
        random.Random(self.settings.seed).shuffle(order)
        queue: dict[tuple[str, str], list[int]] = {}
        for pair in self._pairs():
            missing = [p for p in order if not (self._ready(p, pair[0]) and self._ready(p, pair[1]))]
            for prompt_id in missing:
                if (*pair, prompt_id) not in done:
                    self._save_missing(pair, prompt_id)
            queue[pair] = [p for p in order if p not in missing and (*pair, p) not in done]
        judged = len(
            {
                (r.contestant_a, r.contestant_b, r.prompt_id)
                for r in rows
                if r.verdict != "missing" and not r.judge.startswith("human:")
            }
        )
        similarity = self._similarity_judge() if self.offline else None
        budget = self.settings.max_battles
        while judged < budget and not self.ctx.cancelled():
            if self.settings.max_cost and self.cost >= self.settings.max_cost:
                self.ctx.log(f"cost budget of ${self.settings.max_cost:.2f} reached")
                break
            remaining = {pair: len(q) for pair, q in queue.items() if q}
            if not remaining:
                break
            chosen = self._choose(remaining)
            if not chosen:
                break
            chosen = chosen[: max(1, min(self.settings.concurrency, budget - judged))]
            units = [(pair, queue[pair].pop(0)) for pair in chosen]
            await asyncio.gather(*(self._judge_unit(pair, prompt_id, similarity) for pair, prompt_id in units))
            judged += len(units)
            self.ctx.report_progress(
                judged, budget, unit="battles", message=f"battles judged · ${self.cost:.4f} spent on calls"
            )

    def _choose(self, remaining: dict[tuple[str, str], int]) -> list[tuple[str, str]]:
        """A first round for every pair, then where the intervals still overlap."""
        outcomes = results.outcomes(self.ctx.job_id, source="judge")
        counts: dict[tuple[str, str], int] = {}
        for o in outcomes:
            counts[(o.a, o.b)] = counts.get((o.a, o.b), 0) + 1
        young = [pair for pair in remaining if counts.get(pair, 0) < FIRST_ROUND]
        if young:
            return sorted(young, key=lambda p: counts.get(p, 0))
        rated = results.rated(outcomes)
        current = ratings.rate(rated, anchor=self.settings.anchor, rounds=CHECK_ROUNDS, seed=self.settings.seed)
        target = self.settings.target_width or None
        if ratings.separated(current, target_width=target):
            self.ctx.log("ratings separated" + (f" within ±{target / 2:.0f}" if target else "") + ": stopping early")
            return []
        return ratings.next_pairs(current, remaining, self.settings.concurrency, target_width=target)

    def _save_missing(self, pair: tuple[str, str], prompt_id: int) -> None:
        prompt = self.prompts[prompt_id]
        errors = [
            f"{name}: {self.replies[(prompt_id, name)].error}"
            for name in pair
            if (prompt_id, name) in self.replies and self.replies[(prompt_id, name)].error
        ]
        with session_scope() as session:
            session.add(
                Battle(
                    job_id=self.ctx.job_id,
                    prompt_id=prompt_id,
                    prompt=prompt.shown(),
                    prompt_group=prompt.group,
                    contestant_a=pair[0],
                    contestant_b=pair[1],
                    judge=self.judge_name,
                    verdict="missing",
                    order="none",
                    rationale="; ".join(errors) or "no reply",
                )
            )

    # --- persona drift over turns -----------------------------------------------------------------

    async def drift(self) -> None:
        """Each contestant in conversations a simulated user continues; persona similarity per turn."""
        if drift.load(self.ctx.folder):
            return  # measured before this run was resumed
        openings = [p for p in self.prompts.values() if p.group == "held-out" and p.parent is None]
        openings = openings[: self.settings.drift_prompts]
        if not openings:
            return
        user_model = self.settings.drift_user or EMBEDDED_MODEL
        turns, gate = self.settings.drift_turns, asyncio.Semaphore(self.settings.concurrency)
        total = len(openings) * len(self.contestants) * (turns - 1)
        done = 0
        self.ctx.report_progress(0, total, unit="turns", message=f"persona drift: {user_model} plays the user")

        async def ask(messages: list[dict], model: str, max_tokens: int, temperature: float) -> str:
            async with gate:
                try:
                    result = await gateway.achat(
                        messages, model, temperature=temperature, max_tokens=max_tokens,
                        purpose="evaluation drift", job_id=self.ctx.job_id, seed=self.settings.seed,
                    )  # fmt: skip
                    return result.text.strip()
                except UserFacingError:
                    return ""

        async def converse(prompt: Prompt, contestant: cs.Contestant) -> dict:
            nonlocal done
            first = self.replies.get((prompt.id, contestant.name))
            conversation = [{"role": "user", "content": prompt.text}]
            reply = first.text if first is not None and not first.error else ""
            if not reply:
                asked = cs.messages_for(contestant, self.persona, conversation, [])
                reply = await ask(asked, contestant.model, self.settings.max_tokens, self.settings.temperature)
            conversation.append({"role": "assistant", "content": reply})
            for turn in range(1, turns):
                if self.ctx.cancelled():
                    break
                move = drift.MOVES[(turn - 1) % len(drift.MOVES)]
                said = await ask(drift.user_turn_messages(conversation, move), user_model, 80, 0.9)
                conversation.append({"role": "user", "content": said or drift.fallback_user_turn(move)})
                asked = cs.messages_for(contestant, self.persona, conversation, [])
                reply = await ask(asked, contestant.model, self.settings.max_tokens, self.settings.temperature)
                conversation.append({"role": "assistant", "content": reply})
                done += 1
                self.ctx.report_progress(done, total, unit="turns", message="persona drift over turns")
            return {"contestant": contestant.name, "prompt_id": prompt.id, "messages": conversation}

        talks = await asyncio.gather(*(converse(p, c) for p in openings for c in self.contestants))
        if self.ctx.cancelled():
            return
        similarity = self._similarity_judge()
        scores: dict[str, list[list[float]]] = {}
        for talk in talks:
            replies = [m["content"] for m in talk["messages"] if m["role"] == "assistant"]
            scored = [similarity.score(-1, r) if r else math.nan for r in replies]
            scores.setdefault(talk["contestant"], []).append(scored)
        rows = drift.summarize(scores, seed=self.settings.seed)
        if not self.offline and self.persona.traits:
            judged = await self._judge_drift(talks)
            if not self.ctx.cancelled():
                rows += drift.summarize(judged, seed=self.settings.seed, scorer="judge")
        drift.save(self.ctx.folder, rows, talks, self.ctx.job_id)

    async def _judge_drift(self, talks: list[dict]) -> dict[str, list[list[float]]]:
        """The LLM judge's mean trait score (1–5) of every reply of every simulated conversation; NaN where
        the reply is empty, the judge gave no score, or the run's cost cap was reached."""
        gate = asyncio.Semaphore(self.settings.concurrency * 2)
        turns = [
            (talk, index)
            for talk in talks
            for index, message in enumerate(talk["messages"])
            if message["role"] == "assistant"
        ]
        done = 0

        async def one(talk: dict, index: int) -> float:
            nonlocal done
            asked, reply = talk["messages"][index - 1]["content"], talk["messages"][index]["content"]
            found = []
            for trait in self.persona.traits:
                capped = self.settings.max_cost and self.cost >= self.settings.max_cost
                if not reply.strip() or self.ctx.cancelled() or capped:
                    break
                async with gate:
                    score, _, cost = await self._patiently(
                        lambda trait=trait: judge.score_trait(self.judge_name, trait, asked, reply, self.ctx.job_id)
                    )
                self.cost += cost
                if score is not None:
                    found.append(score)
            done += 1
            self.ctx.report_progress(done, len(turns), unit="replies", message="persona drift: the judge scores")
            return sum(found) / len(found) if found else math.nan

        scored = await asyncio.gather(*(one(talk, index) for talk, index in turns))
        by_talk: dict[int, list[float]] = {}
        for (talk, _), score in zip(turns, scored, strict=True):
            by_talk.setdefault(id(talk), []).append(score)
        judged: dict[str, list[list[float]]] = {}
        for talk in talks:
            judged.setdefault(talk["contestant"], []).append(by_talk.get(id(talk), []))
        return judged

    def _similarity_judge(self) -> offline.SimilarityJudge:
        with session_scope() as session:
            gold = session.exec(
                select(Example.response).where(
                    Example.persona_id == self.persona.id, Example.gold_star, Example.status != "rejected"
                )
            ).all()
        if not gold:  # no gold stars yet: the held-out references stand in, and the report says so
            gold = [p.reference for p in self.prompts.values() if p.reference]
        anchor = self.settings.anchor
        plain = {pid: r.text for (pid, name), r in self.replies.items() if name == anchor and not r.error}
        return offline.SimilarityJudge(list(gold)[:200], plain)

    async def _judge_unit(self, pair: tuple[str, str], prompt_id: int, similarity) -> None:
        prompt = self.prompts[prompt_id]
        a_text = self.replies[(prompt_id, pair[0])].text
        b_text = self.replies[(prompt_id, pair[1])].text
        base = {
            "job_id": self.ctx.job_id,
            "prompt_id": prompt_id,
            "prompt": prompt.shown(),
            "prompt_group": prompt.group,
            "contestant_a": pair[0],
            "contestant_b": pair[1],
            "response_a": a_text,
            "response_b": b_text,
            "judge": self.judge_name,
        }
        if similarity is not None:
            verdict, reason = similarity.verdict(prompt_id, a_text, b_text)
            with session_scope() as session:
                session.add(Battle(**base, criterion=judge.OVERALL, verdict=verdict, order="both", rationale=reason))
            return
        calls = [(criterion, order) for criterion in self.criteria for order in ("ab", "ba")]
        found = await asyncio.gather(*(self._judged(base, c, o) for c, o in calls))
        with session_scope() as session:
            for battle in found:
                session.add(battle)

    async def _judged(self, base: dict, criterion: judge.Criterion, order: str) -> Battle:
        key = judge.cache_key(
            self.judge_name, criterion.text, order, base["prompt"], base["response_a"], base["response_b"]
        )
        with session_scope() as session:
            cached = session.exec(select(Battle).where(Battle.cache_key == key)).first()
        if cached is not None:
            return Battle(
                **base,
                criterion=criterion.name,
                order=order,
                verdict=cached.verdict,
                rationale=cached.rationale,
                cache_key=key,
            )
        judgement = await self._patiently(
            lambda: judge.judge_pair(
                self.judge_name,
                criterion,
                base["prompt"],
                base["response_a"],
                base["response_b"],
                order,
                self.ctx.job_id,
            )
        )
        self.cost += judgement.cost_usd
        return Battle(
            **base,
            criterion=criterion.name,
            order=order,
            verdict=judgement.verdict,
            rationale=judgement.rationale,
            cache_key=key,
        )

    async def _patiently(self, call):
        """A judge that is rate-limited or down: wait (doubling, capped) and try again until it answers."""
        wait = float(os.environ.get("STUDIO_JUDGE_WAIT_S", "15"))
        while True:
            try:
                return await call()
            except gateway.AllModelsFailed as exc:
                if not all(any(t in a.error for t in TRANSIENT) for a in exc.attempts) or self.ctx.cancelled():
                    raise
                self.ctx.log(f"the judge is unavailable ({exc.attempts[-1].error[:120]}); waiting {wait:.0f} s")
                self.ctx.report_progress(0, None, message=f"judge unavailable: waiting {wait:.0f} s, then resuming")
                await asyncio.sleep(wait)
                wait = min(wait * 2, 300.0)

    # --- 4. trait scores ------------------------------------------------------------------------

    async def score_traits(self) -> None:
        judged = {
            (o.prompt_id, name)
            for o in results.outcomes(self.ctx.job_id, "judge", None)
            if o.rated
            for name in (o.a, o.b)
        }
        with session_scope() as session:
            have = {
                (r.prompt_id, r.contestant, r.trait)
                for r in session.exec(select(TraitScore).where(TraitScore.job_id == self.ctx.job_id)).all()
            }
        todo = [
            (pid, name, trait)
            for pid, name in sorted(judged)
            for trait in self.persona.traits
            if (pid, name, trait["name"]) not in have
        ]
        gate = asyncio.Semaphore(self.settings.concurrency * 2)
        done = 0

        async def one(prompt_id: int, name: str, trait: dict) -> None:
            nonlocal done
            if self.ctx.cancelled() or (self.settings.max_cost and self.cost >= self.settings.max_cost):
                return
            prompt, reply = self.prompts[prompt_id], self.replies[(prompt_id, name)].text
            key = judge.cache_key(self.judge_name, "trait", trait["name"], prompt.shown(), reply)
            with session_scope() as session:
                cached = session.exec(select(TraitScore).where(TraitScore.cache_key == key)).first()
            if cached is not None:
                score, reason = cached.score, cached.rationale
            else:
                async with gate:
                    score, reason, cost = await self._patiently(
                        lambda: judge.score_trait(self.judge_name, trait, prompt.shown(), reply, self.ctx.job_id)
                    )
                self.cost += cost
            with session_scope() as session:
                session.add(
                    TraitScore(
                        job_id=self.ctx.job_id,
                        prompt_id=prompt_id,
                        contestant=name,
                        prompt=prompt.shown(),
                        trait=trait["name"],
                        score=score,
                        judge=self.judge_name,
                        rationale=reason,
                        cache_key=key,
                    )
                )
            done += 1
            self.ctx.report_progress(done, len(todo), unit="trait scores", message=f"trait scores · ${self.cost:.4f}")

        await asyncio.gather(*(one(*item) for item in todo))
