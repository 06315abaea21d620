"""A real browser on a real server: headless Debian Chromium, driven by Playwright, opens every page.

`make test` installs Debian's chromium; Playwright uses it as it is (never `playwright install`).
Full-page screenshots go to STUDIO_SCREENSHOT_DIR when it is set, else to a temporary folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import KEY_VARS, REPO, SHARED_MODELS

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium")
# headless in a container, and offline: no first-run, update, sync or QUIC traffic
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
FLAGS += ["--disable-component-update", "--disable-sync", "--disable-quic"]
SERVER_FLAGS = ["--server.headless", "true", "--browser.gatherUsageStats", "false"]
PAGES = [
    ("", "Persona Studio"),
    ("personas", "Personas"),
    ("generate", "Generate"),
    ("review", "Review"),
    ("datasets", "Datasets"),
    ("train", "Train"),
    ("monitor", "Live monitoring"),
    ("experiments", "Experiments"),
    ("evaluate", "Evaluate"),
    ("arena", "Arena"),
    ("leaderboard", "Leaderboard"),
    ("models", "Models"),
    ("playground", "Playground"),
]
# Streamlit 1.67 testids: an alert's content is stAlertContent<Kind>; a lazily loaded widget shows
# stSkeleton until its code arrives; stStatusWidget is there only while the script runs. The main
# area is testid stMain, except on a page with st.chat_input (stAppScrollToBottomContainer): use its
# class, and stMainBlockContainer for what is inside it.
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serve(tmp_path_factory.mktemp("browser") / "data", SHARED_MODELS) as started:
        yield started


@contextlib.contextmanager
def serve(data: Path, models: Path):
    """A studio server on a free port over `data` and `models`: yields (url, data), stops it and its worker."""
    if CHROMIUM is None:
        message = "chromium missing: make test installs Debian's chromium package"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in KEY_VARS}  # no provider keys configured
    env |= {"STUDIO_DATA_DIR": str(data), "STUDIO_MODELS_DIR": str(models), "PYTHONPATH": str(REPO)}
    env["STUDIO_SECRETS_FILE"] = str(data / "no-secrets.toml")  # never created
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), *SERVER_FLAGS],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # so killpg stops streamlit and anything it spawned in its group
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail("the studio did not answer on its health endpoint within 60 s")
        yield url, data
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:  # a loaded machine: it was still drawing a page
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)
        _stop_monitor(data)  # the app starts one in its own session, so killpg misses it


def _stop_monitor(data: Path) -> None:
    lock = data / "monitor.lock"
    if (data / "logs" / "monitor.out").exists():  # one was started: give it time to take its lock
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (lock.exists() and lock.read_text().strip()):
            time.sleep(0.2)
    try:
        os.kill(int(lock.read_text().strip()), signal.SIGTERM)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        pass


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = os.environ.get("STUDIO_SCREENSHOT_DIR")
    return Path(folder) if folder else tmp_path_factory.mktemp("screenshots")


def _open(browser, url: str, heading: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.locator('[data-testid="stMainBlockContainer"] h1', has_text=heading).wait_for(timeout=60_000)
    done = '!document.querySelector(\'[data-testid="stStatusWidget"], [data-testid="stSkeleton"]\')'
    page.wait_for_function(done, timeout=60_000)  # the run has ended and every widget has drawn
    page.wait_for_timeout(500)
    return page


def _settled(page) -> None:
    """The run a click started has ended and the elements it replaced are gone."""
    page.wait_for_timeout(300)
    done = '!document.querySelector(\'[data-testid="stStatusWidget"], [data-testid="stSkeleton"]\')'
    page.wait_for_function(done, timeout=60_000)
    page.wait_for_timeout(300)


def _screenshot(page, folder: Path, name: str) -> None:
    # stMain scrolls inside a fixed-height app, so full_page alone stops at the viewport: grow it first
    height = page.evaluate("document.querySelector('.stMain').scrollHeight")
    page.set_viewport_size({"width": 1400, "height": max(1000, height)})
    page.wait_for_timeout(300)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def _assert_no_error(page) -> None:
    errors = page.locator(ERRORS)
    assert errors.count() == 0, errors.all_inner_texts()


RAW_PAGE_NAMES = {"app", "arena", "datasets", "leaderboard", "monitor"}  # what Streamlit's own list showed


def test_a_deep_link_on_a_fresh_server_gets_the_whole_app(server, browser, shots):
    """The first request a new server sees is for a page, not the home page (a bookmark).

    While that first run imports and migrates, the sidebar shows the studio's navigation, never
    Streamlit's list of the raw file names in pages/.
    """
    url, _ = server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{url}/monitor", wait_until="commit")
    heading = page.locator('[data-testid="stMainBlockContainer"] h1', has_text="Live monitoring")
    seen, deadline = [], time.monotonic() + 60
    while not heading.count() and time.monotonic() < deadline:
        seen += page.locator('[data-testid="stSidebar"]').all_inner_texts()
        if len(seen) == 5:
            page.screenshot(path=str(shots.joinpath("first_load.png")))
        page.wait_for_timeout(100)
    listed = {line.strip() for text in seen for line in text.splitlines()}
    assert not listed & RAW_PAGE_NAMES, listed
    assert any("Live monitoring" in text for text in seen), "the navigation is drawn before the page"
    heading.wait_for(timeout=60_000)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)
    sidebar = page.locator('[data-testid="stSidebar"]')
    assert "Providers" in sidebar.inner_text() and "Background worker" in sidebar.inner_text()
    _assert_no_error(page)
    page.close()


def test_icons_are_drawn_as_glyphs_not_emoji(server, browser):
    """Material Symbols: the navigation's icons are elements in Streamlit's icon font, and no text is an emoji."""
    url, _ = server
    page = _open(browser, url, "Persona Studio")
    nav_icons = page.locator('[data-testid="stSidebar"] [data-testid="stIconMaterial"]')
    assert nav_icons.count() >= 12  # one per page, plus the status ticks
    family = nav_icons.first.evaluate("e => getComputedStyle(e).fontFamily")
    assert "Material Symbols" in family
    loaded = page.evaluate("document.fonts.check('24px \"Material Symbols Rounded\"')")
    assert loaded, "the icon font is there, so the names draw as glyphs"
    page.close()


def test_a_new_persona_typed_with_tab_keeps_every_field(server, browser, shots):
    """Type a persona as a person does, Tab from box to box, add a trait, save: nothing typed is lost."""
    url, _ = server
    page = _open(browser, f"{url}/personas", "Personas")
    page.get_by_role("button", name="New persona").click()
    page.get_by_role("heading", name="New persona").wait_for()
    _settled(page)  # the previous persona's boxes are gone
    page.get_by_label("Name", exact=True).fill("mentor")
    for text in ["Guides without taking over.", "You are a patient mentor.", "patient", "Never rushes."]:
        page.keyboard.press("Tab")  # description, system prompt, trait 1, what it means
        page.keyboard.type(text)
    page.keyboard.press("Tab")
    page.keyboard.type("Explains twice\nWaits for questions")  # markers, one per line
    page.get_by_role("button", name="Add a trait").click()
    page.get_by_label("Trait 2").wait_for()
    _settled(page)
    page.get_by_label("Trait 2").fill("plain")
    page.keyboard.press("Tab")
    page.keyboard.type("Short words.")
    _screenshot(page, shots, "personas_new")
    page.get_by_role("button", name="Save persona").click()
    page.get_by_text("Saved persona “mentor” with 2 traits.").wait_for(timeout=30_000)
    _assert_no_error(page)
    # the page now shows the saved persona, read back from the studio
    page.get_by_role("heading", name="Edit “mentor”").wait_for()
    _settled(page)
    values = [page.get_by_label(label, exact=True).input_value() for label in ("One-line description", "System prompt")]
    assert values == ["Guides without taking over.", "You are a patient mentor."]
    assert [page.get_by_label(f"Trait {n}").input_value() for n in (1, 2)] == ["patient", "plain"]
    meanings = page.get_by_label("What it means")
    assert [meanings.nth(i).input_value() for i in range(2)] == ["Never rushes.", "Short words."]
    markers = page.get_by_label("Behavioural markers", exact=False)
    assert markers.first.input_value() == "Explains twice\nWaits for questions"
    page.close()


@pytest.mark.parametrize(("path", "heading"), PAGES)
def test_every_page_opens_in_a_real_browser_without_errors(server, browser, shots, path, heading):
    url, _ = server
    page = _open(browser, f"{url}/{path}", heading)
    _assert_no_error(page)
    sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
    for section in ("Data", "Training", "Models", "Providers", "no key"):
        assert section in sidebar
    _screenshot(page, shots, path or "home")
    page.close()


def test_the_app_started_the_background_worker(server, browser):
    url, data = server
    page = _open(browser, url, "Persona Studio")
    page.get_by_text("Background worker running").wait_for(timeout=30_000)
    assert (data / "monitor.lock").exists()
    page.close()


def test_home_walks_a_new_user_to_the_next_step_and_remembers_the_persona(server, browser, shots):
    url, _ = server
    page = _open(browser, url, "Persona Studio")
    main = page.locator('[data-testid="stMainBlockContainer"]')
    assert "1. Persona" in main.inner_text() and "2. Generate" in main.inner_text()
    _screenshot(page, shots, "home-guided")

    page.get_by_role("button", name="Next: Generate examples").click()

    page.locator('[data-testid="stMainBlockContainer"] h1', has_text="Generate").wait_for(timeout=60_000)
    page.wait_for_url("**persona=collaborative**", timeout=30_000)  # the persona in hand travels in the address
    _assert_no_error(page)
    page.close()
