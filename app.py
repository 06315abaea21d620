"""Persona Studio: `streamlit run app.py`. Routes to the pages and draws the shared sidebar.

The navigation is drawn first, before anything slow is imported, so the first load shows the
whole shell at once. Streamlit's own sidebar navigation is off (.streamlit/config.toml
showSidebarNavigation = false: otherwise a fresh server lists the raw file names in pages/ until
this script reaches st.navigation); the links below are drawn by this script instead.
"""

import os

import streamlit as st

st.set_page_config(page_title="Persona Studio", page_icon=":material/theater_comedy:", layout="wide")

pages = {
    "": [st.Page("pages/home.py", title="Home", icon=":material/home:", default=True)],
    "Data": [
        st.Page("pages/personas.py", title="Personas", icon=":material/theater_comedy:"),
        st.Page("pages/generate.py", title="Generate", icon=":material/factory:"),
        st.Page("pages/review.py", title="Review", icon=":material/rate_review:"),
        st.Page("pages/datasets.py", title="Datasets", icon=":material/dataset:"),
    ],
    "Training": [
        st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("pages/monitor.py", title="Live monitoring", icon=":material/monitoring:"),
        st.Page("pages/experiments.py", title="Experiments", icon=":material/science:"),
    ],
    "Evaluation": [
        st.Page("pages/evaluate.py", title="Evaluate", icon=":material/balance:"),
        st.Page("pages/arena.py", title="Arena", icon=":material/sports_mma:"),
        st.Page("pages/leaderboard.py", title="Leaderboard", icon=":material/trophy:"),
    ],
    "Models": [
        st.Page("pages/models.py", title="Models", icon=":material/deployed_code:"),
        st.Page("pages/playground.py", title="Playground", icon=":material/chat:"),
    ],
}
navigation = st.navigation(pages, position="hidden")  # drawn here, as links, so it shows at once

with st.sidebar:
    for section, section_pages in pages.items():
        if section:
            st.caption(f"**{section}**")
        for page in section_pages:
            st.page_link(page)
    st.divider()

opening = st.empty()  # a session's first run may import the engine and migrate: seconds, said so
if "studio_opened" not in st.session_state:
    opening.info("Opening the studio…", icon=":material/hourglass_top:")

# imported after the shell is drawn: they take seconds on a first run
from pages import dot, identity, remember_page_settings, session_user  # noqa: E402
from pipeline import access, clock, notifications, settings, startup  # noqa: E402
from pipeline.errors import UserFacingError  # noqa: E402
from pipeline.jobs import monitor  # noqa: E402

# With an [auth] section in secrets.toml the studio is shared: everyone logs in, and the pipeline checks
# each write against their roles ([roles]). Without one it is a single local user's, as it always was.
user = None
if access.login_configured():
    found = identity()
    if found is None:
        opening.empty()
        st.title("Persona Studio")
        st.write("This studio is shared: log in to continue.")
        if st.button("Log in", key="login"):
            st.login(*access.login_providers()[:1])
        st.stop()
    user = access.user(*found)
    st.session_state["user_name"] = user.label  # the who of every action
st.session_state["studio_user"] = user  # for the parts of a page that refresh on their own (fragments)
clock.use_zone(st.context.timezone, lambda: st.context.timezone)  # times on every page in the browser's zone
access.use(user, session_user)  # for every pipeline call in this run; None: no login, everything allowed
startup.init(with_model=False)  # migrations and sample personas; cheap once done
if os.environ.get("STUDIO_AUTOSTART_MONITOR", "1") != "0":
    monitor.ensure_running()  # the background worker; one per data folder, guarded by its lock
opening.empty()
st.session_state["studio_opened"] = True
remember_page_settings()

with st.sidebar:
    if user is None:
        st.text_input("Your name", key="user_name", help="Recorded on the jobs you start and the labels you give.")
    else:
        roles = ", ".join(r for r in access.ROLES if r in user.roles) or "none"
        st.markdown(f"Logged in as **{user.label}** · {roles}")
        if st.button("Log out", key="logout"):
            st.logout()
    worker = monitor.status_word()
    worker_icon = {"running": dot(True), "starting": ":orange[:material/pending:]"}.get(
        worker, ":red[:material/error:]"
    )
    st.markdown(f"{worker_icon} Background worker {worker}")
    st.markdown("**Providers**")
    for label, configured in settings.configured_providers().items():
        st.markdown(f"{dot(configured)} {label}" + ("" if configured else " · no key"))
    st.caption("Add keys in `.streamlit/secrets.toml` or the environment.")

ENDED_ICONS = {"succeeded": ":material/check_circle:", "failed": ":material/error:", "cancelled": ":material/cancel:"}


@st.fragment(run_every=5)
def job_ended_toasts() -> None:
    """A toast on whichever page is open when a job ends; each open page sees each end once."""
    cursor = st.session_state.get("jobs_ended_cursor")
    ended, st.session_state["jobs_ended_cursor"] = notifications.ended_since(cursor)
    for item in ended[-5:]:
        st.toast(item["text"], icon=ENDED_ICONS.get(item["status"]))


job_ended_toasts()

try:
    navigation.run()
except UserFacingError as exc:  # e.g. a role the user lacks, from a button a page does not guard itself
    st.error(str(exc))
