from pages import pick_persona, route_through_app

route_through_app()

import pandas as pd
import streamlit as st

from pages.parts import lineage as lineage_view
from pipeline import charts, clock, personas
from pipeline.errors import UserFacingError
from pipeline.generation import quality
from pipeline.generation import service as generation
from pipeline.generation.config import DOCUMENT_TYPES
from pipeline.review import actions, filters, stats

st.title("Review")
st.caption("Star the best examples, rate them, accept or reject them, and fix a response where it falls short.")

PAGE_SIZE = 50
QUALITY_LABELS = {
    "Any": "Any",
    "flagged": "Flagged",
    "passed": "Passed",
    **{check: f"Flagged: {label}" for check, label in quality.LABELS.items()},
}
persona_list = personas.list_personas()
by_name = {p.name: p for p in persona_list}

with st.container(border=True):
    a, b, c, d = st.columns(4)
    persona_name = pick_persona(list(by_name), key="review_persona", where=a, first="All")
    persona = by_name.get(persona_name)
    run_ids = [r.id for r in generation.runs() if persona is None or r.params.get("persona_id") == persona.id]
    run = b.selectbox("Run", ["All", *run_ids], format_func=lambda r: r if r == "All" else f"#{r}", key="review_run")
    statuses = c.multiselect(
        "Status",
        list(filters.CHOOSABLE),
        default=["pending", "accepted"],
        key="review_status",
        help="cancelled: examples a stopped run left unfinished; resume the run to finish them, or delete them.",
    )
    star = d.selectbox("Gold star", ["Any", "Starred", "Not starred"], key="review_star")
    a, b, c, d, e = st.columns(5)
    min_rating = a.selectbox("Rating at least", ["Any", 1, 2, 3, 4, 5], key="review_rating")
    document_type = b.selectbox("Document type", ["Any", *DOCUMENT_TYPES], key="review_type")
    traits = sorted({t["name"] for p in ([persona] if persona else persona_list) for t in p.traits})
    trait = c.selectbox("Trait", ["Any", *traits], key="review_trait")
    gate = d.selectbox(
        "Quality gate",
        ["Any", *filters.QUALITY],
        format_func=QUALITY_LABELS.get,
        key="review_quality",
        help="Replies flagged as degenerate, unrelated to their document or out of character; "
        "flagged ones are left out of datasets unless included.",
    )
    search = e.text_input("Search text", key="review_search", placeholder="words in title, text or notes")

flt = filters.ExampleFilter(
    persona_id=persona.id if persona else None,
    job_id=None if run == "All" else run,
    statuses=statuses,
    gold_star={"Any": None, "Starred": True, "Not starred": False}[star],
    min_rating=None if min_rating == "Any" else min_rating,
    document_type=None if document_type == "Any" else document_type,
    trait=None if trait == "Any" else trait,
    search=search,
    quality=None if gate == "Any" else gate,
)
view = st.segmented_control("View", ["Examples", "Statistics"], default="Examples", key="review_view")

if view == "Statistics":
    counts = stats.status_counts(flt)
    if not counts:
        st.info("No examples match these filters.")
        st.stop()
    cols = st.columns(4)
    cols[0].metric("Examples", f"{sum(counts.values()):,}")
    cols[1].metric("Accepted", f"{counts.get('accepted', 0):,}")
    cols[2].metric("Gold stars", f"{stats.gold_count(flt):,}")
    cols[3].metric("Rejected", f"{counts.get('rejected', 0):,}")
    left, right = st.columns(2)
    left.plotly_chart(charts.status_counts(counts), width="stretch")
    right.plotly_chart(charts.length_histograms(stats.lengths(flt)), width="stretch")
    heat = charts.coverage_heatmap(stats.coverage(flt))
    if heat is not None:
        st.plotly_chart(heat, width="stretch")
    attention = stats.needs_attention(flt)
    st.markdown(
        f"**Needs a second look** ({len(attention)}): near-duplicates, validation warnings and the quality gate's flags"
    )
    if attention.empty:
        st.caption("Nothing flagged.")
    else:
        st.dataframe(attention, hide_index=True, width="stretch")
    st.stop()

total = filters.count(flt)
if total == 0:
    st.info("No examples match these filters. Generate some on the Generate page, or loosen the filters.")
    st.stop()
