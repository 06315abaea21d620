"""`python -m pipeline evaluate …` and `python -m pipeline report RUN`: the Evaluate and Leaderboard pages, scripted."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="rate contestants (model + prompt mode) against each other on held-out prompts")
    p.add_argument("--persona", required=True, help="whose persona the contestants should carry")
    p.add_argument(
        "--contestant",
        action="append",
        required=True,
        metavar="MODEL[:MODE]",
        help="repeatable; MODE is plain (default), prompt or fewshot, e.g. local/smollm2-135m-instruct:prompt",
    )
    p.add_argument("--dataset", help="draw held-out prompts from this dataset's validation split")
    p.add_argument("--prompt", action="append", default=[], help="a custom prompt (repeatable)")
    p.add_argument("--prompts-file", type=Path, help="custom prompts: text (blank-line separated) or JSONL `prompt`")
    p.add_argument("--held-out", type=int, default=12, help="at most this many held-out prompts (default 12)")
    p.add_argument("--no-adversarial", action="store_true", help="leave out the break-character suffix variants")
    p.add_argument("--no-keep-going", action="store_true", help='leave out the "Keep going." second turns')
    p.add_argument("--judge", default="offline", help="offline (no key) or a gateway model, e.g. openai/gpt-4o")
    p.add_argument("--anchor", help="the contestant held at 1000 (default: the base model without a prompt)")
    p.add_argument("--max-battles", type=int, default=60, help="battle budget (pair × prompt, both orders)")
    p.add_argument("--max-cost", type=float, default=0.0, help="stop when calls have cost this many dollars")
    p.add_argument("--target-width", type=float, default=0.0, help="stop when every interval is this narrow")
    p.add_argument("--overall-only", action="store_true", help="judge overall only, not each trait")
    p.add_argument("--no-trait-scores", action="store_true", help="skip the 1–5 trait scores")
    p.add_argument("--max-tokens", type=int, default=256, help="longest reply each contestant may give")
    p.add_argument(
        "--drift-turns", type=int, default=0, help="persona drift: turns a simulated user continues (0: off)"
    )
    p.add_argument("--drift-prompts", type=int, default=2, help="persona drift: how many openings it continues")
    p.add_argument("--drift-user", default="", help="persona drift: the model playing the user (default: built-in)")
    p.add_argument("--queue", action="store_true", help="hand the run to the background worker and return")
    p.add_argument("--json", action="store_true", help="print the leaderboard as JSON at the end")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("report", help="write an evaluation run's reports (JSON, battles, Markdown, HTML)")
    p.add_argument("run", type=int, help="the evaluation job's id")
    p.set_defaults(func=_cmd_report)


def _cmd_evaluate(args) -> int:
    from pipeline import jobs
    from pipeline.evaluation import prompts, service
    from pipeline.jobs import foreground

    custom = list(args.prompt)
    if args.prompts_file:
        custom += prompts.parse_prompt_file(args.prompts_file.name, args.prompts_file.read_bytes())
    plan = service.plan(
        persona=args.persona,
        contestants=args.contestant,
        judge_model=args.judge,
        dataset=args.dataset,
        custom_prompts=custom,
        adversarial=not args.no_adversarial,
        keep_going=not args.no_keep_going,
        held_out_limit=args.held_out,
        max_battles=args.max_battles,
        max_cost=args.max_cost,
        target_width=args.target_width,
        criteria_traits=not args.overall_only,
        trait_scores=not args.no_trait_scores,
        max_tokens=args.max_tokens,
        anchor=args.anchor,
        drift_turns=args.drift_turns,
        drift_prompts=args.drift_prompts,
        drift_user=args.drift_user,
    )
    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(
        f"{len(plan.contestants)} contestants, {len(plan.prompt_set.prompts)} prompts "
        f"({', '.join(f'{k} {v}' for k, v in plan.prompt_set.groups().items())}), up to "
        f"{min(plan.max_battles, plan.possible_battles)} battles, judge {plan.judge}",
        file=sys.stderr,
    )
    job = service.start(plan, run_here=not args.queue)
    if args.queue:
        print(f"Queued evaluation {job.id}; follow it with `python -m pipeline jobs show {job.id}`.")
        return 0
    from tqdm import tqdm

    with tqdm(dynamic_ncols=True) as bar:

        def advance(done: int, total: int, message: str) -> None:
            bar.total, bar.n = total or bar.total, done
            bar.set_postfix_str(message[:40])
            bar.refresh()

        try:
            finished, _ = foreground.run(job, jobs.kind_function(job.kind), advance)
        except KeyboardInterrupt:
            print(f"\nStopped; resume with `python -m pipeline jobs resume {job.id}`.", file=sys.stderr)
            return 130
    return _print_board(finished.id, args.json) if finished.status == "succeeded" else 1


def _print_board(job_id: int, as_json: bool) -> int:
    from pipeline.evaluation import leaderboard, report

    board = leaderboard.build(job_id)
    if as_json:
        print(json.dumps(report.comparison(board) | {"battles": board.battles}, indent=2, default=str))
        return 0
    print(board.judge_label)
    if board.overall is None:
        print("No rated battles.")
    elif board.state == "too_few":
        print(board.headline())
    else:
        print("\n".join(report._table(board.overall)))
        print("\n".join(board.statements()))
    counts = board.counts()
    print(f"{counts['rated']} rated battles, {counts.get('missing', 0)} missing, {counts.get('unparsed', 0)} unparsed")
    for row in board.likelihood:
        print(f"persona likelihood {row['contestant']}: {row['mean']:.3f} ({row['lower']:.3f}–{row['upper']:.3f})")
    for row in board.drift:
        if row["mean"] is not None:
            what = "judge's trait score" if row.get("scorer") == "judge" else "similarity"
            print(f"persona drift {row['contestant']} turn {row['turn']}: {what} {row['mean']:+.3f} (n={row['n']})")
    for row in board.fidelity:
        if row["gap_closed"] is not None:
            print(
                f"prompt fidelity {row['contestant']}: {row['gap_closed']:.0f}% of the gap closed "
                f"({row['gap_lower']:.0f}%–{row['gap_upper']:.0f}%), KL {row['kl']:.3f}/token"
            )
    return 0


def _cmd_report(args) -> int:
    from pipeline.evaluation import report

    paths = report.write(args.run)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0
