from pages import route_through_app

route_through_app()

import pandas as pd
import streamlit as st

from pipeline import personas
from pipeline.errors import UserFacingError

NEW = "➕ New persona"
TRAIT_COLUMNS = ["name", "description"] + [f"marker {i}" for i in range(1, personas.MAX_MARKERS + 1)]

st.title("Personas")
st.caption(
    "A persona is a system prompt plus the named traits the fine-tuned model should show "
    "without being told. Give each trait a description and two or three behavioural markers."
)

if flash := st.session_state.pop("persona_flash", None):
    st.success(flash)


def remember(name: str, message: str) -> None:
    """Select `name` and show `message` after a rerun (a widget's state is set before it is drawn)."""
    st.session_state["persona_next"] = name
    st.session_state["persona_flash"] = message
    st.rerun()


existing = personas.list_personas()
by_name = {p.name: p for p in existing}
options = [*by_name, NEW]
if "persona_next" in st.session_state:
    st.session_state["persona_choice"] = st.session_state.pop("persona_next")
if st.session_state.get("persona_choice") not in options:
    st.session_state["persona_choice"] = options[0]
choice = st.selectbox("Persona", options, key="persona_choice")
current = by_name.get(choice)

with st.form(f"persona_form_{current.id if current else 'new'}"):
    name = st.text_input("Name", value=current.name if current else "", placeholder="e.g. collaborative")
    description = st.text_input("One-line description", value=current.description if current else "")
    system_prompt = st.text_area(
        "System prompt",
        value=current.system_prompt if current else "",
        height=180,
        help="Used to generate training responses. The fine-tuned model learns to act this way without it.",
    )
    st.markdown("**Traits**: one row each; add rows at the bottom of the table.")
    rows = personas.rows_from_traits(current.traits) if current else []
    edited = st.data_editor(
        pd.DataFrame(rows, columns=TRAIT_COLUMNS),
        num_rows="dynamic",
        width="stretch",
        hide_index=True,
        column_config={
            "name": st.column_config.TextColumn("Trait", required=True, width="medium"),
            "description": st.column_config.TextColumn("Description", required=True, width="large"),
            **{f"marker {i}": st.column_config.TextColumn(f"Marker {i}") for i in range(1, personas.MAX_MARKERS + 1)},
        },
        key=f"traits_{current.id if current else 'new'}",
    )
    submitted = st.form_submit_button("Save persona", type="primary")

if submitted:
    data = {
        "name": name,
        "description": description,
        "system_prompt": system_prompt,
        "traits": personas.traits_from_rows(edited.to_dict("records")),
    }
    try:
        saved = personas.save(current.id if current else None, data)
    except UserFacingError as exc:
        st.error(str(exc))
    else:
        remember(saved.name, f"Saved persona “{saved.name}” with {len(saved.traits)} traits.")

if current:
    st.divider()
    col_dup, col_export, col_delete = st.columns(3)
    with col_dup:
        st.markdown("**Duplicate**")
        if st.button("Duplicate this persona"):
            copy = personas.duplicate_persona(current.id)
            remember(copy.name, f"Created “{copy.name}”.")
    with col_export:
        st.markdown("**Export**")
        st.download_button(
            "Download YAML",
            personas.to_yaml(current),
            file_name=f"{personas.slug(current.name)}.yaml",
            mime="application/x-yaml",
        )
        if st.button("Save a copy in the studio", help="Writes the YAML file into the studio's personas folder."):
            path = personas.export_yaml(current.id)
            st.success(f"Saved as {path.name} in the studio's personas folder.")
    with col_delete:
        st.markdown("**Delete**")
        confirm = st.checkbox(f"Yes, delete “{current.name}”", key=f"confirm_delete_{current.id}")
        if st.button("Delete persona", disabled=not confirm):
            personas.delete_persona(current.id)
            remaining = [n for n in by_name if n != current.name]
            remember(remaining[0] if remaining else NEW, f"Deleted “{current.name}”.")

st.divider()
st.subheader("Import from YAML")
upload = st.file_uploader("Persona YAML file", type=["yaml", "yml"])
replace = st.checkbox("Replace an existing persona of the same name")
if st.button("Import", disabled=upload is None):
    try:
        imported = personas.import_yaml(upload.getvalue(), source=upload.name, overwrite=replace)
    except UserFacingError as exc:
        st.error(str(exc))
    else:
        remember(imported.name, f"Imported “{imported.name}” with {len(imported.traits)} traits.")
