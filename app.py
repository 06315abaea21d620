"""Persona Studio: `streamlit run app.py`. Routes to the pages and draws the shared sidebar."""

import os

import streamlit as st

from pages import remember_page_settings
from pipeline import settings, startup
from pipeline.jobs import monitor

st.set_page_config(page_title="Persona Studio", page_icon="🎭", layout="wide")
startup.init(with_model=False)  # migrations and sample personas; cheap once done
if os.environ.get("STUDIO_AUTOSTART_MONITOR", "1") != "0":
    monitor.ensure_running()  # the background worker; one per data folder, guarded by its lock

pages = {
    "": [st.Page("pages/home.py", title="Home", icon="🏠", default=True)],
    "Data": [
        st.Page("pages/personas.py", title="Personas", icon="🎭"),
        st.Page("pages/generate.py", title="Generate", icon="🏭"),
        st.Page("pages/review.py", title="Review", icon="🔍"),
        st.Page("pages/datasets.py", title="Datasets", icon="📦"),
    ],
    "Training": [
        st.Page("pages/train.py", title="Train", icon="🏋️"),
        st.Page("pages/monitor.py", title="Live monitoring", icon="📈"),
    ],
    "Evaluation": [
        st.Page("pages/evaluate.py", title="Evaluate", icon="⚖️"),
        st.Page("pages/arena.py", title="Arena", icon="🥊"),
        st.Page("pages/leaderboard.py", title="Leaderboard", icon="🏆"),
    ],
    "Models": [
        st.Page("pages/models.py", title="Models", icon="🗂️"),
        st.Page("pages/playground.py", title="Playground", icon="💬"),
    ],
}
navigation = st.navigation(pages)
remember_page_settings()

with st.sidebar:
    st.text_input("Your name", key="user_name", help="Recorded on the jobs you start and the labels you give.")
    worker = monitor.status_word()
    st.markdown(f"{ {'running': '🟢', 'starting': '🟡'}.get(worker, '🔴') } Background worker {worker}")
    st.markdown("**Providers**")
    for label, configured in settings.configured_providers().items():
        st.markdown(f"{'🟢' if configured else '⚪'} {label}" + ("" if configured else " · no key"))
    st.caption("Add keys in `.streamlit/secrets.toml` or the environment.")

navigation.run()
