"""The studio's pages, each run by app.py through st.navigation."""

from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app.py"


def route_through_app() -> None:
    """Make sure a page is drawn inside app.py's shell (sidebar, start-up, navigation).

    Until st.navigation has run in a server process, Streamlit treats a pages/ folder in its
    legacy way: a first request for /monitor runs pages/monitor.py alone, without app.py.
    (Streamlit's AppTest does the same on every run.) Then run app.py here, in this same run so
    no widget event is lost: it routes the same URL to this page; the outer run stops after it.
    This touches Streamlit internals, pinned in requirements.txt; the browser test checks it.
    """
    import runpy

    import streamlit as st
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        runpy.run_path(str(APP), run_name="__main__")
        st.stop()


def identity() -> tuple[str, str] | None:
    """(name, email) of the user logged in through st.login, or None: the one place that reads st.user (tests
    replace it to log someone in without an identity provider)."""
    import streamlit as st

    if not st.user.is_logged_in:
        return None
    email = str(st.user.get("email") or "")
    return str(st.user.get("name") or email), email


def session_user():
    """The logged-in user app.py stored for this browser session, or None outside a session (another thread)."""
    import streamlit as st
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    if get_script_run_ctx(suppress_warning=True) is None:
        return None
    return st.session_state.get("studio_user")
