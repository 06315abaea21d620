"""Does training carry the persona without its prompt? SFT, bake and preference (DPO) side by side.

On the embedded default (SmolLM2-135M, CPU), from one persona file:
1. data: short work documents (memos, emails, reports... made from templates, seeded) as prompts; the
   persona's replies are the base model's own replies **with** the persona's prompt (what generation
   with the built-in model gives), the plain replies its own **without** it (the rejected side of the
   preference pairs); a dataset is built from them (train / validation);
2. training, the same number of steps each: SFT on the persona's replies, bake (KL to the prompted
   teacher), DPO on (persona reply ≻ plain reply) pairs;
3. one evaluation on held-out documents: base plain, base + prompt, each trained model plain; the
   offline judge's ratings, persona likelihood and prompt fidelity.

Prints one table (gap closed with its interval, persona likelihood, offline rating with interval) and
the wall time of each step.

    .venv/bin/python bench/persona_transfer.py [PERSONA_YAML] [--examples 32] [--held-out 8] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
_ROOT = Path(tempfile.mkdtemp(prefix="studio-bench-"))
os.environ["STUDIO_DATA_DIR"] = str(_ROOT / "data")
# a models folder of its own: the three trained adapters land there, not among the studio's models
os.environ["STUDIO_MODELS_DIR"] = str(_ROOT / "models")
(_ROOT / "models").mkdir()
(_ROOT / "models" / "smollm2-135m-instruct").symlink_to(REPO / "data" / "models" / "smollm2-135m-instruct")

from pipeline import jobs, personas, startup  # noqa: E402
from pipeline.datasets import build, persona_pairs  # noqa: E402
from pipeline.db import session_scope  # noqa: E402
from pipeline.evaluation import leaderboard, service  # noqa: E402
from pipeline.generation.prompts import response_request  # noqa: E402
from pipeline.jobs import foreground, ingest, runfolder  # noqa: E402
from pipeline.jobs.context import JobContext  # noqa: E402
from pipeline.llm import embedded  # noqa: E402
from pipeline.models import Example, Job  # noqa: E402
from pipeline.review.filters import ExampleFilter  # noqa: E402
from pipeline.training import config as training_config  # noqa: E402
from pipeline.training import distill  # noqa: E402
from pipeline.training import service as training  # noqa: E402

KINDS = ["memo", "email", "report", "proposal", "analysis"]
SUBJECTS = [
    ("the Q3 budget", "is 12% over plan after two vendor invoices arrived late"),
    ("the office move", "slipped three weeks because the lease was signed late"),
    ("hiring for the data team", "has two offers declined this month over salary"),
    ("the customer churn figures", "rose from 4% to 6% after the price change"),
    ("the new onboarding process", "cut first-week tickets in half but annoyed managers"),
    ("the product launch date", "depends on a security review that has not started"),
    ("the support backlog", "doubled since the holiday and response times are now two days"),
    ("the vendor contract renewal", "comes with a 20% price rise and a three-year lock-in"),
    ("the quarterly planning offsite", "has no agenda yet and half the leads cannot attend"),
    ("the warehouse error rate", "fell after the scanner upgrade but overtime went up"),
    ("the remote work policy", "gets mixed reactions: teams want flexibility, facilities wants numbers"),
    ("the marketing campaign results", "show clicks up 30% but sales flat"),
]
ASKS = [
    "What do you think we should do?",
    "Can you help me decide on next steps?",
    "How would you respond to this?",
    "What am I missing here?",
]
REPLY_TOKENS = 96


def documents(count: int, seed: int) -> list[str]:
    """Short, varied work documents as a user would paste them, with a question (seeded)."""
    rng = random.Random(seed)
    found = []
    for i in range(count):
        subject, fact = SUBJECTS[i % len(SUBJECTS)]
        kind = KINDS[(i // len(SUBJECTS) + i) % len(KINDS)]
        body = (
            f"{kind.capitalize()} to the leadership team about {subject}.\n\n"
            f"Summary: {subject.capitalize()} {fact}. "
            f"{rng.choice(['Finance', 'Operations', 'The project team', 'HR'])} flagged it on "
            f"{rng.choice(['Monday', 'Tuesday', 'Thursday'])}; a decision is needed by "
            f"{rng.choice(['Friday', 'the end of the month', 'next quarter'])}."
        )
        found.append(response_request(f"{kind.capitalize()}: {subject}", body) + "\n\n" + rng.choice(ASKS))
    return found


def replies(prompts: list[str], system: str | None, seed: int) -> list[str]:
    """The base model's replies, asked all at once so its batching worker answers them together."""

    def one(i: int) -> str:
        turns = [{"role": "user", "content": prompts[i]}]
        messages = distill.with_system(system, turns) if system else turns
        return embedded.generate(
            embedded.EMBEDDED_NAME, messages, max_tokens=REPLY_TOKENS, temperature=0.7, seed=seed + i
        ).text

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, range(len(prompts))))


