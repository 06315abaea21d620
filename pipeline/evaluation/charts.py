"""Plotly figures for the leaderboard and the HTML report. Every title names the judge it rests on."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

HEIGHT = 360


def _short(label: str) -> str:
    return label if len(label) <= 70 else label[:67] + "…"


def ratings_chart(rated, title: str) -> go.Figure:
    """Ratings best first, with their 95% intervals as error bars."""
    names = list(reversed(rated.contestants))
    values = [rated.rating[n] for n in names]
    figure = go.Figure(
        go.Scatter(
            x=values,
            y=names,
            mode="markers",
            marker={"size": 12},
            error_x={
                "type": "data",
                "symmetric": False,
                "array": [rated.upper[n] - rated.rating[n] for n in names],
                "arrayminus": [rated.rating[n] - rated.lower[n] for n in names],
            },
            hovertemplate="%{y}: %{x:.0f}<extra></extra>",
        )
    )
    figure.add_vline(x=1000, line_dash="dot", line_color="gray")
    figure.update_layout(
        title=_short(title),
        xaxis_title="rating (base = 1000), 95% interval",
        height=HEIGHT,
        margin={"l": 10, "r": 10, "t": 50, "b": 40},
    )
    return figure


def matrix_chart(cells: pd.DataFrame, names: list[str], title: str) -> go.Figure:
    """Win share of the row against the column (ties count half), with W–L–T in each cell."""
    share, text = [], []
    for row in names:
        share_row, text_row = [], []
        for column in names:
            cell = cells[(cells["row"] == row) & (cells["column"] == column)]
            if row == column or cell.empty:
                share_row.append(None)
                text_row.append("")
                continue
            w, lo, t = (int(cell.iloc[0][k]) for k in ("wins", "losses", "ties"))
            total = w + lo + t
            share_row.append((w + t / 2) / total if total else None)
            text_row.append(f"{w}–{lo}–{t}" if total else "")
        share.append(share_row)
        text.append(text_row)
    figure = go.Figure(
        go.Heatmap(
            z=share,
            x=names,
            y=names,
            text=text,
            texttemplate="%{text}",
            colorscale="RdBu",
            zmin=0,
            zmax=1,
            colorbar={"title": "win share"},
            hovertemplate="%{y} vs %{x}: %{text}<extra></extra>",
        )
    )
    figure.update_layout(
        title=_short(title),
        xaxis_title="against",
        yaxis={"autorange": "reversed", "title": "contestant (wins–losses–ties)"},  # best first, as in the table
        height=HEIGHT + 40,
        margin={"l": 10, "r": 10, "t": 50, "b": 40},
    )
    return figure


def grouped_ratings_chart(by_key: dict, title: str, axis: str) -> go.Figure:
    """One series per contestant across traits (or prompt groups), each point with its interval."""
    figure = go.Figure()
    names = sorted({n for rated in by_key.values() for n in rated.contestants})
    keys = list(by_key)
    for name in names:
        present = [k for k in keys if name in by_key[k].rating]
        figure.add_trace(
            go.Scatter(
                x=present,
                y=[by_key[k].rating[name] for k in present],
                name=name,
                mode="markers+lines",
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [by_key[k].upper[name] - by_key[k].rating[name] for k in present],
                    "arrayminus": [by_key[k].rating[name] - by_key[k].lower[name] for k in present],
                },
            )
        )
    figure.update_layout(
        title=_short(title),
        xaxis_title=axis,
        yaxis_title="rating (95% interval)",
        height=HEIGHT,
        margin={"l": 10, "r": 10, "t": 50, "b": 40},
    )
    return figure


def trait_scores_chart(scores: pd.DataFrame, title: str) -> go.Figure:
    figure = go.Figure()
    for name, group in scores.groupby("contestant"):
        figure.add_trace(
            go.Bar(
                x=group["trait"],
                y=group["mean"],
                name=str(name),
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": (group["upper"] - group["mean"]).fillna(0),
                    "arrayminus": (group["mean"] - group["lower"]).fillna(0),
                },
            )
        )
    figure.update_layout(
        title=_short(title),
        barmode="group",
        yaxis={"range": [0, 5.2], "title": "mean score (1–5)"},
        height=HEIGHT,
        margin={"l": 10, "r": 10, "t": 50, "b": 40},
    )
    return figure


def length_chart(rated, controlled: dict, lengths: dict[str, float], title: str) -> go.Figure:
    """Ratings as judged and with the length effect taken out, beside each contestant's mean length."""
    names = rated.contestants
    figure = go.Figure()
    figure.add_trace(go.Bar(x=names, y=[rated.rating[n] for n in names], name="as judged"))
    figure.add_trace(go.Bar(x=names, y=[controlled["ratings"].get(n) for n in names], name="length controlled"))
    figure.add_trace(
        go.Scatter(
            x=names,
            y=[lengths.get(n, 0) for n in names],
            name="mean words",
            yaxis="y2",
            mode="markers",
            marker={"symbol": "diamond", "size": 11},
        )
    )
    figure.update_layout(
        title=_short(title),
        barmode="group",
        height=HEIGHT,
        yaxis_title="rating",
        yaxis2={"title": "mean words per reply", "overlaying": "y", "side": "right"},
        margin={"l": 10, "r": 10, "t": 50, "b": 40},
    )
    return figure


