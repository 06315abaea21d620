"""What the Train page and `python -m pipeline train` call: check, estimate, launch, list."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from sqlmodel import select

from pipeline import access, clock, jobs, settings
from pipeline.datasets import build, checks, targets
from pipeline.db import session_scope
from pipeline.errors import UserFacingError
from pipeline.jobs import keys
from pipeline.models import Job, ModelEntry, TrainingMetric
from pipeline.training import hardware
from pipeline.training.config import TrainingConfig

KIND = {"local": "train_local", "together": "train_together", "openai": "train_openai"}
# the embedded model on this project's 2-core reference machine (bench/train_throughput.py);
# replaced by what earlier local jobs measured as soon as there are any
DEFAULT_LOCAL_TOKENS_PER_S = 200.0
# loading the model and data before the first step, evaluating and saving after the last: a run of
# 600 tokens estimated at 3 s took 1 min 52 s. Replaced by what earlier local jobs took, once measured.
DEFAULT_LOCAL_OVERHEAD_S = 110.0
CONFIRM_OVER_S = 3600.0  # a run this long asks to be confirmed before it starts


@dataclass
class Plan:
    config: TrainingConfig
    examples: int
    validation: int
    preference_pairs: int
    tokens_per_epoch: int
    billed_tokens: int
    cost_usd: float | None
    seconds: float | None
    problems: list[str] = field(default_factory=list)  # each stops a launch
    notes: list[str] = field(default_factory=list)
    rough: bool = False  # no earlier local training measured on this machine: the time is a first guess
    missing_key: str | None = None  # the backend's key is not set: files can be prepared, nothing started

    @property
    def needs_confirmation(self) -> bool:
        return (self.seconds or 0) > CONFIRM_OVER_S

    @property
    def eligible(self) -> bool:
        """The data and settings can train (the files can be prepared)."""
        return not self.problems

    @property
    def can_start(self) -> bool:
        return self.eligible and self.missing_key is None

    def refusal(self) -> str:
        return "Cannot start: " + " ".join([*self.problems, *([self.missing_key] if self.missing_key else [])])


def plan(config: TrainingConfig) -> Plan:
    """Eligibility (example count, token limits), cost and time, before anything starts."""
    dataset = build.get_dataset(config.dataset)
    base = config.resolved_base()
    price_known = True
    if config.backend == "local":  # the local limit is the sequence length this run trains with
        target = targets.Target("local", base, config.max_seq_length, 1, 50, 0.0, f"local:{base}")
    else:
        try:
            target = targets.get(base)
        except KeyError:
            price_known = False
            minimum = 10 if config.backend == "openai" else 1
            target = targets.Target(config.backend, base, config.max_seq_length, minimum, 50, 0.0, "cl100k")
    data = build.file_path(dataset, "openai", "train").read_bytes()
    report = checks.check_file(data, "train.jsonl", target, epochs=config.epochs).report
    problems = [f"{p.where()}: {p.message}" for p in report.errors]
    notes = [p.message for p in report.warnings]
    pairs = dataset.counts.get("preference_pairs", 0)
    if config.method == "dpo" and pairs == 0:
        problems.append(
            f"Dataset {dataset.name!r} has no preference pairs: make them on the Datasets page (Saved datasets → "
            "Preference pairs), or edit some responses on the Review page."
        )
    if config.method == "bake":
        problems += bake_problems(config, dataset)
    if config.then_dpo:
        problems += two_stage_problems(config, pairs)
    notes += early_stopping_notes(config, dataset.counts.get("validation", 0))
    if config.method == "dpo" and config.backend == "openai":
        problems.append("DPO here runs locally or on Together; OpenAI preference tuning is not wired up.")
    if config.qlora and hardware.detect().device != "cuda":
        problems.append("QLoRA needs a CUDA GPU; this machine has none. Switch it off.")
    if config.backend != "local" and config.resolved_base().startswith("local/"):
        problems.append(f"{config.backend} cannot train {config.resolved_base()}: pick one of its base models.")
    row = next((r for r in report.backends if r["chosen"]), None)
    tokens = report.token_stats.get("total", 0)
    billed = row["billed_tokens"] if row else tokens * config.epochs
    cost = row["cost_usd"] if row and price_known else None
    seconds, rough = None, False
    if config.backend == "local":
        speed = local_speed(base)
        seconds, rough = speed.overhead_s + billed / speed.tokens_per_s, not speed.measured
        if config.then_dpo and pairs:  # the DPO stage reads a chosen and a rejected reply per pair
            per_example = tokens / max(report.valid, 1)
            seconds += pairs * 2 * per_example * config.epochs / speed.tokens_per_s
        if config.method == "bake" and config.bake_replies != "dataset":
            from pipeline.generation.estimate import measured_speed

            # replies written at this machine's measured generation speed: the teacher's to every prompt
            # once, or (on-policy) the student's to every training prompt in every epoch
            writing = measured_speed(base)
            train, held_out = dataset.counts.get("train", 0), dataset.counts.get("validation", 0)
            replies = held_out + train * (config.epochs if config.bake_replies == "student" else 1)
            seconds += replies * config.bake_max_reply_tokens / writing.tokens_per_s
            rough = rough or not writing.measured
        if config.gallery_probes:  # the checkpoint gallery's replies: at step 0 and at every evaluation
            from pipeline.generation.estimate import measured_speed

            per_epoch = -(-report.valid // (config.batch_size * config.gradient_accumulation))
            checkpoints = 1 + per_epoch * config.epochs // config.eval_every
            written = checkpoints * config.gallery_probes * config.gallery_max_tokens
            seconds += written / measured_speed(base).tokens_per_s
    return Plan(
        config,
        report.valid,
        dataset.counts.get("validation", 0),
        pairs,
        tokens,
        billed,
        cost,
        seconds,
        problems,
        notes,
        rough,
        missing_key(config.backend),
    )


BAKE_REPLIES = {"teacher": "the prompted model's replies", "student": "its own replies (on-policy)"}
BAKE_REPLIES_HELP = {
    "teacher": "the model with the prompt writes one reply per prompt, scored once and reused every epoch",
    "student": "the model in training writes a fresh reply at every step and the prompted model corrects it "
    "there: it learns where it actually goes wrong, but each step takes a generation (slower)",
}
METHODS = {"sft": "Imitate the examples", "bake": "Bake the prompt in", "dpo": "Prefer the persona's replies"}
METHOD_HELP = {
    "sft": "learns to write the reviewed replies (supervised fine-tuning)",
    "bake": "learns to act without the system prompt as the model acts with it (context distillation; "
    "this machine only; needs no gold replies)",
    "dpo": "learns to prefer the persona's reply over a plain one (DPO on preference pairs)",
}


def recommended_method(backend: str) -> tuple[str, str]:
    """The method to suggest for a backend, and why, in plain words."""
    if backend == "local":
        return "bake", (
            "It trains the model to answer without the system prompt as it answers with it, so the persona is "
            "carried by the weights; it needs no gold replies, and it does not copy the faults of weak examples."
        )
    return "dpo", (
        "Preference pairs teach the persona's reply over the plain model's reply; published results "
        "(Open Character Training) found it beats prompting alone. Imitating the examples also works here."
    )


def bake_problems(config: TrainingConfig, dataset) -> list[str]:
    """What stops baking the prompt in, said before launch."""
    from pipeline.training import bake

    found = []
    if config.backend != "local":
        found.append(
            "Baking the prompt in needs the model's own probabilities, so it runs on this machine only: "
            "choose 'This machine', or 'Prefer the persona's replies' for a cloud provider."
        )
    if config.bake_replies == "student" and config.bake_sft_weight > 0:
        found.append(
            "The SFT mix learns fixed replies, and on-policy baking has none (the student writes new ones each "
            "step): set bake_sft_weight to 0, or bake on the teacher's replies."
        )
    try:
        bake.system_prompt(dataset)
    except UserFacingError as exc:
        found.append(str(exc))
    return found


def early_stopping_notes(config: TrainingConfig, validation: int) -> list[str]:
    """Early stopping needs a validation split: said before launch when the dataset has none."""
    if config.backend != "local" or config.method == "dpo" or config.early_stopping_patience == 0 or validation:
        return []
    return [
        f"Dataset {config.dataset!r} has no validation split, so there is nothing to stop early on: training runs "
        f"all {config.epochs} epochs and keeps the last weights, not the best. To stop at the best checkpoint, "
        "build the dataset again with a validation share."
    ]


def two_stage_problems(config: TrainingConfig, pairs: int) -> list[str]:
    """What stops 'then prefer the persona's replies' (a DPO stage after SFT or bake), said before launch."""
    found = []
    if config.method == "dpo":
        found.append("'Then prefer the persona's replies' follows imitation or baking; DPO alone is one stage.")
    if config.backend != "local":
        found.append("Two stages in one job run on this machine only.")
    if pairs == 0 and config.method != "dpo":
        found.append(
            f"Dataset {config.dataset!r} has no preference pairs for the DPO stage: make them on the Datasets page "
            "(Saved datasets → Preference pairs)."
        )
    return found


