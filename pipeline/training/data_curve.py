"""How much data does this persona need? The `data_curve` job kind.

It trains the same LoRA (same settings, same seed, same epochs: the same steps per example) on nested
subsets of a dataset's training split (by default 25%, 50% and 100%: one seeded shuffle, each subset
the first n rows of it, so a smaller subset is inside every larger one), and scores each adapter, and
the plain base, with persona likelihood on the validation split (offline.py: the mean log-probability
per token of the held-out replies, prompted without the system prompt, with a bootstrap 95% interval).
Where a size's interval overlaps the next size's, more data stopped helping.

Each size's point is written to the run folder's curve.json as it lands (and published as the store's
reports/<job-id>/curve.json for pages on any machine), so a resumed job trains only the sizes still missing.
The adapters are scored in memory and not kept: the job measures, it does not make models.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from pipeline import access, jobs, storage
from pipeline.datasets import build
from pipeline.errors import UserFacingError
from pipeline.models import Job
from pipeline.training.config import TrainingConfig, load

KIND = "data_curve"
CURVE = "curve.json"
DEFAULT_FRACTIONS = (0.25, 0.5, 1.0)
MAX_SIZES = 6


def sizes(total: int, fractions: list[float] | tuple[float, ...]) -> list[int]:
    """Subset sizes for `total` training rows: each fraction rounded up, at least one row, distinct, ascending."""
    return sorted({max(1, min(total, math.ceil(total * f - 1e-9))) for f in fractions})


def nested_order(total: int, seed: int) -> list[int]:
    """One seeded shuffle of the rows; subset n is its first n rows, so subsets are nested."""
    order = list(range(total))
    random.Random(seed).shuffle(order)
    return order


@dataclass
class CurvePlan:
    config: TrainingConfig
    fractions: list[float]
    sizes: list[int]
    validation: int
    problems: list[str] = field(default_factory=list)

    @property
    def can_start(self) -> bool:
        return not self.problems


def plan(config: TrainingConfig, fractions: list[float] | tuple[float, ...] = DEFAULT_FRACTIONS) -> CurvePlan:
    """What the curve will train, and anything that stops it, before it starts."""
    from pipeline.training import service

    fractions = sorted({float(f) for f in fractions})
    problems = []
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        problems.append("Each share of the data is above 0 and at most 1 (e.g. 0.25, 0.5, 1).")
    if config.backend != "local":
        problems.append("A data-size curve trains on this machine: choose the local backend.")
    if config.method != "sft" or config.then_dpo:
        problems.append("A data-size curve imitates the examples (SFT, one stage): its score is the held-out replies.")
    checked = service.plan(config)
    problems += checked.problems
    if checked.validation == 0:
        problems.append(
            f"Dataset {config.dataset!r} has no validation split to score on: build it with a validation share."
        )
    found = sizes(checked.examples, [f for f in fractions if 0 < f <= 1]) if checked.examples else []
    if len(found) > MAX_SIZES:
        problems.append(f"At most {MAX_SIZES} sizes; {len(found)} asked.")
    if checked.examples and len(found) < 2:
        problems.append("Give at least two different sizes to draw a curve.")
    return CurvePlan(config, fractions, found, checked.validation, problems)


def start(
    config: TrainingConfig,
    fractions: list[float] | tuple[float, ...] = DEFAULT_FRACTIONS,
    started_by: str = "",
    run_here: bool = False,
) -> Job:
    access.check("train")
    checked = plan(config, fractions)
    if not checked.can_start:
        raise UserFacingError("Cannot start the data-size curve: " + " ".join(checked.problems))
    shares = ", ".join(f"{f:.0%}" for f in checked.fractions)
    return jobs.submit(
        KIND,
        {"config": config.model_dump(mode="json"), "fractions": checked.fractions},
        name=f"Data-size curve: {config.dataset} at {shares}",
        started_by=started_by,
        run_here=run_here,
    )


# --- the result ---------------------------------------------------------------------------------------


@dataclass
class Curve:
    base: dict | None  # the plain base model's score (0 examples)
    # per size: examples (trained on), mean, lower, upper, scored (held-out replies), tokens, steps, rows (the
    # subset's row numbers in the training split)
    points: list[dict]
    plateau_at: int | None  # the size after which more data did not help (its interval overlaps the next)
    verdict: str


def plateau(points: list[dict]) -> int | None:
    """The first size whose interval overlaps the next size's: going bigger did not change the score."""
    ordered = sorted(points, key=lambda p: p["examples"])
    for here, bigger in zip(ordered, ordered[1:], strict=False):
        if here["upper"] >= bigger["lower"] and bigger["upper"] >= here["lower"]:
            return here["examples"]
    return None


def verdict(points: list[dict], at: int | None) -> str:
    if len(points) < 2:
        return "Not enough sizes scored yet to say whether more data helps."
    largest = max(p["examples"] for p in points)
    if at is None:
        return (
            f"Each larger subset scored clearly higher (the intervals do not overlap): more data still helps at "
            f"{largest} examples."
        )
    bigger = min(p["examples"] for p in points if p["examples"] > at)
    return (
        f"Going from {at} to {bigger} examples did not move the persona likelihood beyond its 95% interval: "
        f"more data stops helping around {at} examples."
    )


