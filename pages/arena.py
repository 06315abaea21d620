from pages import route_through_app

route_through_app()

import streamlit as st

from pipeline.errors import UserFacingError
from pipeline.evaluation import service

st.title("Arena")
st.caption(
    "Blind votes: a prompt and two anonymous replies. Pick the one that sounds more like the persona; "
    "the models are shown only after you vote. Votes feed the Leaderboard."
)

runs = service.runs()
if not runs:
    st.info("The Arena needs the replies of an evaluation run: start one on the Evaluate page.")
    st.stop()
a, b = st.columns([2, 1])
run_id = a.selectbox(
    "Evaluation",
    [j.id for j in runs],
    key="arena_run",
    format_func=lambda i: next(f"#{j.id} · {j.name}" for j in runs if j.id == i),
)
voter = b.text_input("Your name", value=st.session_state.get("user_name", ""), key="arena_voter",
                     disabled=st.session_state.get("studio_user") is not None)  # fmt: skip

state = st.session_state
if state.get("arena_match") is None or state["arena_match"].job_id != run_id:
    state["arena_match"], state["arena_revealed"] = service.next_match(run_id, voter or "anonymous"), None
match = state["arena_match"]
if match is None:
    st.info("This run has no replies to compare yet.")
    st.stop()

st.markdown(f"**Prompt** · {match.group}")
with st.container(border=True, height=220):
    st.markdown(match.prompt)
left, right = st.columns(2)
with left.container(border=True):
    st.markdown("**A**")
    st.markdown(match.left_text)
with right.container(border=True):
    st.markdown("**B**")
    st.markdown(match.right_text)

revealed = state.get("arena_revealed")
if revealed is None:
    buttons = st.columns(4)
    for column, choice in zip(buttons, service.VOTES, strict=True):
        if column.button(choice, key=f"arena_vote_{choice}", width="stretch"):
            try:
                service.vote(match, choice, voter)
            except UserFacingError as exc:
                st.error(str(exc))
            else:
                state["arena_revealed"] = choice
                st.rerun()
else:
    st.success(f"You voted **{revealed}**. A was **{match.left}**; B was **{match.right}**.")
    if st.button("Next pair", type="primary", key="arena_next"):
        state["arena_match"], state["arena_revealed"] = service.next_match(run_id, voter or "anonymous"), None
        st.rerun()
st.caption(f"{service.votes(run_id)} votes on this run so far.")