@dataclass
class LocalSpeed:
    tokens_per_s: float
    overhead_s: float  # before the first step and after the last
    measured: bool


def local_speed(base_model: str) -> LocalSpeed:
    """What the last five local trainings of this base measured on this machine (medians): tokens/s
    while training, and the time around it (start to first logged step, last to the end); else the
    reference figures."""
    with session_scope() as session:
        done = [
            j
            for j in session.exec(select(Job).where(Job.kind == "train_local", Job.status == "succeeded")).all()
            if j.params.get("config", {}).get("base_model") in (base_model, "")
        ][-5:]
        metrics = session.exec(
            select(TrainingMetric.job_id, TrainingMetric.tokens_per_s, TrainingMetric.at)
            .where(TrainingMetric.job_id.in_([j.id for j in done]))
            .order_by(TrainingMetric.step)
        ).all()
    speeds = [speed for _, speed, _ in metrics if speed]
    overheads = []
    for job in done:
        times = [_naive(at) for job_id, _, at in metrics if job_id == job.id]
        if times and job.started_at and job.finished_at:
            around = (min(times) - _naive(job.started_at)) + (_naive(job.finished_at) - max(times))
            overheads.append(max(around.total_seconds(), 0.0))
    return LocalSpeed(
        statistics.median(speeds) if speeds else DEFAULT_LOCAL_TOKENS_PER_S,
        statistics.median(overheads) if overheads else DEFAULT_LOCAL_OVERHEAD_S,
        bool(speeds),
    )


