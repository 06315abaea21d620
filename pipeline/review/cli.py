"""`python -m pipeline review list|accept|reject|star|unstar|rate`: the Review page for scripts.

The filters are the page's (pipeline/review/filters.py ExampleFilter). An action takes example ids,
or `--all-matching` with filters for a bulk change; an id that does not exist stops the command
before anything changes.
"""

from __future__ import annotations

import json

from pipeline.errors import UserFacingError

ACTIONS = ("list", "accept", "reject", "star", "unstar", "rate")
DONE = {"accept": "Accepted", "reject": "Rejected", "star": "Starred", "unstar": "Unstarred", "rate": "Rated"}
FILTER_OPTIONS = ("persona", "job", "status", "gold", "min_rating", "document_type", "trait", "search")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "review",
        help="list examples with the Review page's filters; accept, reject, star, unstar or rate them",
        description="Examples to review, filtered as on the Review page. Actions take example ids, "
        "or --all-matching to change every example the filters match.",
    )
    p.add_argument("review_action", choices=ACTIONS, metavar="ACTION", help=" | ".join(ACTIONS))
    p.add_argument("ids", nargs="*", type=int, metavar="ID", help="example ids (actions)")
    p.add_argument("--all-matching", action="store_true", help="act on every example the filters match")
    p.add_argument("--rating", help="rate: 1 to 5, or 'none' to clear")
    p.add_argument("--json", action="store_true", help="list: print JSON, for scripts")
    p.add_argument("--limit", type=int, default=50, help="list: at most this many rows (default 50; 0: all)")
    f = p.add_argument_group("filters (as on the Review page)")
    f.add_argument("--persona", help="whose examples (name)")
    f.add_argument("--job", "--run", type=int, dest="job", help="one generation run (its job id)")
    f.add_argument(
        "--status",
        action="append",
        choices=["pending", "accepted", "rejected", "failed"],
        help="repeatable; default: every status",
    )
    star = f.add_mutually_exclusive_group()
    star.add_argument("--gold", action="store_const", const=True, dest="gold", help="only gold-starred")
    star.add_argument("--not-gold", action="store_const", const=False, dest="gold", help="only not starred")
    f.add_argument("--min-rating", type=int, choices=range(1, 6), metavar="1-5", help="rated at least this")
    f.add_argument("--document-type", help="memo, email, report, proposal, analysis")
    f.add_argument("--trait", help="examples written to stress this trait")
    f.add_argument("--search", default="", help="words in the title, document, response or notes")
    p.set_defaults(func=run)


def _filter(args):
    from pipeline import personas
    from pipeline.review.filters import ExampleFilter

    return ExampleFilter(
        persona_id=personas.get_persona(args.persona).id if args.persona else None,
        job_id=args.job,
        statuses=list(dict.fromkeys(args.status or [])),
        gold_star=args.gold,
        min_rating=args.min_rating,
        document_type=args.document_type,
        trait=args.trait,
        search=args.search,
    )


def _filters_given(args) -> bool:
    return any(getattr(args, name) not in (None, "", []) for name in FILTER_OPTIONS)


def run(args) -> int:
    flt = _filter(args)
    if args.review_action == "list":
        if args.ids or args.all_matching:
            raise UserFacingError("`review list` takes filters, not ids or --all-matching.")
        return _list(flt, args)
    return _act(flt, args)


def _list(flt, args) -> int:
    from pipeline.review import filters

    total = filters.count(flt)
    rows = filters.page(flt, 1, args.limit) if args.limit > 0 else filters.page(flt, 1, max(total, 1))
    if args.json:
        print(json.dumps({"count": total, "filter": flt.to_dict(), "examples": rows}, indent=2, default=str))
        return 0
    if not total:
        print(f"No examples match ({flt.describe()}).")
        return 0
    print(f"{'id':>6}  {'status':<9} {'gold':<4} {'rating':<6} {'persona':<16} {'type':<9} {'traits':<18} title")
    for row in rows:
        print(
            f"{row['id']:>6}  {row['status']:<9} {'yes' if row['gold_star'] else '':<4} "
            f"{row['rating'] or '':<6} {row['persona'][:16]:<16} {row['document_type'] or '':<9} "
            f"{', '.join(row['traits_stressed'] or [])[:18]:<18} {row['document_title'] or ''}"
        )
    shown = f"; the newest {len(rows)} shown (--limit)" if len(rows) < total else ""
    print(f"{total} example{'s' if total != 1 else ''} match ({flt.describe()}){shown}.")
    return 0


def _act(flt, args) -> int:
    from pipeline import jobs
    from pipeline.review import actions, filters

    action = args.review_action
    if args.ids and args.all_matching:
        raise UserFacingError("Give example ids or --all-matching, not both.")
    if args.ids and _filters_given(args):
        raise UserFacingError("Filters choose examples only with --all-matching; with ids, leave them out.")
    if not args.ids and not args.all_matching:
        raise UserFacingError(f"`review {action}` needs example ids, or --all-matching with filters.")
    rating = _rating(args.rating) if action == "rate" else None
    if action != "rate" and args.rating is not None:
        raise UserFacingError("--rating goes with `review rate`.")
    if args.ids:
        unknown = actions.missing(args.ids)
        if unknown:
            listed = ", ".join(str(i) for i in unknown)
            raise UserFacingError(f"No example {listed} in the studio; nothing was changed.")
        ids = list(dict.fromkeys(args.ids))
    else:
        ids = filters.ids(flt)
        if not ids:
            print(f"No examples match ({flt.describe()}); nothing to do.")
            return 0
    who = jobs.default_user()  # recorded on each example as its last reviewer
    result = actions.rate_many(ids, rating, who) if action == "rate" else actions.bulk(ids, action, who)
    what = f" {rating if rating is not None else '(cleared)'}" if action == "rate" else ""
    line = f"{DONE[action]}{what}: {result['changed']} example{'s' if result['changed'] != 1 else ''}"
    if result["skipped"]:
        line += f"; {result['skipped']} skipped (failed during generation: regenerate them first)"
    print(line + ".")
    return 0


def _rating(text: str | None) -> int | None:
    if text is None:
        raise UserFacingError("`review rate` needs --rating 1 to 5 (or --rating none to clear).")
    if text.strip().lower() == "none":
        return None
    if not text.strip().isdigit() or not 1 <= int(text) <= 5:
        raise UserFacingError(f"A rating is 1 to 5 (or none), not {text!r}.")
    return int(text)
