"""`python -m pipeline train`: check, estimate and run a fine-tuning job from the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipeline.errors import UserFacingError

PRESET_NAMES = ("quick", "standard", "thorough")  # training.config.PRESETS' keys, without importing it here


def add_parser(sub) -> None:
    from pipeline.training import providers  # the standard library only: cheap for the help

    p = sub.add_parser("train", help="fine-tune a model on a dataset (local LoRA, Together, or OpenAI: closing)")
    p.add_argument("--backend", choices=["local", *providers.CLOUD], help=providers.BACKEND_HELP)
    p.add_argument("--dataset", help="a saved dataset's name")
    p.add_argument("--base-model", help="the model to fine-tune (default: the backend's)")
    p.add_argument(
        "--method",
        choices=["sft", "dpo", "bake"],
        help="sft: imitate the examples; dpo: prefer the persona's replies; bake: bake the prompt in (local)",
    )
    p.add_argument(
        "--then-dpo",
        action="store_true",
        help="after sft or bake, a DPO stage on the dataset's preference pairs, in the same job (local)",
    )
    p.add_argument("--preset", choices=PRESET_NAMES, help="quick | standard | thorough")
    p.add_argument("--epochs", type=int)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--name", help="the new model's name")
    p.add_argument(
        "--early-stopping-patience",
        type=int,
        metavar="N",
        help="local: stop once the validation loss has not improved for N evaluations and keep the best "
        "checkpoint (default 3; 0: off, train every epoch and keep the last)",
    )
    p.add_argument(
        "--config", help="a YAML file of TrainingConfig settings, or the name of saved settings; flags override it"
    )
    p.add_argument("--save-as", metavar="NAME", help="save these settings under NAME (data/configs/) and stop")
    p.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="queue one run per value (up to two settings, 12 runs; run one at a time), e.g. learning_rate=1e-4,2e-4",
    )
    p.add_argument(
        "--data-curve",
        nargs="?",
        const="0.25,0.5,1",
        metavar="SHARES",
        help="train on nested shares of the dataset (default 0.25,0.5,1) and score each: how much data it needs",
    )
    p.add_argument("--prepare-only", action="store_true", help="check, estimate and write the files; do not train")
    p.add_argument("--queue", action="store_true", help="hand the job to the background worker and return")
    p.add_argument("--check-job", type=int, metavar="ID", help="print a training job's status and losses")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def _config(args):
    from pipeline.training import config as cfg

    values = {
        "backend": args.backend,
        "dataset": args.dataset,
        "base_model": args.base_model,
        "method": args.method,
        "epochs": args.epochs,
        "learning_rate": args.learning_rate,
        "batch_size": args.batch_size,
        "name": args.name,
        "early_stopping_patience": args.early_stopping_patience,
        "then_dpo": True if args.then_dpo else None,
    }
    if args.config:
        path = Path(args.config)
        if path.is_file():
            return cfg.load_file(path, **values)
        from pipeline.training import runs

        if runs.NAME.fullmatch(args.config) and args.config in runs.saved_configs():
            return runs.load_saved(args.config, **values)
        saved = ", ".join(runs.saved_configs()) or "none"
        raise UserFacingError(f"{args.config!r} is neither a file nor saved settings (saved: {saved}).")
    if not args.dataset:
        raise UserFacingError("Give --dataset NAME (see `python -m pipeline datasets list`) or --config FILE.")
    return cfg.from_preset(args.preset or "standard", **values)


def run(args) -> int:
    if args.check_job is not None:
        return _check(args.check_job, args.json)
    from pipeline import jobs
    from pipeline.training import providers, service

    config = _config(args)
    if args.save_as:
        from pipeline.training import runs

        runs.save_config(args.save_as, config)
        print(f"Saved these settings as {args.save_as!r}; train them with `train --config {args.save_as}`.")
        return 0
    if args.sweep:
        return _sweep(config, args.sweep)
    if args.data_curve:
        return _data_curve(config, args.data_curve, args.queue)
    if config.backend == "openai":
        print(f"note: {providers.OPENAI_CLOSING}", file=sys.stderr)
    plan = service.plan(config)
    summary = {
        "backend": config.backend,
        "base_model": config.resolved_base(),
        "method": config.method,
        "examples": plan.examples,
        "tokens_per_epoch": plan.tokens_per_epoch,
        "billed_tokens": plan.billed_tokens,
        "cost_usd": plan.cost_usd,
        "seconds": plan.seconds,
        "problems": plan.problems,
        "notes": plan.notes,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        cost = "unknown" if plan.cost_usd is None else f"${plan.cost_usd:,.2f}"
        time = "" if plan.seconds is None else f", about {plan.seconds / 60:.0f} min"
        print(
            f"{config.method.upper()} {config.resolved_base()} on {config.dataset} ({config.backend}): "
            f"{plan.examples} examples, {plan.billed_tokens:,} billed tokens, cost {cost}{time}",
            file=sys.stderr,
        )
        for note in plan.notes:
            print(f"note: {note}", file=sys.stderr)
    if not plan.eligible:
        raise UserFacingError(plan.refusal())
    if args.prepare_only:  # needs no key: nothing reaches the provider
        folder = service.prepare(config)
        print(f"Prepared the files in {folder}; nothing was started.")
        return 0
    if not plan.can_start:
        raise UserFacingError(plan.refusal())
    job = service.start(config, started_by=jobs.default_user(), run_here=not args.queue)
    if args.queue:
        print(f"Queued training job {job.id}; follow it with `python -m pipeline jobs show {job.id}`.")
        return 0
    return _follow(job)


def _sweep(config, pairs: list[str]) -> int:
    from pipeline import jobs
    from pipeline.training import runs

    sweep = runs.start_sweep(config, runs.parse_grid(pairs), started_by=jobs.default_user())
    print(f"Queued sweep {sweep.id}: {len(sweep.jobs)} runs, one at a time by the background worker.")
    for job, run in zip(sweep.jobs, sweep.runs, strict=True):
        print(f"  job {job.id}: " + ", ".join(f"{k}={v}" for k, v in run.values.items()))
    return 0


def _data_curve(config, shares: str, queue: bool) -> int:
    from pipeline import jobs
    from pipeline.jobs import foreground
    from pipeline.training import data_curve

    try:
        fractions = [float(share) for share in shares.split(",") if share.strip()]
    except ValueError:
        raise UserFacingError(f"--data-curve takes shares such as 0.25,0.5,1, not {shares!r}.") from None
    job = data_curve.start(config, fractions, started_by=jobs.default_user(), run_here=not queue)
    if queue:
        print(f"Queued data-size curve job {job.id}; see it with `python -m pipeline train --check-job {job.id}`.")
        return 0
    print(f"Job {job.id}: data-size curve (Ctrl-C cancels; a resume keeps the sizes scored).", file=sys.stderr)
    try:
        finished, _ = foreground.run(job, jobs.kind_function(job.kind), lambda d, t, m: print(m, file=sys.stderr))
    except KeyboardInterrupt:
        print(f"\nStopped; resume with `python -m pipeline jobs resume {job.id}`.", file=sys.stderr)
        return 130
    _print_curve(finished.id)
    return 0 if finished.status == "succeeded" else 1


def _print_curve(job_id: int) -> None:
    from pipeline.training import data_curve

    curve = data_curve.result(job_id)
    points = ([curve.base] if curve.base else []) + curve.points
    for point in points:
        print(
            f"{point['examples']:>6} examples: persona likelihood {point['mean']:.3f} "
            f"({point['lower']:.3f} – {point['upper']:.3f})"
        )
    print(curve.verdict)


def _follow(job) -> int:
    from tqdm import tqdm

    from pipeline import jobs
    from pipeline.jobs import foreground

    print(f"Job {job.id}: training (Ctrl-C cancels and keeps a checkpoint).", file=sys.stderr)
    with tqdm(unit="step", dynamic_ncols=True) as bar:

        def advance(done: int, total: int, message: str) -> None:
            bar.total, bar.n = total or bar.total, done
            bar.set_postfix_str(message[:40])
            bar.refresh()

        try:
            finished, _ = foreground.run(job, jobs.kind_function(job.kind), advance)
        except KeyboardInterrupt:
            print(f"\nStopped; resume with `python -m pipeline jobs resume {job.id}`.", file=sys.stderr)
            return 130
    return _check(finished.id, False) if finished.status == "succeeded" else 1


def _check(job_id: int, as_json: bool) -> int:
    from pipeline import jobs
    from pipeline.training import service

    job = jobs.get(job_id)
    if job.kind == "data_curve":
        if as_json:
            from dataclasses import asdict

            from pipeline.training import data_curve

            print(json.dumps({"status": job.status, **asdict(data_curve.result(job_id))}, indent=2))
        else:
            print(f"job {job_id}: {job.status}" + (f"; error: {job.error}" if job.error else ""))
            _print_curve(job_id)
        return 0 if job.status in ("succeeded", "running", "queued") else 1

    row = next((r for r in service.past_jobs(limit=10_000) if r["job"] == job_id), None)
    if row is None:
        raise UserFacingError(f"There is no training job {job_id}.")
    if as_json:
        print(json.dumps(row, default=str, indent=2))
    else:
        losses = (
            ", ".join(f"{k} {row[k]:.4f}" for k in ("train loss", "validation loss") if row[k] is not None)
            or "no losses yet"
        )
        print(
            f"job {job_id}: {row['status']}; {losses}"
            + (f"; model {row['model']}" if row["model"] else "")
            + (f"; error: {row['error']}" if row["error"] else "")
            + (f"; {row['why it stopped']}" if row["why it stopped"] else "")
        )
    return 0 if row["status"] in ("succeeded", "running", "queued") else 1
