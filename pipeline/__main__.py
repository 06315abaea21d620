"""The studio's command line: `python -m pipeline --help`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.errors import UserFacingError


def _cmd_init(args) -> int:
    from pipeline import startup

    info = startup.init(with_model=not args.skip_model)
    print(f"Database ready. Sample personas added: {info['personas_added']}.")
    if info["embedded_model"]:
        print(f"Embedded model ready at {info['embedded_model']}.")
    return 0


def _cmd_db(args) -> int:
    from pipeline import db

    if args.action == "upgrade":
        db.get_engine()
        print("Database is at the newest schema.")
    else:
        if not args.message:
            raise UserFacingError('Give the migration a message, e.g. `db revision "add example tags"`.')
        print(f"Wrote {db.new_revision(args.message)}; read it, then commit it.")
    return 0


def _cmd_chat(args) -> int:
    from pipeline import personas, playground

    persona_id = personas.get_persona(args.persona).id if args.persona else None
    result = playground.reply(
        [args.model, *args.fallback],
        args.message,
        persona_id=persona_id,
        with_system_prompt=bool(args.persona) and not args.no_system_prompt,
        temperature=args.temperature,
        max_tokens=args.max_tokens,
    )
    if args.json:
        print(json.dumps(result.__dict__, default=lambda o: o.__dict__, indent=2))
        return 0
    print(result.text)
    for attempt in result.attempts:
        print(f"[fell back] {attempt.model}: {attempt.error}", file=sys.stderr)
    print(
        f"[{result.model_used}] {result.prompt_tokens}+{result.completion_tokens} tokens, "
        f"{result.latency_ms} ms, ${result.cost_usd:.6f}{' (cached)' if result.cached else ''}",
        file=sys.stderr,
    )
    return 0


def _cmd_generate(args) -> int:
    from tqdm import tqdm

    from pipeline import personas, settings
    from pipeline.generation import foreground, runner
    from pipeline.generation.config import EMBEDDED_REASON, defaults_for, load, uses_embedded

    config = None
    if args.resume is None:
        if not args.persona and not args.system_prompt:
            raise UserFacingError("Give --persona NAME or --system-prompt TEXT (or --resume JOB).")
        chain = args.model or None
        values = {
            "persona_id": personas.get_persona(args.persona).id if args.persona else None,
            "system_prompt": args.system_prompt,
            "examples": args.examples,
            "concurrency": args.concurrency,
            "temperature": args.temperature,
            "include_system_prompt": args.include_system_prompt,
            "document_words": args.document_words,
            "seed": args.seed,
            "name": Path(args.output).name.removesuffix(".jsonl") if args.output else "",
        }
        for stage in ("scenario", "document", "response"):
            stage_chain = getattr(args, f"{stage}_model") or chain
            if stage_chain:
                values[f"{stage}_models"] = stage_chain
        values["response_words"] = args.response_words
        stages = ("scenario", "document", "response")
        chains = [values.get(f"{stage}_models", [settings.EMBEDDED_MODEL]) for stage in stages]
        fit = {k: v for k, v in defaults_for(chains).items() if values.get(k) is None}
        if uses_embedded(chains) and fit:
            print(EMBEDDED_REASON, file=sys.stderr)
        config = load({**fit, **{k: v for k, v in values.items() if v is not None}})
    output = Path(args.output) if args.output else None
    job = foreground.start(config, output, args.resume)
    print(f"Job {job.id}: generating (resume later with --resume {job.id}).", file=sys.stderr)
    with tqdm(total=job.params.get("examples"), unit="example", dynamic_ncols=True) as bar:

        def advance(done: int, total: int, message: str) -> None:
            bar.total = total or bar.total
            bar.n = done
            bar.set_postfix_str(message[:40])
            bar.refresh()

        try:
            finished, paths = foreground.run(job, advance)
        except KeyboardInterrupt:
            print(f"\nStopped. What was made is saved; finish with --resume {job.id}.", file=sys.stderr)
            return 130
    done, failed, _ = runner.progress(job.id)
    print(f"{finished.status}: {done - failed} examples ready, {failed} failed. Training file: {paths['training']}")
    if failed:
        print(f"See why with: python -m pipeline jobs logs {job.id}", file=sys.stderr)
    return 0 if finished.status == "succeeded" else 1


def _cmd_import_transcripts(args) -> int:
    from pipeline import personas
    from pipeline.generation import service

    persona = personas.get_persona(args.persona)
    missing = [n for n in args.files if not Path(n).is_file()]
    for name in missing:
        print(f"error: No such file: {name}", file=sys.stderr)
    files = [(Path(n).name, Path(n).read_bytes()) for n in args.files if n not in missing]
    report = service.import_transcripts(persona.id, files, args.speaker, args.extract_with)
    for row in report:
        if row["problem"]:
            print(f"error: {row['problem']}", file=sys.stderr)
        else:
            extra = f", {row['already there']} already there" if row["already there"] else ""
            print(f"{row['file']}: {row['added']} pairs added{extra}")
    if args.few_shot:
        Path(args.few_shot).write_text(service.few_shot_json(service.few_shot(persona.id)), encoding="utf-8")
        print(f"Few-shot set written to {args.few_shot}")
    return 1 if missing or any(row["problem"] for row in report) else 0


def _cmd_jobs(args) -> int:
    from pipeline import jobs
    from pipeline.jobs import board

    if args.action == "list":
        rows = board.rows()
        if not rows:
            print("No jobs yet.")
        for row in rows:
            print(
                f"#{row['id']:<5} {row['status']:<14} {row['kind']:<14} {row['done']:<22} "
                f"{row['elapsed']:>8}  {row['name']}"
            )
        return 0
    if args.job_id is None:
        raise UserFacingError(f"`jobs {args.action}` needs a job id.")
    if args.action == "show":
        detail = board.detail(args.job_id)
        job = detail.job
        print(f"Job #{job.id}: {job.name} ({job.kind}), {detail.badge}")
        print(detail.where)
        print(
            f"progress: {job.progress_done}/{job.progress_total} {job.progress_unit}  elapsed: {detail.elapsed}"
            f"  eta: {detail.eta or '-'}  cost: ${detail.cost_usd:.4f}  started by: {job.started_by or '—'}"
        )
        if job.error:
            print(f"reason: {job.error}")
        print(f"params: {json.dumps(job.params)}")
        print(f"metrics: {len(detail.metrics)} steps")
        for said in (detail.stopping, detail.warning):
            if said:
                print(said)
    elif args.action == "cancel":
        jobs.request_cancel(args.job_id)
        print(f"Cancel requested for job {args.job_id}; the monitor stops it.")
    elif args.action == "logs":
        print(board.detail(args.job_id, log_lines=args.lines).log)
    elif args.action == "resume":
        jobs.requeue(args.job_id)
        print(f"Job {args.job_id} is queued again; the monitor picks it up where it stopped.")
    elif args.action == "rerun":
        from pipeline.training import runs

        job, changed = runs.rerun(args.job_id, runs.parse_sets(args.set), started_by=jobs.default_user())
        for change in changed:
            print(f"  {change['setting']}: {change['was']} → {change['now']}")
        print(f"Queued job {job.id}, a rerun of job {args.job_id} with {len(changed)} change(s).")
    return 0


def _cmd_monitor(args) -> int:
    from pipeline.jobs import monitor

    return monitor.main()


def _cmd_storage(args) -> int:
    """Where artifacts go, and whether this machine can write there (the check a job's submit makes)."""
    from pipeline import storage

    print(f"Artifacts (datasets, models, exports, reports): {storage.where()}")
    if storage.configured():
        storage.check()
        print("This machine can write there and read it back.")
    return 0


def _cmd_personas(args) -> int:
    from pipeline import personas

    if args.action == "list":
        for p in personas.list_personas():
            print(f"{p.name}\t{len(p.traits)} traits\t{', '.join(t['name'] for t in p.traits)}")
    elif args.action == "export":
        print(personas.export_yaml(personas.get_persona(args.name).id))
    elif args.action == "import":
        path = Path(args.name)
        if not path.is_file():
            raise UserFacingError(f"No such file: {path}")
        persona = personas.import_yaml(path.read_bytes(), source=path.name, overwrite=args.replace)
        print(f"Imported persona {persona.name!r} with {len(persona.traits)} traits.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description="Persona Studio from the command line.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", help="create or migrate the database, add sample personas, prepare the embedded model")
    p.add_argument("--skip-model", action="store_true", help="do not convert the embedded model now")
    p.set_defaults(func=_cmd_init)

    p = sub.add_parser("db", help="apply migrations, or write a new one after changing pipeline/models.py")
    p.add_argument("action", choices=["upgrade", "revision"])
    p.add_argument("message", nargs="?", help="revision: what the migration changes")
    p.set_defaults(func=_cmd_db)

    p = sub.add_parser("chat", help="send one message to a model through the gateway")
    p.add_argument("message")
    p.add_argument("--model", default="local/smollm2-135m-instruct")
    p.add_argument("--fallback", action="append", default=[], help="a model to try if the first fails (repeatable)")
    p.add_argument("--persona", help="use this persona's system prompt")
    p.add_argument("--no-system-prompt", action="store_true", help="with --persona: leave its system prompt out")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.set_defaults(func=_cmd_chat)

    p = sub.add_parser("generate", help="generate training examples for a persona (scenario → document → response)")
    p.add_argument("--persona", help="a stored persona's name")
    p.add_argument("--system-prompt", help="use this prompt instead of a stored persona")
    p.add_argument("--examples", type=int, default=10)
    p.add_argument("--output", help="the training file to write (.jsonl); _detailed.json and _metadata.json beside it")
    p.add_argument("--resume", type=int, metavar="JOB", help="finish an earlier generation job")
    p.add_argument("--concurrency", type=int, help="examples in parallel (2 with the built-in model, else 4)")
    p.add_argument("--response-words", type=int, help="reply length asked for (60 with the built-in model, else 300)")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--model", action="append", help="model chain for every stage, first choice first (repeatable)")
    for stage in ("scenario", "document", "response"):
        p.add_argument(f"--{stage}-model", action="append", help=f"model chain for the {stage} stage (repeatable)")
    p.add_argument(
        "--document-words",
        type=lambda v: tuple(int(x) for x in v.split("-")),
        metavar="MIN-MAX",
        help="document length in words, e.g. 500-1000 (50-150 with the built-in model)",
    )
    p.add_argument("--include-system-prompt", action="store_true", help="keep the system prompt in each example")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("import-transcripts", help="add chat transcripts of the persona as examples")
    p.add_argument("files", nargs="+", help="'Name: message' text, or JSON / JSONL chat exports")
    p.add_argument("--persona", required=True)
    p.add_argument("--speaker", help="in 'Name: message' text, the name whose replies are the persona's")
    p.add_argument(
        "--extract-with",
        action="append",
        metavar="MODEL",
        help="for files in other formats: a model chain that rewrites them as dialogue lines",
    )
    p.add_argument("--few-shot", metavar="FILE", help="also write a few-shot set from the imported exchanges")
    p.set_defaults(func=_cmd_import_transcripts)

    p = sub.add_parser("jobs", help="list jobs, show one, cancel, resume or rerun one, or print its log")
    p.add_argument("action", choices=["list", "show", "cancel", "resume", "rerun", "logs"])
    p.add_argument("job_id", nargs="?", type=int)
    p.add_argument("--lines", type=int, default=200, help="logs: how many lines from the end")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="rerun: a setting to change from the job's config, e.g. learning_rate=1e-4 (repeatable)",
    )
    p.set_defaults(func=_cmd_jobs)

    p = sub.add_parser("monitor", help="run the background monitor in the foreground (the app starts one itself)")
    p.set_defaults(func=_cmd_monitor)

    p = sub.add_parser("personas", help="list, export or import personas")
    p.add_argument("action", choices=["list", "export", "import"])
    p.add_argument("name", nargs="?", help="persona name (export) or YAML file (import)")
    p.add_argument("--replace", action="store_true", help="import: replace a persona of the same name")
    p.set_defaults(func=_cmd_personas)

    p = sub.add_parser("storage", help="where artifacts are stored (STUDIO_STORAGE_URI); can this machine write there")
    p.add_argument("what", nargs="?", choices=["check"], default="check")
    p.set_defaults(func=_cmd_storage)

    from pipeline.datasets import cli as datasets_cli
    from pipeline.evaluation import cli as evaluation_cli
    from pipeline.evaluation import ratings_cli
    from pipeline.registry import cli as registry_cli
    from pipeline.review import cli as review_cli
    from pipeline.training import cli as training_cli

    datasets_cli.add_parser(sub)
    training_cli.add_parser(sub)
    evaluation_cli.add_parser(sub)
    ratings_cli.add_parser(sub)
    registry_cli.add_parser(sub)
    review_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "action", None) in ("export", "import") and not args.name:
        print("error: give a persona name (export) or a YAML file (import)", file=sys.stderr)
        return 2
    try:
        # `ratings` reads a file and needs no database; `jobs` needs only the migrated store
        if args.command == "jobs":
            from pipeline.db import get_engine

            get_engine()
        elif args.command not in ("init", "db", "ratings", "storage"):
            from pipeline import startup

            startup.init(with_model=False)  # migrations and sample personas, as the app does
        from pipeline.jobs import keys

        with keys.command_line():  # jobs queued from here must not count on this shell's keys
            return args.func(args)
    except UserFacingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
