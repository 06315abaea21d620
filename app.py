"""Persona Studio: `streamlit run app.py`. Routes to the pages and draws the shared sidebar."""

import os

import streamlit as st

from pages import identity, session_user
from pipeline import access, settings, startup
from pipeline.errors import UserFacingError
from pipeline.jobs import monitor

st.set_page_config(page_title="Persona Studio", page_icon="🎭", layout="wide")

# With an [auth] section in secrets.toml the studio is shared: everyone logs in, and the pipeline checks
# each write against their roles ([roles]). Without one it is a single local user's, as it always was.
user = None
if access.login_configured():
    found = identity()
    if found is None:
        st.title("Persona Studio")
        st.write("This studio is shared: log in to continue.")
        if st.button("Log in", key="login"):
            st.login(*access.login_providers()[:1])
        st.stop()
    user = access.user(*found)
    st.session_state["user_name"] = user.label  # the who of every action
st.session_state["studio_user"] = user  # for the parts of a page that refresh on their own (fragments)
access.use(user, session_user)  # for every pipeline call in this run; None: no login, everything allowed
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

with st.sidebar:
    if user is None:
        st.text_input("Your name", key="user_name", help="Recorded on the jobs you start and the labels you give.")
    else:
        roles = ", ".join(r for r in access.ROLES if r in user.roles) or "none"
        st.markdown(f"Logged in as **{user.label}** · {roles}")
        if st.button("Log out", key="logout"):
            st.logout()
    worker = monitor.status_word()
    st.markdown(f"{ {'running': '🟢', 'starting': '🟡'}.get(worker, '🔴') } Background worker {worker}")
    st.markdown("**Providers**")
    for label, configured in settings.configured_providers().items():
        st.markdown(f"{'🟢' if configured else '⚪'} {label}" + ("" if configured else " · no key"))
    st.caption("Add keys in `.streamlit/secrets.toml` or the environment.")

try:
    navigation.run()
except UserFacingError as exc:  # e.g. a role the user lacks, from a button a page does not guard itself
    st.error(str(exc))
