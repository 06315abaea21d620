"""Reports of an evaluation run and the registry's quality figures.

`elo_comparison_YYYYMMDD_HHMMSS.json` as the original pipeline wrote it (ratings, intervals,
battles, parameters), the battles in Chatbot Arena's format (`battles.jsonl`, readable by
`python -m pipeline ratings`), and a Markdown and a self-contained HTML report with the charts.

Each file is written in the run folder, then published as the store's `reports/<job-id>/<file>`
(pipeline/storage.py), where the leaderboard of any machine reads it; with no URI that is the run folder.
"""

from __future__ import annotations

import html
import json
import math
from datetime import UTC, datetime
from pathlib import Path

from sqlmodel import select

from pipeline import storage
from pipeline.db import session_scope
from pipeline.evaluation import charts, drift, leaderboard
from pipeline.evaluation.contestants import Contestant
from pipeline.jobs import runfolder
from pipeline.models import ModelEntry

ARENA_WINNER = {"a": "model_a", "b": "model_b", "tie": "tie", "bothbad": "tie (bothbad)"}


def _publish(job_id: int | None, path: Path) -> None:
    if job_id is not None:
        storage.publish_report(job_id, path)


def save_likelihood(folder: Path, rows: list[dict], job_id: int | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / leaderboard.LIKELIHOOD_FILE).write_text(json.dumps(_clean(rows), indent=2), encoding="utf-8")
    _publish(job_id, folder / leaderboard.LIKELIHOOD_FILE)


def save_fidelity(folder: Path, rows: list[dict], job_id: int | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / leaderboard.FIDELITY_FILE).write_text(json.dumps(_clean(rows), indent=2), encoding="utf-8")
    _publish(job_id, folder / leaderboard.FIDELITY_FILE)


