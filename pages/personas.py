from pages import CHOSEN_PERSONA, route_through_app

route_through_app()

import streamlit as st

from pages.parts import lineage as lineage_view
from pipeline import personas
from pipeline.errors import UserFacingError

st.title("Personas")
st.caption(
    "A persona is a system prompt plus the named traits the fine-tuned model should show "
    "without being told. Give each trait a description and two or three behavioural markers."
)

if flash := st.session_state.pop("persona_flash", None):
    st.success(flash)


def forget_draft(prefix: str) -> None:
    """Drop what is typed in an editor, so it is read again from the studio."""
    for key in [k for k in st.session_state if str(k).startswith(f"{prefix}_")]:
        del st.session_state[key]


def remember(name: str | None, message: str) -> None:
    """Select `name` and show `message` after a rerun (a widget's state is set before it is drawn)."""
    st.session_state["persona_next"] = name
    st.session_state["persona_flash"] = message
    st.rerun()


def start_new() -> None:
    st.session_state["persona_creating"] = True


def stop_new() -> None:
    st.session_state["persona_creating"] = False


# --- Import, and which persona -------------------------------------------------------------

with st.expander("Import a persona from a YAML file", icon=":material/upload_file:"):
    upload = st.file_uploader("Persona YAML file", type=["yaml", "yml"])
    replace = st.checkbox("Replace an existing persona of the same name")
    if st.button("Import", disabled=upload is None):
        try:
            imported = personas.import_yaml(upload.getvalue(), source=upload.name, overwrite=replace)
        except UserFacingError as exc:
            st.error(str(exc))
        else:
            forget_draft(f"p{imported.id}")  # a replaced persona shows what was imported
            remember(imported.name, f"Imported “{imported.name}” with {len(imported.traits)} traits.")

existing = personas.list_personas()
by_name = {p.name: p for p in existing}
if "persona_next" in st.session_state:
    chosen = st.session_state.pop("persona_next")
    st.session_state["persona_creating"] = chosen is None
    if chosen is not None:
        st.session_state["persona_choice"] = chosen
if not by_name:
    st.session_state["persona_creating"] = True
creating = st.session_state.get("persona_creating", False)

pick, new = st.columns([3, 1], vertical_alignment="bottom")
if by_name:
    if st.session_state.get("persona_choice") not in by_name:  # opened afresh: on the persona in hand
        remembered = st.session_state.get(CHOSEN_PERSONA) or st.query_params.get("persona")
        st.session_state["persona_choice"] = remembered if remembered in by_name else next(iter(by_name))
    choice = pick.selectbox("Persona", list(by_name), key="persona_choice", on_change=stop_new, disabled=creating)
new.button("New persona", icon=":material/add:", on_click=start_new, disabled=creating, width="stretch")
current = None if creating else by_name[choice]
if current:  # the persona shown here (picked, created or imported) is the one every other page opens on
    st.session_state[CHOSEN_PERSONA] = current.name
    st.query_params["persona"] = current.name

# --- The editor: one box per trait -----------------------------------------------------------

prefix = f"p{current.id}" if current else "pnew"
state = st.session_state
if f"{prefix}_name" not in state:  # first shown (or saved since): fill the boxes from the studio
    state[f"{prefix}_name"] = current.name if current else ""
    state[f"{prefix}_description"] = current.description if current else ""
    state[f"{prefix}_prompt"] = current.system_prompt if current else ""
    entries = personas.entries_from_traits(current.traits) if current else [{}]
    state[f"{prefix}_slots"] = list(range(len(entries)))
    for slot, entry in enumerate(entries):
        state[f"{prefix}_t{slot}_name"] = entry.get("name", "")
        state[f"{prefix}_t{slot}_description"] = entry.get("description", "")
        state[f"{prefix}_t{slot}_markers"] = entry.get("markers", "")


def add_trait() -> None:
    slots = state[f"{prefix}_slots"]
    slots.append(max(slots, default=-1) + 1)


def remove_trait(slot: int) -> None:
    state[f"{prefix}_slots"].remove(slot)


