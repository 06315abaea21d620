from pages import route_through_app

route_through_app()

import streamlit as st

from pipeline import overview

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

st.subheader("Where to start")
st.page_link("pages/personas.py", label=f"Personas ({counts['personas']}): write a system prompt and traits", icon="🎭")
st.page_link(
    "pages/playground.py", label="Playground: chat with a model, with or without the persona's prompt", icon="💬"
)
st.page_link("pages/monitor.py", label=f"Live monitoring: {counts['running_jobs']} job(s) running", icon="📈")
