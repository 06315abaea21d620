"""Persona Studio: `streamlit run app.py`. Routes to the pages and draws the shared sidebar."""

import streamlit as st

from pipeline import settings, startup

st.set_page_config(page_title="Persona Studio", page_icon="🎭", layout="wide")
startup.init(with_model=False)  # migrations and sample personas; cheap once done

pages = {
    "": [st.Page("pages/home.py", title="Home", icon="🏠", default=True)],
    "Data": [st.Page("pages/personas.py", title="Personas", icon="🎭")],
    "Models": [st.Page("pages/playground.py", title="Playground", icon="💬")],
}
navigation = st.navigation(pages)

with st.sidebar:
    st.markdown("**Providers**")
    for label, configured in settings.configured_providers().items():
        st.markdown(f"{'🟢' if configured else '⚪'} {label}" + ("" if configured else " · no key"))
    st.caption("Add keys in `.streamlit/secrets.toml` or the environment.")

navigation.run()
