"""`python -m pipeline datasets build|validate|export|import|list`: the Datasets page for scripts."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from pipeline import storage
from pipeline.errors import UserFacingError


def add_parser(sub) -> None:
    from pipeline.datasets import formats, targets

    p = sub.add_parser("datasets", help="build, validate, export, import or list fine-tuning datasets")
    p.add_argument(
        "dataset_action",
        choices=["build", "validate", "export", "import", "list"],
        metavar="ACTION",
        help="build | validate | export | import | list",
    )
    p.add_argument("target", nargs="?", help="dataset name (build, export) or file (validate, import)")
    p.add_argument("--persona", help="whose examples (build, import, export --preferences)")
    p.add_argument("--format", choices=list(formats.FORMATS), help="file format (detected when left out)")
    p.add_argument(
        "--base-model",
        default=targets.DEFAULT.base_model,
        help=f"check against this base model's limits: {', '.join(t.base_model for t in targets.TARGETS)}",
    )
    p.add_argument("--epochs", type=int, help="epochs for the billed-token estimate (default: the backend's)")
    p.add_argument("--json", action="store_true", help="print the result as JSON, for scripts")
    build = p.add_argument_group("build")
    build.add_argument("--gold-only", action="store_true", help="only gold-starred examples")
    build.add_argument(
        "--status",
        action="append",
        choices=["pending", "accepted", "rejected"],
        help="statuses to include (repeatable; default accepted)",
    )
    build.add_argument("--min-rating", type=int, help="only examples rated at least this (1-5)")
    build.add_argument("--job", type=int, help="only this generation run's examples")
    build.add_argument("--validation", type=float, default=0.1, help="validation share (default 0.1)")
    build.add_argument("--seed", type=int, default=13)
    build.add_argument("--with-system-prompt", action="store_true", help="put the persona's system prompt in")
    build.add_argument(
        "--include-flagged", action="store_true", help="include examples the quality gate flagged (left out by default)"
    )
    export = p.add_argument_group("export")
    export.add_argument("--part", choices=["train", "validation"], default="train")
    export.add_argument("--output", help="write the file here (default: print its path)")
    export.add_argument("--preferences", action="store_true", help="export the persona's DPO preference pairs")
    p.set_defaults(func=run)


def run(args) -> int:
    from pipeline.datasets import targets

    try:
        target = targets.get(args.base_model)
    except KeyError:
        raise UserFacingError(
            f"Unknown base model {args.base_model!r}; see --help for the ones the studio knows."
        ) from None
    action = args.dataset_action
    if action in ("validate", "import", "build") and not args.target:
        raise UserFacingError(f"`datasets {action}` needs a {'name' if action == 'build' else 'file'}.")
    return {"list": _list, "validate": _validate, "import": _import, "build": _build, "export": _export}[action](
        args, target
    )


def _persona_id(name: str | None) -> int:
    from pipeline import personas

    if not name:
        raise UserFacingError("Give --persona.")
    return personas.get_persona(name).id


def _read(path_text: str) -> tuple[bytes, str]:
    path = Path(path_text)
    if not path.is_file():
        raise UserFacingError(f"No such file: {path}")
    return path.read_bytes(), path.name


def _validate(args, target) -> int:
    from pipeline.datasets import checks

    data, name = _read(args.target)
    report = checks.check_file(data, name, target, args.format, args.epochs).report
    print(json.dumps(report.to_dict(), indent=2) if args.json else render(report, name))
    return 0 if report.ok else 1


def _import(args, target) -> int:
    from pipeline.datasets import importer

    data, name = _read(args.target)
    result = importer.import_file(data, name, _persona_id(args.persona), args.format)
    if args.json:
        print(json.dumps({"added": result.added, "duplicates": result.duplicates, **result.report.to_dict()}, indent=2))
    else:
        print(render(result.report, name, with_tokens=False))
        print(result.summary())
    return 0 if not result.report.errors else 1


def _build(args, target) -> int:
    from pipeline.datasets import build
    from pipeline.review.filters import ExampleFilter

    flt = ExampleFilter(
        persona_id=_persona_id(args.persona),
        job_id=args.job,
        statuses=args.status or ["accepted"],
        gold_star=True if args.gold_only else None,
        min_rating=args.min_rating,
    )
    plan = build.preview(
        flt, args.validation, args.seed, args.with_system_prompt, target, args.epochs, args.include_flagged
    )
    if not plan.report.ok:
        print(json.dumps(plan.report.to_dict(), indent=2) if args.json else render(plan.report, args.target))
        return 1
    dataset = build.save(args.target, plan)
    if args.json:
        print(
            json.dumps(
                {
                    "name": dataset.name,
                    "content_hash": dataset.content_hash,
                    "counts": dataset.counts,
                    "folder": storage.describe("datasets", dataset.name),
                    "report": plan.report.to_dict(),
                },
                indent=2,
            )
        )
    else:
        print(render(plan.report, args.target))
        print(
            f"Saved dataset {dataset.name!r}: {dataset.counts['train']} train, {dataset.counts['validation']} "
            f"validation, {dataset.counts['preference_pairs']} preference pairs, "
            f"in {storage.describe('datasets', dataset.name)}"
        )
        if plan.flagged_left_out:
            print(f"{plan.flagged_left_out} examples flagged by the quality gate left out (--include-flagged).")
    return 0


def _export(args, target) -> int:
    from pipeline.datasets import build, formats, preferences

    if args.preferences:
        text = formats.dumps_jsonl(preferences.pairs_for_persona(_persona_id(args.persona)))
        if args.output:
            Path(args.output).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return 0
    if not args.target:
        raise UserFacingError("`datasets export` needs a dataset name (or --preferences --persona P).")
    source = build.file_path(build.get_dataset(args.target), args.format or "openai", args.part)
    if args.output:
        shutil.copyfile(source, args.output)
        Path(args.output).chmod(0o644)
        print(f"Wrote {args.output}")
    else:
        print(source)
    return 0


def _list(args, target) -> int:
    from pipeline.datasets import build

    rows = [
        {
            "name": d.name,
            "train": d.counts.get("train", 0),
            "validation": d.counts.get("validation", 0),
            "preference_pairs": d.counts.get("preference_pairs", 0),
            "content_hash": d.content_hash[:12],
            "created_at": d.created_at.isoformat(timespec="seconds"),
            "filter": d.filter,
        }
        for d in build.list_datasets()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("No datasets yet: `python -m pipeline datasets build NAME --persona P`.")
    for r in [] if args.json else rows:
        print(f"{r['name']}\t{r['train']} train / {r['validation']} validation\t{r['content_hash']}\t{r['created_at']}")
    return 0


def render(report, source: str, with_tokens: bool = True) -> str:
    """The report as a person reads it in a terminal."""
    from pipeline.datasets.checks import money

    lines = [
        f"{source}: {report.valid} valid, {report.invalid} invalid"
        + (f" (formats: {', '.join(f'{k} {v}' for k, v in report.formats.items())})" if report.formats else "")
    ]
    for problem in report.problems:
        field = f" [{problem.field}]" if problem.field else ""
        lines.append(f"  {problem.severity}: {problem.where()}{field} {problem.kind}: {problem.message}")
    stats = report.token_stats
    if with_tokens and stats:
        lines.append(
            f"  tokens per example ({report.target}): min {stats['min']}, median {stats['median']}, "
            f"p95 {stats['p95']}, max {stats['max']}; {stats['total']:,} in all"
        )
        for row in report.backends:
            mark = "*" if row["chosen"] else " "
            lines.append(
                f"  {mark} {row['backend']:8} {row['base_model']:48} {row['epochs']:>2} epochs "
                f"{row['billed_tokens']:>12,} billed tokens  {money(row['cost_usd'])}"
                + ("" if row["eligible"] else "  (not eligible)")
            )
    lines.append("OK" if report.ok else f"{len(report.errors)} error(s)")
    return "\n".join(lines)
