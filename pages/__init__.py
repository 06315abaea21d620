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


CHOSEN_PERSONA = "chosen_persona"  # not a widget key: it outlives page switches


def pick_persona(
    names: list[str], *, key: str, where=None, first: str | None = None, last: str | None = None, label="Persona"
):
    """A persona picker that remembers the choice across pages (session) and in the URL (?persona=).

    `first` and `last` are extra options before or after the names (e.g. "All", "(no persona)"):
    offered, never remembered.
    """
    import streamlit as st

    where = where or st
    options = ([first] if first else []) + list(names) + ([last] if last else [])
    remembered = st.session_state.get(CHOSEN_PERSONA) or st.query_params.get("persona")
    if key not in st.session_state and remembered in names:
        st.session_state[key] = remembered  # a page opened afresh starts on the persona in hand

    def keep() -> None:
        if st.session_state[key] in names:
            st.session_state[CHOSEN_PERSONA] = st.session_state[key]

    choice = where.selectbox(label, options, key=key, on_change=keep)
    if choice in names:
        st.session_state[CHOSEN_PERSONA] = choice
        st.query_params["persona"] = choice
    return choice


# The settings each page keeps while the user visits other pages: choices and numbers only. Buttons,
# uploads and editors are never listed: Streamlit refuses a value written to those.
REMEMBERED = frozenset(
    {
        # Generate
        "gen_examples",
        # Review
        "review_run",
        "review_status",
        "review_star",
        "review_rating",
        "review_type",
        "review_trait",
        "review_search",
        "review_view",
        # Datasets
        "build_status",
        "build_gold",
        "build_rating",
        "build_share",
        "build_seed",
        "build_target",
        # Train
        "train_dataset",
        "train_backend",
        "train_method",
        "train_preset",
        "train_batch",
        "train_accum",
        "train_len",
        "train_dropout",
        "train_eval",
        "train_save",
        "train_seed",
        "train_merge",
        # Evaluate
        "eval_judge",
        "eval_held_out",
        "eval_keep_going",
        "eval_scores",
        "eval_traits",
    }
)


def remember_page_settings() -> None:
    """Keep each page's settings when the user visits another page and comes back.

    Streamlit forgets the state of widgets that were not drawn in a run; writing a widget's value
    back through session state before any page draws keeps it (Streamlit's documented way).
    """
    import streamlit as st

    for key in REMEMBERED & set(st.session_state):
        st.session_state[key] = st.session_state[key]


# Icons are Material Symbols (":material/<name>:"), a font Streamlit ships: they render in any
# browser, where an emoji needs an emoji font the machine may not have (an empty box otherwise).
STATUS_STYLE = {  # a job's status word (pipeline.jobs.board.badge) → Material Symbol, colour
    "queued": ("schedule", "orange"),
    "running": ("autorenew", "blue"),
    "cancelling": ("pending", "orange"),
    "succeeded": ("check_circle", "green"),
    "failed": ("error", "red"),
    "cancelled": ("block", "gray"),
}


STATUS_COLOURS = {  # the same colours as CSS, for a table cell (st.dataframe draws no icon)
    "queued": "#C2410C",
    "running": "#1D4ED8",
    "cancelling": "#C2410C",
    "succeeded": "#15803D",
    "failed": "#B91C1C",
    "cancelled": "#6B7280",
}


def status_badge(word: str) -> str:
    """A job's status word as Markdown with its icon and colour (st.markdown, st.metric values)."""
    icon, colour = STATUS_STYLE.get(word, ("help", "gray"))
    return f":{colour}[:material/{icon}: {word}]"


def dot(on: bool) -> str:
    """A green tick or a grey dash, in Markdown: for "configured" and "running" in the sidebar."""
    return ":green[:material/check_circle:]" if on else ":gray[:material/do_not_disturb_on:]"


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
