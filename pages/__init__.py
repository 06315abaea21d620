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
