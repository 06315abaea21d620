"""`python -m pipeline models list|show|deploy|rollback|archive|restore|export|bench|retrain`: the Models page,
scripted."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

ACTIONS = ["list", "show", "deploy", "rollback", "archive", "restore", "export", "bench", "retrain"]


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="the model registry: list, show, deploy, roll back, archive, export, bench")
    p.add_argument("models_action", choices=ACTIONS, metavar="ACTION", help=" | ".join(ACTIONS))
    p.add_argument("model", nargs="?", help="a model's name, id or reference (rollback: a persona)")
    p.add_argument("--persona", help="deploy: the persona it serves (default: the one it was trained for)")
    p.add_argument("--notes", default="", help="why: kept in the history")
    p.add_argument(
        "--format",
        dest="export_format",
        choices=["adapter", "merged", "gguf", "ollama"],
        help="export: adapter (default for a fine-tune), merged weights, a GGUF file, or GGUF + Ollama Modelfile",
    )
    p.add_argument("--merged", action="store_true", help="export: the same as --format merged")
    p.add_argument("--type", dest="gguf_type", default="Q8_0", choices=["F16", "Q8_0", "Q4_1"],
                   help="export, gguf/ollama: F16 (exact), Q8_0 (default: near exact), Q4_1 (smallest)")  # fmt: skip
    p.add_argument("--output", type=Path, help="export: copy the zip here")
    p.add_argument(
        "--backend",
        choices=["local", "together"],
        default="local",
        help="retrain: on this machine (default) or at Together, the cloud choice",
    )
    p.add_argument("--base", default="", help="retrain: the open base to train on (default: the backend's)")
    p.add_argument("--plan-only", action="store_true", help="retrain: show what would happen; start nothing")
    p.add_argument("--json", action="store_true", help="print JSON, for scripts")
    p.set_defaults(func=_cmd_models)


def _cmd_models(args) -> int:
    from pipeline import jobs, personas
    from pipeline.errors import UserFacingError
    from pipeline.registry import figures, lifecycle

    action, who = args.models_action, jobs.default_user()
    if action == "list":
        rows = [figures.summary(entry) for entry in lifecycle.list_models()]
        if args.json:
            print(json.dumps(rows, indent=2, default=str))
        else:
            for row in rows:
                print(f"{row['name']:<48} {row['backend']:<9} {row['status']:<10} {row.get('rating') or ''}")
        return 0
    if action == "rollback":
        if not args.model and not args.persona:
            raise UserFacingError("Say which persona to roll back: `models rollback PERSONA`.")
        entry = lifecycle.rollback(personas.get_persona(args.persona or args.model).id, who, args.notes)
        print(f"Rolled back: {entry.name} is deployed again.")
        return 0
    if not args.model:
        raise UserFacingError(f"Say which model: `models {action} NAME`.")
    entry = lifecycle.get(args.model)
    if action == "show":
        shown = {"summary": figures.summary(entry), "history": lifecycle.history(model_id=entry.id)}
        print(json.dumps(shown, indent=2, default=str))
    elif action == "deploy":
        persona_id = personas.get_persona(args.persona).id if args.persona else None
        entry = lifecycle.deploy(entry.id, persona_id, who, args.notes)
        print(f"Deployed {entry.name}.")
    elif action == "archive":
        print(f"Archived {lifecycle.archive(entry.id, who, args.notes).name}.")
    elif action == "restore":
        print(f"{lifecycle.restore(entry.id, who, args.notes).name} is a candidate again.")
    elif action == "export":
        return _export(entry, args, who)
    elif action == "retrain":
        return _retrain(entry, args, who)
    elif action == "bench":
        result = figures.measure_performance(entry.id)
        print(json.dumps(result, indent=2, default=str) if args.json else
              f"{entry.name}: {result['tokens_per_s']:.1f} tokens/s, first token {result['ttft_ms']:.0f} ms, "
              f"latency p50 {result['latency_p50_ms']:.0f} ms, p95 {result['latency_p95_ms']:.0f} ms")  # fmt: skip
    return 0


def _export(entry, args, who: str) -> int:
    """`models export NAME --format adapter|merged|gguf|ollama [--type Q8_0]`: run as a job here, with a bar."""
    from tqdm import tqdm

    from pipeline import jobs
    from pipeline.jobs import foreground
    from pipeline.llm import embedded
    from pipeline.registry import export, export_job

    fmt = args.export_format or ("merged" if args.merged else None)
    if fmt is None:  # a fine-tune's adapter by default; a full model has none
        folder = embedded.model_path(export.refuse_unless_local(entry))
        fmt = "adapter" if export.is_adapter(folder) else "merged"
    job = export_job.start(entry.id, fmt, args.gguf_type, started_by=who, run_here=True)
    print(f"Job {job.id}: {job.name} (Ctrl-C cancels; nothing is left behind).", file=sys.stderr)
    with tqdm(unit="step", dynamic_ncols=True, file=sys.stderr) as bar:

        def advance(done: int, total: int, message: str) -> None:
            bar.total, bar.n = total or bar.total, done
            bar.set_postfix_str(message[:40])
            bar.refresh()

        try:
            finished, _ = foreground.run(job, jobs.kind_function("export"), advance)
        except KeyboardInterrupt:
            print("\nCancelled; nothing was kept.", file=sys.stderr)
            return 130
    result = export_job.result(finished.id)
    if finished.status != "succeeded" or result is None:
        print(f"Export {finished.status}: {finished.error or 'nothing was kept'}", file=sys.stderr)
        return 1
    path = export.exported(result["file"])
    if args.output:
        path = Path(shutil.copy(path, args.output))
    if args.json:
        print(json.dumps({**result, "path": str(path)}, indent=2))
        return 0
    print(path)
    print(f"{result['bytes'] / 1e6:.1f} MB in {result['seconds']:.0f} s", file=sys.stderr)
    check = result.get("check")
    if check:
        print(f"checked: same next token as the model at {check['top1_agreement']:.1%} of {check['positions']} "
              f"positions (needed {check['min_top1']:.0%}); largest logit difference "
              f"{check['max_logit_difference']:.3g}", file=sys.stderr)  # fmt: skip
    if result.get("ollama"):
        commands = result["ollama"]
        print(f"run it in Ollama (unzip, then in the folder):\n  {commands['create']}\n  {commands['run']}",
              file=sys.stderr)  # fmt: skip
    if result.get("llama_cpp"):
        print(f"or with llama.cpp:\n  {result['llama_cpp']}", file=sys.stderr)
    if fmt in ("adapter", "merged"):
        serving = export.vllm_command(entry)
        print(f"serve it: {serving['command']}\nthen add it to the studio:\n{serving['secrets_snippet']}",
              file=sys.stderr)  # fmt: skip
    return 0


def _retrain(entry, args, who: str) -> int:
    """`models retrain NAME --backend local|together --base MODEL`: the same snapshot and settings on an open base."""
    from pipeline.errors import UserFacingError
    from pipeline.registry import retrain

    plan = retrain.plan_retrain(entry.id, args.backend, args.base)
    summary = plan.summary()
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        changed = ", ".join(f"{k} {before or '(default)'} → {after}" for k, (before, after) in plan.changed.items())
        print(
            f"Retrain {entry.name} on {plan.config.resolved_base()} ({plan.config.backend}): dataset {plan.dataset} "
            f"(content hash {plan.dataset_hash[:12]}, matches), the same settings but {changed}; then evaluated "
            f"{plan.evaluation}.",
            file=sys.stderr,
        )
        for note in summary["notes"]:
            print(f"note: {note}", file=sys.stderr)
    if not plan.can_start:
        raise UserFacingError(plan.training.refusal())
    if args.plan_only:
        return 0
    job = retrain.start_retrain(entry.id, args.backend, args.base, started_by=who)
    print(
        f"Queued training job {job.id} ({plan.config.name}); when it succeeds, the evaluation follows by itself. "
        f"Follow it with `python -m pipeline jobs show {job.id}`."
    )
    return 0