st.subheader("New persona" if creating else f"Edit “{current.name}”")
# One form: nothing reruns while you type or Tab between boxes, so nothing typed can be lost; Add and
# Remove submit it too, keeping every box's text. Enter does not submit (it would press "Remove").
with st.form(f"{prefix}_form", border=False, enter_to_submit=False):
    st.text_input("Name", key=f"{prefix}_name", placeholder="e.g. collaborative")
    st.text_input("One-line description", key=f"{prefix}_description")
    st.text_area("System prompt", key=f"{prefix}_prompt", height=180)
    st.caption("Used to generate training responses. The fine-tuned model learns to act this way without it.")
    st.markdown("**Traits**")
    slots = state[f"{prefix}_slots"]
    for number, slot in enumerate(slots, 1):
        key = f"{prefix}_t{slot}"
        with st.container(border=True):
            left, right = st.columns([1, 2])
            left.text_input(f"Trait {number}", key=f"{key}_name", placeholder="e.g. curious")
            right.text_input("What it means", key=f"{key}_description", placeholder="e.g. Asks before assuming.")
            st.text_area(
                f"Behavioural markers: two or three, one per line (at most {personas.MAX_MARKERS})",
                key=f"{key}_markers",
                height=120,
                placeholder="Asks a clarifying question first\nNames what is still unknown",
            )
            st.form_submit_button(
                "Remove this trait", key=f"{key}_remove", icon=":material/delete:", on_click=remove_trait, args=(slot,)
            )
    st.form_submit_button("Add a trait", icon=":material/add:", on_click=add_trait, key=f"{prefix}_add")
    save = st.form_submit_button("Save persona", type="primary", icon=":material/save:", key=f"{prefix}_save")

if save:
    data = {
        "name": state[f"{prefix}_name"],
        "description": state[f"{prefix}_description"],
        "system_prompt": state[f"{prefix}_prompt"],
        "traits": personas.traits_from_entries(
            [
                {field: state[f"{prefix}_t{slot}_{field}"] for field in ("name", "description", "markers")}
                for slot in slots
            ]
        ),
    }
    try:
        saved = personas.save(current.id if current else None, data)
    except UserFacingError as exc:
        st.error(str(exc))
    else:
        forget_draft(prefix)
        remember(saved.name, f"Saved persona “{saved.name}” with {len(saved.traits)} traits.")
if st.button("Cancel" if creating else "Discard changes", key=f"{prefix}_discard", disabled=not by_name):
    forget_draft(prefix)
    if creating:
        stop_new()
    st.rerun()

# --- Duplicate, export, delete ---------------------------------------------------------------

if current:
    st.divider()
    col_dup, col_export, col_delete = st.columns(3)
    with col_dup:
        st.markdown("**Duplicate**")
        if st.button("Duplicate this persona", icon=":material/content_copy:"):
            copy = personas.duplicate_persona(current.id)
            remember(copy.name, f"Created “{copy.name}”.")
    with col_export:
        st.markdown("**Export**")
        st.download_button(
            "Download YAML",
            personas.to_yaml(current),
            file_name=f"{personas.slug(current.name)}.yaml",
            mime="application/x-yaml",
            icon=":material/download:",
        )
        if st.button("Save a copy in the studio", help="Writes the YAML file into the studio's personas folder."):
            path = personas.export_yaml(current.id)
            st.success(f"Saved as {path.name} in the studio's personas folder.")
    with col_delete:
        st.markdown("**Delete**")
        confirm = st.checkbox(f"Yes, delete “{current.name}”", key=f"confirm_delete_{current.id}")
        if confirm:  # what goes with it, before the button is pressed
            lineage_view.show_impact(current.id, persona_deleted=True)
        if st.button("Delete persona", disabled=not confirm, icon=":material/delete_forever:"):
            personas.delete_persona(current.id)
            forget_draft(prefix)
            remaining = [n for n in by_name if n != current.name]
            remember(remaining[0] if remaining else None, f"Deleted “{current.name}”.")
