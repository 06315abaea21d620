import streamlit as st

from pipeline import overview

st.title("Persona Studio")
st.markdown(
    "Turn a written persona into a fine-tuned model that carries it **without** the system prompt, and prove it did."
)
counts = overview.studio_counts()
c1, c2, c3 = st.columns(3)
c1.metric("Personas", counts["personas"])
c2.metric("Model calls", counts["llm_calls"])
c3.metric("Spend", f"${counts['spend_usd']:.4f}")

st.subheader("Where to start")
st.page_link("pages/personas.py", label="Write or edit a persona: its system prompt and traits", icon="🎭")
st.page_link("pages/playground.py", label="Chat with a model, with or without the persona's prompt", icon="💬")