pages = max(1, -(-total // PAGE_SIZE))
top = st.columns([3, 1])
top[0].markdown(f"**{total:,} examples** match · {stats.gold_count(flt):,} gold-starred")
number = top[1].number_input("Page", 1, pages, 1, key="review_page", help=f"{pages} pages of {PAGE_SIZE}")
left_over = generation.cancelled_count(flt.job_id) if flt.job_id is not None and "cancelled" in statuses else 0
if left_over and st.button(
    f"Delete the {left_over} cancelled examples of run #{flt.job_id}",
    key="review_delete_cancelled",
    help="What the stopped run left unfinished. Resuming the run instead would finish them.",
):
    st.toast(f"Deleted {generation.delete_cancelled(flt.job_id)} cancelled example(s).")
    st.rerun()
rows = filters.page(flt, int(number), PAGE_SIZE)
table = pd.DataFrame(
    [
        {
            "id": r["id"],
            "★": "★" if r["gold_star"] else "",
            "persona": r["persona"],
            "source": r["source"],
            "type": r["document_type"],
            "title": r["document_title"],
            "traits": ", ".join(r["traits_stressed"]),
            "status": r["status"],
            "rating": "★" * r["rating"] if r["rating"] else "",
            "words": r["response_words"],
            "quality gate": "; ".join(r["quality_issues"]),
            "flags": "; ".join(r["flags"] + r["validation_issues"]),
        }
        for r in rows
    ]
)
picked = st.dataframe(
    table, hide_index=True, width="stretch", on_select="rerun", selection_mode="multi-row", key="review_table"
)
selected = [int(table.iloc[i]["id"]) for i in picked.selection.rows] if picked and picked.selection else []
bulk = st.columns(5)
bulk[0].caption(f"{len(selected)} selected" if selected else "Tick rows for bulk actions")
for column, (label, action) in zip(
    bulk[1:], [("Accept", "accept"), ("Reject", "reject"), ("★ Star", "star"), ("Unstar", "unstar")], strict=True
):
    if column.button(label, key=f"bulk_{action}", disabled=not selected):
        result = actions.bulk(selected, action, st.session_state.get("user_name", ""))
        note = f" ({result['skipped']} failed or unfinished ones skipped)" if result["skipped"] else ""
        st.toast(f"{label}: {result['changed']} example(s){note}.")
        st.rerun()

# ---- one example, with next / previous through everything the filter matches
order = filters.ids(flt)
if selected and len(selected) == 1:
    st.session_state["review_current"] = selected[0]
current = st.session_state.get("review_current")
if current not in order:
    current = st.session_state["review_current"] = order[0]
position = order.index(current)

st.divider()
nav = st.columns([1, 1, 4])
if nav[0].button("← Previous", disabled=position == 0, key="review_prev"):
    st.session_state["review_current"] = order[position - 1]
    st.rerun()
if nav[1].button("Next →", disabled=position >= len(order) - 1, key="review_next"):
    st.session_state["review_current"] = order[position + 1]
    st.rerun()
example = actions.get(current)
nav[2].markdown(
    f"**Example {example.id}** ({position + 1} of {len(order)}) · {example.document_type or example.source} · "
    f"status **{example.status}**{' · ★ gold' if example.gold_star else ''}"
    + (f" · rated {example.rating}/5" if example.rating else "")
)
if example.failure:
    st.error(f"Generation failed: {example.failure}")
for flag in example.flags:
    st.warning(flag)
for reason in example.quality_issues:
    st.warning(f"Quality gate: {reason}", icon=":material/flag:")

doc, reply = st.columns(2)
doc.markdown(f"**{example.document_title or 'Message'}**")
doc.container(height=420, border=True).markdown(example.document)
reply.markdown("**Response**" + (" (edited)" if example.original_response is not None else ""))
reply.container(height=420, border=True).markdown(example.response)


def act(change, *args) -> None:
    try:
        change(example.id, *args)
    except UserFacingError as exc:
        st.error(str(exc))
    else:
        st.rerun()


reviewer = st.session_state.get("user_name", "")
buttons = st.columns([1, 1, 1, 3])
if buttons[0].button("☆ Unstar" if example.gold_star else "★ Gold star", key="review_star_one"):
    act(actions.set_gold_star, not example.gold_star, reviewer)
if buttons[1].button("Accept", key="review_accept", type="primary", disabled=example.status == "accepted"):
    act(actions.set_status, "accepted", reviewer)
if buttons[2].button("Reject", key="review_reject", disabled=example.status == "rejected"):
    act(actions.set_status, "rejected", reviewer)
rating = buttons[3].radio(
    "Rating",
    [0, 1, 2, 3, 4, 5],
    index=example.rating or 0,
    horizontal=True,
    key=f"review_rate_{example.id}",
    format_func=lambda n: "–" if n == 0 else str(n),
)
if (rating or None) != example.rating:
    act(actions.set_rating, rating or None, reviewer)

lineage_view.show_example(example.id)  # which models used it, and where it came from

history = actions.edits(example.id) if example.original_response is not None else []
with st.expander("Edit the response" + (f" · {len(history)} edit(s) so far" if history else "")):
    edited = st.text_area("Response", example.response, height=240, key=f"review_edit_{example.id}")
    if st.button("Save the edit", key="review_save_edit"):
        act(actions.edit_response, edited, st.session_state.get("user_name", ""))
    if example.original_response is not None:
        st.markdown("**Original response**")
        st.container(height=200, border=True).markdown(example.original_response)
        st.dataframe(
            pd.DataFrame(
                [
                    {"when": clock.local(e.at), "who": e.editor or "—", "words after": len(e.after.split())}
                    for e in history
                ]
            ),
            hide_index=True,
        )
notes = st.text_input("Notes", example.notes, key=f"review_notes_{example.id}")
if notes != example.notes:
    act(actions.set_notes, notes)
