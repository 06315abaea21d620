"""Plotly figures the pages draw. Built here so the pages stay thin and the figures are testable."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

CURVES = [
    ("loss", "Training loss"),
    ("val_loss", "Validation loss"),
    ("learning_rate", "Learning rate"),
    ("tokens_per_s", "Tokens / s"),
]


def _layout(fig: go.Figure, height: int) -> go.Figure:
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        template="plotly_white",
        legend={"orientation": "h", "y": -0.15},
    )
    return fig


def training_curves(metrics: list[dict], best_step: int | None = None) -> go.Figure | None:
    """Loss (train and validation) on top; learning rate and tokens/s below; all against step.
    `best_step` (the kept checkpoint's) is marked on the loss with a dashed line."""
    frame = pd.DataFrame(metrics)
    if frame.empty or not any(c in frame and frame[c].notna().any() for c, _ in CURVES):
        return None
    fig = make_subplots(
        rows=2,
        cols=2,
        specs=[[{"colspan": 2}, None], [{}, {}]],
        subplot_titles=("Loss", "Learning rate", "Tokens / s"),
        vertical_spacing=0.15,
    )
    placement = {"loss": (1, 1), "val_loss": (1, 1), "learning_rate": (2, 1), "tokens_per_s": (2, 2)}
    for column, label in CURVES:
        if column in frame and frame[column].notna().any():
            part = frame[frame[column].notna()]
            row, col = placement[column]
            fig.add_trace(
                go.Scatter(
                    x=part["step"], y=part[column], name=label, mode="lines+markers" if len(part) < 30 else "lines"
                ),
                row=row,
                col=col,
            )
    fig.update_xaxes(title_text="step")
    steps = frame["step"].dropna()
    if steps.nunique() == 1:  # one logged step: plotly would centre it on an unlabelled -1..1 span
        step = float(steps.iloc[0])
        fig.update_xaxes(range=[step - 1, step + 1], dtick=1)
    for column, _ in CURVES:
        if column in frame and frame[column].notna().any():
            low, high = fitted_range(frame[column].dropna().astype(float).tolist())
            row, col = placement[column]
            if low is not None:
                fig.update_yaxes(range=[low, high], row=row, col=col)
    fig.update_yaxes(exponentformat="e", row=2, col=1)  # learning rates are 1e-5..1e-3
    if best_step is not None:
        fig.add_vline(
            x=best_step,
            line_dash="dash",
            line_color="#2e9e5b",
            annotation_text=f"best: step {best_step}",
            annotation_position="top",
            row=1,
            col=1,
        )
    return _layout(fig, 520)


def persona_scores(scores: list[dict], best_step: int | None = None) -> go.Figure | None:
    """The checkpoint gallery's persona similarity against step (0 is the model before training)."""
    frame = pd.DataFrame(scores)
    if frame.empty or "persona_similarity" not in frame or frame["persona_similarity"].notna().sum() == 0:
        return None
    part = frame[frame["persona_similarity"].notna()]
    fig = go.Figure(
        go.Scatter(x=part["step"], y=part["persona_similarity"], mode="lines+markers", name="persona similarity")
    )
    if best_step is not None:
        fig.add_vline(x=best_step, line_dash="dash", line_color="#2e9e5b")
    fig.update_layout(title="Persona score", xaxis_title="step", yaxis_title="similarity to the persona's replies")
    return _layout(fig, 320)


def fitted_range(values: list[float]) -> tuple[float | None, float | None]:
    """An axis range that fits `values` with a margin; (None, None) where plotly's own fits well.

    Plotly draws a single value (one logged step, or a flat learning rate) on a range it makes up:
    0 on -1..1, 2e-4 on a span a million times wider than the value. Here a flat series gets a span
    of ±50% around it (0 to 1 for a value of 0: these figures are never negative), so the point sits
    mid-axis on a readable scale; a series that varies keeps plotly's range.
    """
    if not values:
        return None, None
    low, high = min(values), max(values)
    if high > low:
        return None, None
    if low == 0:
        return 0.0, 1.0
    pad = abs(low) * 0.5
    return low - pad, low + pad


def items_over_time(metrics: list[dict], unit: str = "items") -> go.Figure | None:
    frame = pd.DataFrame(metrics)
    if frame.empty or "items_done" not in frame or frame["items_done"].notna().sum() == 0:
        return None
    part = frame[frame["items_done"].notna()].sort_values("at")
    fig = go.Figure(
        go.Scatter(x=part["at"], y=part["items_done"], mode="lines+markers", name=unit, line={"shape": "hv"})
    )
    fig.update_layout(title=f"{unit.capitalize()} done", xaxis_title="time", yaxis_title=unit)
    return _layout(fig, 320)


STATUS_COLOURS = {"pending": "#9aa5b1", "accepted": "#2e9e5b", "rejected": "#d64545", "failed": "#e8a33d"}


def status_counts(counts: dict[str, int]) -> go.Figure | None:
    if not counts:
        return None
    names = [s for s in STATUS_COLOURS if s in counts] + sorted(set(counts) - set(STATUS_COLOURS))
    fig = go.Figure(
        go.Bar(
            x=names,
            y=[counts[s] for s in names],
            marker_color=[STATUS_COLOURS.get(s, "#5b7db1") for s in names],
            text=[counts[s] for s in names],
            textposition="auto",
        )
    )
    fig.update_layout(title="Examples by status", yaxis_title="examples")
    return _layout(fig, 300)


def length_histograms(frame: pd.DataFrame) -> go.Figure | None:
    """Word counts of documents and responses, and tokens per example, side by side."""
    if frame.empty:
        return None
    fig = make_subplots(rows=1, cols=len(frame.columns), subplot_titles=list(frame.columns))
    for i, column in enumerate(frame.columns, start=1):
        fig.add_trace(go.Histogram(x=frame[column], nbinsx=30, name=column, showlegend=False), row=1, col=i)
    return _layout(fig, 300)


def coverage_heatmap(frame: pd.DataFrame) -> go.Figure | None:
    """Examples per trait × document type: gaps show as pale cells."""
    if frame.empty:
        return None
    fig = go.Figure(
        go.Heatmap(
            z=frame.values,
            x=list(frame.columns),
            y=list(frame.index),
            colorscale="Blues",
            text=frame.values,
            texttemplate="%{text}",
            hovertemplate="%{y} × %{x}: %{z} examples<extra></extra>",
        )
    )
    fig.update_layout(title="Coverage: traits stressed × document type")
    return _layout(fig, 120 + 40 * len(frame.index))


def token_histogram(counts: list[int], limit: int | None = None) -> go.Figure | None:
    """Tokens per example, with the base model's context limit drawn in."""
    if not counts:
        return None
    fig = go.Figure(go.Histogram(x=counts, nbinsx=40, marker_color="#5b7db1"))
    if limit and max(counts) > 0.5 * limit:
        fig.add_vline(x=limit, line_dash="dash", line_color="#d64545", annotation_text=f"limit {limit:,}")
    fig.update_layout(title="Tokens per example", xaxis_title="tokens", yaxis_title="examples")
    return _layout(fig, 300)


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def comparison_left_out(rows: list[dict], figures: list[tuple[str, str]]) -> list[str]:
    """Figures the comparison does not draw because every picked model has 0 (a chart of empty bars)."""
    return [
        label
        for key, label in figures
        if any(_number(r.get(key)) for r in rows) and all(not r.get(key) for r in rows if _number(r.get(key)))
    ]


def model_comparison(rows: list[dict], figures: list[tuple[str, str]]) -> go.Figure | None:
    """Two or three models side by side: one small bar chart per figure, each on its own scale.

    A figure no picked model has, or that is 0 for every one (local models' price), is left out: its
    chart would be empty. `comparison_left_out` names the second kind for the page to say so.
    """
    zero = set(comparison_left_out(rows, figures))
    shown = [(k, label) for k, label in figures if any(_number(r.get(k)) for r in rows) and label not in zero]
    if len(rows) < 2 or not shown:
        return None
    columns = min(3, len(shown))
    lines = -(-len(shown) // columns)
    fig = make_subplots(rows=lines, cols=columns, subplot_titles=[label for _, label in shown])
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c"]
    for index, (key, _) in enumerate(shown):
        for number, row in enumerate(rows):
            value = row.get(key) if _number(row.get(key)) else None
            fig.add_trace(
                go.Bar(x=[row["name"]], y=[value], name=row["name"], legendgroup=row["name"],
                       marker_color=palette[number % 3], showlegend=index == 0),
                row=index // columns + 1,
                col=index % columns + 1,
            )  # fmt: skip
    fig.update_xaxes(showticklabels=False)
    return _layout(fig, 240 * lines + 60)


def compared_curves(curves: dict[str, list[dict]]) -> go.Figure | None:
    """Several runs' training loss (solid) and validation loss (dotted) against step, one colour per run; below,
    on the same steps, their persona scores (the checkpoint gallery's) when any run has them."""
    palette = ["#2563EB", "#DC2626", "#059669", "#D97706", "#7C3AED", "#0891B2"]
    with_persona = any(r.get("persona_similarity") is not None for rows in curves.values() for r in rows)
    fig = (
        make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.62, 0.38], vertical_spacing=0.08)
        if with_persona
        else go.Figure()
    )
    lines = [("loss", "solid", "loss", 1), ("val_loss", "dot", "validation loss", 1)]
    lines += [("persona_similarity", "solid", "persona score", 2)] if with_persona else []
    for place, (run, rows) in enumerate(curves.items()):
        colour = palette[place % len(palette)]
        for column, dash, what, row in lines:
            points = [(r["step"], r[column]) for r in rows if r.get(column) is not None]
            if points:
                trace = go.Scatter(
                    x=[s for s, _ in points],
                    y=[v for _, v in points],
                    name=f"{run} {what}",
                    mode="lines+markers" if len(points) < 30 else "lines",
                    line={"color": colour, "dash": dash, "width": 1.5 if row == 2 else 2},
                )
                fig.add_trace(trace, **({"row": row, "col": 1} if with_persona else {}))
    if not fig.data:
        return None
    if with_persona:
        fig.update_xaxes(title_text="step", row=2, col=1)
        fig.update_yaxes(title_text="loss", row=1, col=1)
        fig.update_yaxes(title_text="persona score", row=2, col=1)
        return _layout(fig, 560)
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="loss")
    return _layout(fig, 420)


def data_size_curve(points: list[dict], plateau_at: int | None = None) -> go.Figure | None:
    """Persona score (mean log-likelihood per token of held-out replies) against training examples, with
    its 95% interval; a line where more data stops helping."""
    if not points:
        return None
    xs = [p["examples"] for p in points]
    ys = [p["mean"] for p in points]
    fig = go.Figure(
        go.Scatter(
            x=xs,
            y=ys,
            mode="lines+markers",
            name="persona likelihood",
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [p["upper"] - p["mean"] for p in points],
                "arrayminus": [p["mean"] - p["lower"] for p in points],
            },
        )
    )
    if plateau_at is not None:
        fig.add_vline(
            x=plateau_at, line_dash="dash", line_color="#6B7280", annotation_text="more data stops helping here"
        )
    fig.update_xaxes(title_text="training examples")
    fig.update_yaxes(title_text="persona likelihood (log-prob per token)")
    return _layout(fig, 380)
