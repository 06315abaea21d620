"""Lineage as an indented list, and the list of what a deletion touches (pipeline.lineage gives the data)."""

from __future__ import annotations

import streamlit as st

from pipeline import lineage


def show_tree(walk: dict) -> None:
    """persona → generation run → reviewed examples → dataset → training → model → evaluations → deployments."""
    items, previous = [], -1
    for depth, text in lineage.tree_lines(walk):
        previous = min(depth, previous + 1)  # Markdown nests one level at a time: a skipped level reads as text
        items.append(f"{'    ' * previous}- {text}")
    st.markdown("\n".join(items))


def show_model(name: str) -> None:
    st.caption("Where this model came from, and what was done with it since.")
    show_tree(lineage.for_model(name))


def show_dataset(name: str) -> None:
    with st.expander(
        "Lineage: where this dataset came from, and the models trained on it", icon=":material/account_tree:"
    ):
        show_tree(lineage.for_dataset(name))


def show_example(example_id: int) -> None:
    used = lineage.models_using_example(example_id)
    if used:
        st.markdown(
            "Used by "
            + ", ".join(f"**{u['model']}** ({u['status']}; dataset {u['dataset']}, {u['part']})" for u in used)
        )
    with st.expander("Lineage: where this example came from, and which models used it", icon=":material/account_tree:"):
        show_tree(lineage.for_example(example_id))


def show_impact(persona_id: int, persona_deleted: bool = False) -> None:
    """The confirm step's list: what goes, and what stays but loses where it came from."""
    impact = lineage.persona_impact(persona_id)
    st.markdown(
        "**This touches:**\n" + "\n".join(f"- {line}" for line in lineage.impact_lines(impact, persona_deleted))
    )