DRIFT_TITLES = {
    "offline": (
        "Offline: persona drift over turns (persona similarity of each reply; higher = more in character)",
        "persona similarity, 95% interval",
    ),
    "judge": (
        "Judge: persona drift over turns (the judge's mean trait score of each reply; higher = more in character)",
        "mean trait score (1–5), 95% interval",
    ),
}


def drift_chart(rows: list[dict], scorer: str = "offline") -> go.Figure:
    """A score against turn, one line per contestant, with 95% intervals where there are some."""
    rows = [r for r in rows if r.get("scorer", "offline") == scorer]
    title, y_title = DRIFT_TITLES[scorer]
    figure = go.Figure()
    for name in dict.fromkeys(r["contestant"] for r in rows):
        mine = [r for r in rows if r["contestant"] == name and r["mean"] is not None]
        figure.add_trace(
            go.Scatter(
                x=[r["turn"] for r in mine],
                y=[r["mean"] for r in mine],
                mode="lines+markers",
                name=name,
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [(r["upper"] - r["mean"]) if r["upper"] is not None else 0 for r in mine],
                    "arrayminus": [(r["mean"] - r["lower"]) if r["lower"] is not None else 0 for r in mine],
                },
            )
        )
    turns = max((r["turn"] for r in rows), default=1)
    figure.update_layout(
        title=title,
        xaxis={"title": "turn", "dtick": 1, "range": [0.5, turns + 0.5]},
        yaxis_title=y_title,
        height=HEIGHT,
        margin={"l": 10, "r": 10, "t": 50, "b": 40},
    )
    return figure


def fidelity_chart(rows: list[dict]) -> go.Figure:
    """Gap closed per contestant, bars with 95% intervals: 0% = base without the prompt, 100% = with it."""
    shown = [r for r in rows if r.get("gap_closed") is not None]
    figure = go.Figure(
        go.Bar(
            x=[r["gap_closed"] for r in shown],
            y=[r["contestant"] for r in shown],
            orientation="h",
            text=[f"{r['gap_closed']:.0f}%" for r in shown],
            error_x={
                "type": "data",
                "symmetric": False,
                "array": [max(0.0, (r["gap_upper"] or r["gap_closed"]) - r["gap_closed"]) for r in shown],
                "arrayminus": [max(0.0, r["gap_closed"] - (r["gap_lower"] or r["gap_closed"])) for r in shown],
            },
        )
    )
    values = [v for r in shown for v in (r["gap_lower"], r["gap_upper"], r["gap_closed"]) if v is not None]
    low, high = min([0.0, *values]), max([100.0, *values])
    figure.add_vline(x=0, line_dash="dot", annotation_text="base without prompt", annotation_position="bottom")
    figure.add_vline(x=100, line_dash="dot", annotation_text="base with prompt", annotation_position="top")
    figure.update_layout(
        title="Offline: prompt fidelity (share of the gap to the prompted base closed, 95% interval)",
        xaxis_title="gap closed, %",
        xaxis={"range": [low - 5, high + 5]},
        height=HEIGHT,
        margin={"l": 10, "r": 10, "t": 50, "b": 40},
    )
    return figure


def likelihood_chart(rows: list[dict]) -> go.Figure:
    names = [r["contestant"] for r in rows]
    figure = go.Figure(
        go.Scatter(
            x=[r["mean"] for r in rows],
            y=names,
            mode="markers",
            marker={"size": 12},
            error_x={
                "type": "data",
                "symmetric": False,
                "array": [r["upper"] - r["mean"] for r in rows],
                "arrayminus": [r["mean"] - r["lower"] for r in rows],
            },
        )
    )
    figure.update_layout(
        title="Offline: persona likelihood (mean log-likelihood per token of held-out gold replies; higher = closer)",
        xaxis_title="log-likelihood per token, 95% interval",
        height=HEIGHT,
        margin={"l": 10, "r": 10, "t": 50, "b": 40},
    )
    return figure