def _clean(value):
    """JSON has no NaN: unknown numbers become null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def comparison(board: leaderboard.Board) -> dict:
    rated = board.overall
    return _clean(
        {
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "evaluation_job": board.job.id,
            "judge": board.judge,
            "judge_note": board.judge_label,
            "source": board.source,
            "parameters": {k: v for k, v in board.job.params.items() if k != "prompts"}
            | {
                "scale": 400,
                "base": 10,
                "anchor_rating": 1000,
                "bootstrap_rounds": 1000,
                "prompts": len(board.job.params.get("prompts", [])),
            },
            "ratings": rated.to_dict() if rated else {},
            "win_probability_vs_anchor": board.statements(),
            "state": board.state,  # "too_few": under the minimum, the pages show no rating
            "min_battles": board.min_battles,
            "rated_battles": board.battles,
            "per_trait": {k: v.to_dict() for k, v in board.by_trait.items()},
            "per_group": {k: v.to_dict() for k, v in board.by_group.items()},
            "length_controlled": board.length_controlled,
            "trait_scores": board.trait_scores.to_dict(orient="records"),
            "persona_likelihood": board.likelihood,
            "prompt_fidelity": board.fidelity,
            "persona_drift": board.drift,
            "judge_health": board.health,
            "counts": board.counts(),
            "battles": [arena_row(o) for o in board.outcomes if o.rated],
        }
    )


def arena_row(outcome) -> dict:
    return {
        "model_a": outcome.a,
        "model_b": outcome.b,
        "winner": ARENA_WINNER[outcome.winner],
        "judge": outcome.judge,
        "criterion": outcome.criterion,
        "prompt_group": outcome.group,
        "prompt_id": outcome.prompt_id,
    }


def write(job_id: int, folder: Path | None = None) -> dict[str, Path]:
    """Every report file of the run, written in its run folder (on this machine) and published to the store."""
    folder = folder or runfolder.run_dir(job_id)
    folder.mkdir(parents=True, exist_ok=True)  # a page on a machine where the run did not run has no run folder
    board = leaderboard.build(job_id)
    stamp = datetime.now(UTC).strftime("%Y%m%d_%H%M%S")
    data = comparison(board)
    paths = {
        "json": folder / f"elo_comparison_{stamp}.json",
        "battles": folder / "battles.jsonl",
        "markdown": folder / "report.md",
        "html": folder / "report.html",
    }
    paths["json"].write_text(json.dumps(data, indent=2), encoding="utf-8")
    paths["battles"].write_text("".join(json.dumps(row) + "\n" for row in data["battles"]), encoding="utf-8")
    paths["markdown"].write_text(markdown(board), encoding="utf-8")
    paths["html"].write_text(html_report(board), encoding="utf-8")
    for path in paths.values():
        storage.publish_report(job_id, path)
    return paths


def _table(rated) -> list[str]:
    lines = ["| rank | contestant | rating | 95% interval | battles | W–L–T |", "|---|---|---|---|---|---|"]
    for row in rated.table():
        lines.append(
            f"| {row['rank']} | {row['contestant']} | {row['rating']:.0f} | {row['lower']:.0f}–{row['upper']:.0f}"
            f" | {row['battles']} | {row['wins']}–{row['losses']}–{row['ties']} |"
        )
    return lines


def markdown(board: leaderboard.Board) -> str:
    counts = board.counts()
    lines = [f"# Evaluation {board.job.id}: {board.job.name}", "", f"*{board.judge_label}*", ""]
    if board.overall is None:
        lines += ["No rated battles yet.", ""]
    elif board.state == "too_few":
        name, fewest = board.fewest
        lines += ["## Ratings", "", f"{leaderboard.not_enough(fewest, board.min_battles).capitalize()} for {name} "
                  f"({board.basis}): no rating is shown under the minimum.", ""]  # fmt: skip
    else:
        lines += ["## Ratings", "", *_table(board.overall), "", *[f"- {s}" for s in board.statements()], ""]
    lines += [
        f"{counts['rated']} rated battles; {counts.get('missing', 0)} missing (a contestant had no reply); "
        f"{counts.get('unparsed', 0)} with no verdict from the judge.",
        "",
    ]
    for title, group in (("Per trait", board.by_trait), ("Per prompt group", board.by_group)):
        if group and board.state == "rated":  # under the minimum overall, none of these is shown either
            lines += [f"## {title}", ""]
            for key, rated in group.items():
                lines += [f"### {key}", "", *_table(rated), ""]
    if not board.trait_scores.empty:
        lines += [
            "## Trait scores (1–5)",
            "",
            "| contestant | trait | mean | 95% interval | spread | n |",
            "|---|---|---|---|---|---|",
        ]
        for row in board.trait_scores.to_dict(orient="records"):
            lines.append(
                f"| {row['contestant']} | {row['trait']} | {row['mean']:.2f} | {row['lower']:.2f}–"
                f"{row['upper']:.2f} | {row['spread']:.2f} | {row['n']} |"
            )
        lines.append("")
    if board.likelihood:
        lines += [
            "## Offline: persona likelihood",
            "",
            "Mean log-likelihood per token of held-out gold replies (higher: the persona's replies come more "
            "naturally to the model).",
            "",
            "| contestant | mean | 95% interval | replies |",
            "|---|---|---|---|",
        ]
        for row in board.likelihood:
            lines.append(
                f"| {row['contestant']} | {row['mean']:.3f} | {row['lower']:.3f}–{row['upper']:.3f} | "
                f"{row['examples']} |"
            )
        lines.append("")
    if board.fidelity:
        lines += [
            "## Offline: prompt fidelity",
            "",
            "How close each contestant, as it is asked, comes to its base model with the persona's prompt: "
            "KL divergence per reply token over the prompted base's own replies to held-out prompts (lower is "
            "closer), and the share of the gap between the plain and the prompted base that it closes.",
            "",
            "| contestant | gap closed | 95% interval | KL per token | prompts |",
            "|---|---|---|---|---|",
        ]
        for row in board.fidelity:
            lines.append(
                f"| {row['contestant']} | {_percent(row['gap_closed'])} | {_percent(row['gap_lower'])}–"
                f"{_percent(row['gap_upper'])} | {row['kl']:.3f} | {row['prompts']} |"
            )
        lines.append("")
    health = board.health
    lines += ["## Judge health", ""]
    for key, label in (
        ("position_consistency", "position consistency"),
        ("tie_rate", "tie rate"),
        ("length_correlation", "length correlation"),
        ("human_agreement", "agreement with people"),
    ):
        value = health.get(key)
        lines.append(f"- {label}: {'n/a' if value is None else f'{value:.2f}'}")
    lines += [f"- ⚠ {w}" for w in health.get("warnings", [])]
    return "\n".join(lines) + "\n"


def _percent(value) -> str:
    return "—" if value is None else f"{value:.0f}%"


def figures(board: leaderboard.Board) -> list:
    found = []
    rated = board.state == "rated"  # under the minimum of battles no rating is drawn (the pages show none)
    if board.overall is not None:
        if rated:
            found.append(charts.ratings_chart(board.overall, f"Ratings · {board.judge_label}"))
        names = board.overall.contestants
        found.append(charts.matrix_chart(leaderboard.matrix(board.outcomes, names), names, "Wins–losses–ties"))
        if board.length_controlled and rated:
            found.append(
                charts.length_chart(
                    board.overall, board.length_controlled, mean_lengths(board), "Does the judge prefer longer replies?"
                )
            )
    if board.by_trait and rated:
        found.append(charts.grouped_ratings_chart(board.by_trait, "Ratings per trait", "trait"))
    if board.by_group and rated:
        found.append(charts.grouped_ratings_chart(board.by_group, "Ratings per prompt group", "prompt group"))
    if not board.trait_scores.empty:
        found.append(charts.trait_scores_chart(board.trait_scores, "Trait scores (LLM judge, 1–5)"))
    if board.likelihood:
        found.append(charts.likelihood_chart(board.likelihood))
    if board.fidelity:
        found.append(charts.fidelity_chart(board.fidelity))
    for scorer in drift.SCORERS:
        if drift.by_scorer(board.drift, scorer):
            found.append(charts.drift_chart(board.drift, scorer))
    return found


def mean_lengths(board: leaderboard.Board) -> dict[str, float]:
    words: dict[str, list[int]] = {}
    for o in board.outcomes:
        if o.rated:
            a, b = o.lengths()
            words.setdefault(o.a, []).append(a)
            words.setdefault(o.b, []).append(b)
    return {k: sum(v) / len(v) for k, v in words.items()}


def html_report(board: leaderboard.Board) -> str:
    parts = []
    for index, figure in enumerate(figures(board)):
        parts.append(figure.to_html(full_html=False, include_plotlyjs=index == 0))  # plotly.js once, inline
    body = html.escape(markdown(board)).replace("\n", "<br>\n")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Evaluation {board.job.id}</title></head>"
        f"<body style='font-family:sans-serif;max-width:1000px;margin:auto'>{''.join(parts)}"
        f"<div style='white-space:normal'>{body}</div></body></html>"
    )


def update_registry(job_id: int) -> int:
    """Each registered model in the run gets its quality figures, per prompt mode. Returns how many."""
    board = leaderboard.build(job_id, source="both")
    if board.overall is None:
        return 0
    scores = board.trait_scores
    updated = 0
    with session_scope() as session:
        for name in board.overall.contestants:
            contestant = Contestant.parse(name)
            entries = session.exec(select(ModelEntry).where(ModelEntry.reference == contestant.model)).all()
            if not entries:
                continue
            mine = scores[scores["contestant"] == name] if not scores.empty else scores
            figures_ = {
                "evaluation_job": job_id,
                "judge": board.judge,
                "contestant": name,
                "rating": board.overall.rating[name],
                "lower": board.overall.lower[name],
                "upper": board.overall.upper[name],
                "win_rate_vs_base": board.overall.win_probability(name, board.anchor)[0]
                if board.anchor in board.overall.rating and name != board.anchor
                else None,
                "trait_scores": {r["trait"]: r["mean"] for r in mine.to_dict(orient="records")},
                "consistency": float(mine["spread"].mean()) if not mine.empty else None,
                "prompt_fidelity": next((r for r in board.fidelity if r["contestant"] == name), None),
                "persona_likelihood": next((r for r in board.likelihood if r["contestant"] == name), None),
            }
            for entry in entries:  # a base model and its prompt-only variants share a reference
                quality = dict(entry.metrics.get("quality", {}))
                quality[contestant.mode] = _clean(figures_)
                entry.metrics = {**entry.metrics, "quality": quality}
                session.add(entry)
                updated += 1
    return updated