def missing_key(backend: str) -> str | None:
    """Why `backend` cannot be used here for want of its key (and where to put it); None when it can."""
    return keys.missing_for(KIND[backend])


def local_tokens_per_s(base_model: str) -> float:
    """What earlier local trainings of this base measured (median), else the reference figure."""
    return local_speed(base_model).tokens_per_s


def _naive(moment):
    return moment.replace(tzinfo=None) if moment.tzinfo else moment


def prepare(config: TrainingConfig) -> Path:
    """The provider-ready files and the config, in data/exports/train-<dataset>-<backend>/; nothing starts."""
    dataset = build.get_dataset(config.dataset)
    folder = settings.data_dir() / "exports" / f"train-{dataset.name}-{config.backend}"
    folder.mkdir(parents=True, exist_ok=True)
    parts = [("dpo", "train")] if config.method == "dpo" else [("openai", "train"), ("openai", "validation")]
    for fmt, part in parts:
        source = build.file_path(dataset, fmt, part)
        (folder / source.name).write_bytes(source.read_bytes())
    (folder / "config.yaml").write_text(config.to_yaml(), encoding="utf-8")
    return folder


def start(
    config: TrainingConfig, started_by: str = "", run_here: bool = False, *, name: str = "", extra: dict | None = None
) -> Job:
    """Queue the training for the background worker, or with `run_here` claim it for this process.

    `extra`: more job parameters beside the config (a retrain's origin, read when the model is registered)."""
    access.check("train")
    checked = plan(config)
    if not checked.can_start:
        raise UserFacingError(checked.refusal())
    name = name or f"{config.method.upper()} {config.dataset} → {config.resolved_base()} ({config.backend})"
    return jobs.submit(
        KIND[config.backend],
        {**(extra or {}), "config": config.model_dump(mode="json")},
        name=name,
        started_by=started_by,
        run_here=run_here,
    )


def resume(job_id: int) -> Job:
    access.check("train")
    job = jobs.get(job_id)
    if job.kind not in KIND.values():
        raise UserFacingError(f"Job {job_id} is not a training job.")
    if job.status not in ("failed", "cancelled"):
        raise UserFacingError(f"Job {job_id} is {job.status}; only a failed or cancelled training resumes.")
    return jobs.requeue(job_id)


def past_jobs(limit: int = 50) -> list[dict]:
    """Every training job with its outcome, final losses and the model it made."""
    with session_scope() as session:
        found = session.exec(
            select(Job).where(Job.kind.in_(list(KIND.values()))).order_by(Job.id.desc()).limit(limit)
        ).all()
        models = {m.job_id: m for m in session.exec(select(ModelEntry).where(ModelEntry.job_id.is_not(None))).all()}
        rows = []
        for job in found:
            metrics = session.exec(
                select(TrainingMetric).where(TrainingMetric.job_id == job.id).order_by(TrainingMetric.step.desc())
            ).all()
            last_loss = next((m.loss for m in metrics if m.loss is not None), None)
            last_val = next((m.val_loss for m in metrics if m.val_loss is not None), None)
            config = job.params.get("config", {})
            model = models.get(job.id)
            rows.append(
                {
                    "job": job.id,
                    "status": job.status,
                    "backend": config.get("backend"),
                    "method": config.get("method"),
                    "dataset": config.get("dataset"),
                    "base model": config.get("base_model") or "(default)",
                    "train loss": last_loss,
                    "validation loss": last_val,
                    "model": model.reference if model else "",
                    "why it stopped": (model.metrics or {}).get("stop_reason", "") if model else "",
                    "error": job.error or "",
                    "created": clock.local(job.created_at),
                }
            )
        return rows