def read(folder: Path) -> dict:
    try:
        return json.loads((folder / CURVE).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {"base": None, "points": []}


def result(job_id: int) -> Curve:
    job = jobs.get(job_id)
    if job.kind != KIND:
        raise UserFacingError(f"Job {job_id} is not a data-size curve.")
    data = read(storage.report(job_id, CURVE).parent)  # the store's copy, else the run folder here
    points = sorted(data.get("points", []), key=lambda p: p["examples"])
    at = plateau(points)
    return Curve(data.get("base"), points, at, verdict(points, at))


def runs(limit: int = 50) -> list[Job]:
    return [j for j in jobs.list_jobs(limit * 4) if j.kind == KIND][:limit]


# --- the job ------------------------------------------------------------------------------------------


def _write(folder: Path, data: dict, job_id: int | None = None) -> None:
    partial = folder / f".{CURVE}.partial"
    partial.write_text(json.dumps(data, indent=2), encoding="utf-8")
    partial.replace(folder / CURVE)
    if job_id is not None:  # each point for every machine's page, as it lands
        storage.publish_report(job_id, folder / CURVE)


def held_out(dataset) -> list[tuple[list[dict], str]]:
    """The validation split's exchanges without the system prompt: (messages before the reply, the reply)."""
    from pipeline.training import local

    found = []
    for conversation in local.conversations(build.file_path(dataset, "openai", "validation")):
        turns = [m for m in conversation if m["role"] != "system"]
        if len(turns) >= 2 and turns[-1]["role"] == "assistant":
            found.append((turns[:-1], turns[-1]["content"]))
    return found


def run(ctx, params: dict) -> None:
    import torch
    from datasets import Dataset as HFDataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    from pipeline.evaluation import offline
    from pipeline.training import hardware, local

    config = load(params["config"])
    dataset = build.get_dataset(config.dataset)
    rows = local.sft_rows(build.file_path(dataset, "openai", "train"))
    conversations = held_out(dataset)
    if not rows or not conversations:
        raise UserFacingError(f"Dataset {dataset.name!r} needs training rows and a validation split for the curve.")
    wanted = sizes(len(rows), params.get("fractions") or DEFAULT_FRACTIONS)
    order = nested_order(len(rows), config.seed)
    gear = hardware.detect()
    source = local.base_folder(config)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    data = read(ctx.folder)
    done = {p["examples"] for p in data["points"]}
    ctx.log(
        f"data-size curve on {dataset.name}: sizes {wanted} of {len(rows)} training rows, scored on "
        f"{len(conversations)} held-out replies without the system prompt ({gear.description})"
    )

    class Cancel(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if ctx.cancelled():
                control.should_training_stop = True
            return control

    def fresh_model():
        torch.manual_seed(config.seed)
        return AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)

    def score(model, label: str, size: int) -> dict:
        """The point for `size` training examples: likelihood, interval, and how many replies were scored."""
        model.eval()
        loaded = SimpleNamespace(model=model, tokenizer=tokenizer)
        found = offline.persona_likelihood(label, loaded, conversations, seed=config.seed).to_dict()
        return {**found, "scored": found.pop("examples"), "examples": size}

    total = len(wanted) + 1
    ctx.report_progress(len(done) + (data["base"] is not None), total, unit="sizes", message="scoring the base")
    if data["base"] is None:
        data["base"] = score(fresh_model(), config.resolved_base(), 0)
        _write(ctx.folder, data, ctx.job_id)
        ctx.log(f"base model, no training: persona likelihood {data['base']['mean']:.3f}")
    for size in wanted:
        if size in done:
            continue
        if ctx.cancelled():
            ctx.log("cancelled: the sizes scored so far are kept; resume to finish the curve")
            return
        chosen = sorted(order[:size])
        common = local.trainer_arguments(config, gear, ctx.folder / f"size-{size}", with_eval=False)
        common |= {"save_strategy": "no"}  # each size trains in minutes at most: a resume trains it again
        trainer = local.build_trainer(
            config,
            fresh_model(),
            tokenizer,
            local.lora_config(config),
            HFDataset.from_list([rows[i] for i in chosen]),
            None,
            common,
            [Cancel()],
        )
        ctx.report_progress(len(done) + 1, total, unit="sizes", message=f"training on {size} examples")
        trainer.train()
        if ctx.cancelled():
            ctx.log("cancelled: the sizes scored so far are kept; resume to finish the curve")
            return
        point = {**score(trainer.model, f"{size} examples", size), "steps": trainer.state.global_step, "rows": chosen}
        data["points"].append(point)
        done.add(size)
        _write(ctx.folder, data, ctx.job_id)
        ctx.log(
            f"{size} examples, {point['steps']} steps: persona likelihood {point['mean']:.3f} "
            f"({point['lower']:.3f} – {point['upper']:.3f})"
        )
    points = sorted(data["points"], key=lambda p: p["examples"])
    ctx.report_progress(total, total, unit="sizes", message="done")
    ctx.log(verdict(points, plateau(points)))
