from pages import pick_persona, route_through_app

route_through_app()

import streamlit as st

from pipeline import flow, overview, personas

st.title("Persona Studio")
st.markdown(
    "Turn a written persona into a fine-tuned model that carries it **without** the system prompt, and prove it did."
)
counts = overview.studio_counts()
cols = st.columns(5)
cols[0].metric("Examples", counts["examples"])
cols[1].metric("Gold stars", counts["gold_stars"])
cols[2].metric("Running jobs", counts["running_jobs"])
cols[3].metric("Deployed models", counts["deployed_models"])
cols[4].metric("Spend", f"${counts['spend_usd']:.4f}")
st.info(f"**Last evaluation:** {overview.evaluation_headline(counts['last_evaluation_id'])}")

persona_list = personas.list_personas()
if not persona_list:
    st.subheader("Where to start")
    st.page_link("pages/personas.py", label="Write your first persona", icon=":material/person_add:")
    st.stop()

st.subheader("Your persona, step by step")
by_name = {p.name: p for p in persona_list}
persona = by_name[pick_persona(list(by_name), key="home_persona")]
steps = flow.steps(persona.id)
upcoming = flow.next_step(steps)
with st.container(border=True):
    for number, step in enumerate(steps, start=1):
        icon = ":material/check_circle:" if step.done else ":material/radio_button_unchecked:"
        if step is upcoming:
            icon = ":material/arrow_circle_right:"
        left, right = st.columns([1, 3])
        left.markdown(f"{icon} **{number}. {step.title}**")
        right.markdown(step.detail)
if upcoming is not None:
    if st.button(f"Next: {upcoming.action}", type="primary", icon=":material/arrow_forward:"):
        st.switch_page(upcoming.page)
else:
    st.success(f"{persona.name} has a deployed model. Chat with it without the system prompt in the Playground.")
    if st.button("Open the Playground", type="primary", icon=":material/chat:"):
        st.switch_page("pages/playground.py")

st.subheader("Elsewhere")
st.page_link(
    "pages/monitor.py", label=f"Live monitoring: {counts['running_jobs']} job(s) running", icon=":material/monitoring:"
)
st.page_link("pages/playground.py", label="Playground: chat with any model", icon=":material/chat:")
