"""A real browser on a real server: headless Debian Chromium, driven by Playwright, opens every page.

`make test` installs Debian's chromium; Playwright uses it as it is (no browser download).
Screenshots go to STUDIO_SCREENSHOT_DIR when it is set.
"""

from __future__ import annotations

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

from tests.conftest import REPO, SHARED_MODELS

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic"]
PAGES = [("", "Persona Studio"), ("personas", "Personas"), ("monitor", "Live monitoring"),
         ("playground", "Playground")]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if CHROMIUM is None:
        message = "chromium missing: `make test` installs Debian's chromium package"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    data = tmp_path_factory.mktemp("browser") / "data"
    port = _free_port()
    env = {**os.environ, "STUDIO_DATA_DIR": str(data), "STUDIO_MODELS_DIR": str(SHARED_MODELS),
           "STUDIO_SECRETS_FILE": str(data / "no-secrets.toml"), "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
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
        process.wait(timeout=20)
        _stop_monitor(data)  # the app started one for its data folder


def _stop_monitor(data: Path) -> None:
    lock = data / "monitor.lock"
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


def _open(browser, url: str, heading: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.locator('[data-testid="stMain"] h1', has_text=heading).wait_for(timeout=60_000)
    # wait for the script run to end: the status widget shows while it runs
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)
    page.wait_for_timeout(500)
    return page


def _screenshot(page, name: str) -> None:
    folder = os.environ.get("STUDIO_SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def _assert_no_error(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0
    errors = page.locator('[data-testid="stAlertContentError"]')
    assert errors.count() == 0, errors.all_inner_texts()


def test_a_deep_link_on_a_fresh_server_gets_the_whole_app(server, browser):
    """The first request a new server sees is for a page, not the home page (a bookmark)."""
    url, _ = server
    page = _open(browser, f"{url}/monitor", "Live monitoring")
    sidebar = page.locator('[data-testid="stSidebar"]')
    assert "Providers" in sidebar.inner_text() and "Background worker" in sidebar.inner_text()
    _assert_no_error(page)
    page.close()


@pytest.mark.parametrize(("path", "heading"), PAGES)
def test_every_page_opens_in_a_real_browser_without_errors(server, browser, path, heading):
    url, _ = server
    page = _open(browser, f"{url}/{path}", heading)
    _assert_no_error(page)
    sidebar = page.locator('[data-testid="stSidebar"]').inner_text()
    for section in ("Data", "Training", "Models", "Providers"):
        assert section in sidebar
    _screenshot(page, path or "home")
    page.close()


def test_the_app_started_the_background_worker(server, browser):
    url, data = server
    page = _open(browser, url, "Persona Studio")
    page.get_by_text("Background worker running").wait_for(timeout=30_000)
    assert (data / "monitor.lock").exists()
    page.close()