def run_here(job: Job) -> Job:
    job = foreground.claim(job.id)
    ctx = JobContext(job.id, runfolder.run_dir(job.id), job.kind, attempt=job.attempt)
    ctx.start()
    try:
        jobs.kind_function(job.kind)(ctx, dict(job.params))
        ctx.finish("succeeded")
    except Exception as exc:
        ctx.finish("failed", str(exc))
        raise
    finally:
        with session_scope() as session:
            ingest.ingest_job(session, session.get(Job, job.id))
    return jobs.get(job.id)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("persona", nargs="?", type=Path, default=REPO / "data" / "personas" / "collaborative.yaml")
    parser.add_argument("--examples", type=int, default=32, help="training prompts (a tenth are held back)")
    parser.add_argument("--held-out", type=int, default=8, help="evaluation prompts, never trained on")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    timings: dict[str, float] = {}

    def timed(step: str, work):
        started = time.perf_counter()
        result = work()
        timings[step] = time.perf_counter() - started
        print(f"{step}: {timings[step]:.0f} s", flush=True)
        return result

    startup.init()
    spec = personas.parse_yaml(args.persona.read_bytes(), args.persona.name)
    persona = personas.create_persona(spec.model_copy(update={"name": f"{spec.name}-bench"}))
    prompts = documents(args.examples + args.held_out, args.seed)
    chosen = timed("persona replies (base + prompt)", lambda: replies(prompts, persona.system_prompt, args.seed))
    with session_scope() as session:
        for prompt, reply in zip(prompts, chosen, strict=True):
            messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]
            session.add(Example(persona_id=persona.id, status="accepted", response=reply, messages=messages,
                                document=prompt, document_type="memo"))  # fmt: skip
    # the validation split is the evaluation's held-out set: never trained on, with the persona's replies
    share = args.held_out / (args.examples + args.held_out)
    dataset = build.save(
        "bench",
        build.preview(ExampleFilter(persona_id=persona.id, statuses=["accepted"]), share, include_flagged=True),
    )
    items = persona_pairs.prompts_and_replies(dataset)
    rejected = timed(
        "plain replies (base, no prompt)", lambda: replies([p for p, _ in items], None, args.seed + 10_000)
    )
    persona_pairs.save(dataset, items, dict(enumerate(rejected)))

    common = {"dataset": "bench", "epochs": args.epochs, "batch_size": 4, "eval_every": 1000, "save_every": 1000,
              "learning_rate": 5e-4, "max_seq_length": 1024, "seed": args.seed}  # fmt: skip
    trained = {}
    # bake on the dataset's replies: here they are the prompted base's own samples, i.e. what the teacher
    # pass would write again (one reply at a time), so the KL is taken on the same kind of reply in less time
    for method, extra in (("sft", {}), ("bake", {"bake_replies": "dataset"}), ("dpo", {"dpo_beta": 0.1})):
        config = training_config.load({**common, **extra, "method": method, "name": f"bench-{method}"})
        job = timed(f"train {method}", lambda config=config: run_here(training.start(config)))
        if job.status != "succeeded":
            print(f"{method} failed: {job.error}")
            return 1
        trained[method] = f"local/bench-{method}"

    base = f"local/{embedded.EMBEDDED_NAME}"
    contestants = [base, f"{base}:prompt", *trained.values()]
    plan = service.plan(persona=persona.id, contestants=contestants, dataset="bench", held_out_limit=args.held_out,
                        adversarial=False, keep_going=False, max_battles=400, max_tokens=REPLY_TOKENS,
                        trait_scores=False)  # fmt: skip
    if plan.prompt_set.dropped:
        print(f"{len(plan.prompt_set.dropped)} held-out prompts dropped as too close to a training prompt")
    job = timed("evaluate", lambda: run_here(service.start(plan)))
    board = leaderboard.build(job.id)
    fidelity = {row["contestant"]: row for row in board.fidelity}
    likelihood = {row["contestant"]: row for row in board.likelihood}
    print()
    print("| contestant | gap closed (95%) | KL/token | persona likelihood | offline rating (95%) |")
    print("|---|---|---|---|---|")
    for name in [base, f"{base} + prompt", *trained.values()]:
        f, lk = fidelity.get(name, {}), likelihood.get(name, {})
        gap = (f"{f['gap_closed']:.0f}% ({f['gap_lower']:.0f}–{f['gap_upper']:.0f}%)"
               if f.get("gap_closed") is not None else "—")  # fmt: skip
        kl = f"{f['kl']:.3f}" if f.get("kl") is not None else "—"
        like = f"{lk['mean']:.3f}" if lk.get("mean") is not None else "—"
        print(f"| {name} | {gap} | {kl} | {like} | {board.rating_text(name)} |")
    print()
    held = sum(p.group == "held-out" for p in plan.prompt_set.prompts)
    print(f"{board.basis}; {held} held-out prompts; {len(items)} training prompts, {args.epochs} epochs")
    print(
        "wall time: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
        + f"; total {sum(timings.values()):.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
