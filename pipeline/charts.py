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


def training_curves(metrics: list[dict]) -> go.Figure | None:
    """Loss (train and validation) on top; learning rate and tokens/s below; all against step."""
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
    return _layout(fig, 520)


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
