"""`python -m pipeline ratings BATTLES.jsonl`: Bradley-Terry ratings with 95% intervals from a battles file."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    p = sub.add_parser("ratings", help="rate models from pairwise battles (Chatbot Arena JSONL or a JSON array)")
    p.add_argument("battles", help="a file of {model_a, model_b, winner} battles, one per line or as a JSON array")
    p.add_argument("--anchor", metavar="MODEL", help="hold this model at 1000 (default: the mean is 1000)")
    p.add_argument("--rounds", type=int, default=1000, help="bootstrap rounds for the intervals (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--json", action="store_true", help="print the ratings as JSON, for scripts")
    p.set_defaults(func=_cmd_ratings)


def _cmd_ratings(args) -> int:
    from pipeline.errors import UserFacingError
    from pipeline.evaluation import ratings

    if args.rounds < 0:
        raise UserFacingError("--rounds cannot be negative.")
    battles = ratings.read_battles_file(args.battles)
    models = sorted({name for a, b, _ in battles for name in (a, b)})
    if args.anchor and args.anchor not in models:
        raise UserFacingError(f"--anchor {args.anchor!r} is not among the models in the file: {', '.join(models)}.")
    result = ratings.rate(battles, anchor=args.anchor, rounds=args.rounds, seed=args.seed)
    if args.json:
        out = result.to_dict()
        out["parameters"] = {"file": args.battles, "anchor": args.anchor, "rounds": args.rounds, "seed": args.seed}
        out["total_battles"] = len(battles)
        print(json.dumps(out, indent=2))
        return 0
    print(render(result.table(), len(battles), args.rounds))
    return 0


def render(rows: list[dict], total: int, rounds: int) -> str:
    width = max([len("contestant"), *(len(r["contestant"]) for r in rows)])
    lines = [f"{'rank':>4}  {'contestant':<{width}}  {'rating':>7}  {'95% interval':>17}  {'battles':>7}  W-L-T"]
    for r in rows:
        interval = f"[{r['lower']:.0f}, {r['upper']:.0f}]" if rounds else "-"
        lines.append(
            f"{r['rank']:>4}  {r['contestant']:<{width}}  {r['rating']:>7.1f}  {interval:>17}  {r['battles']:>7}  "
            f"{r['wins']}-{r['losses']}-{r['ties']}"
        )
    lines.append(f"{total} battles; intervals from {rounds} bootstrap rounds." if rounds else f"{total} battles.")
    return "\n".join(lines)
