"""The Playground in a real browser on the embedded model: the message shows at once, the reply streams in,
and Stop ends it with the text so far kept (the run is interrupted mid-stream, as only a browser can)."""

from __future__ import annotations

import pytest

from tests.test_browser import _assert_no_error, _open, browser, server  # noqa: F401 - fixtures

pytestmark = pytest.mark.slow


def test_a_reply_streams_and_stop_keeps_what_arrived(server, browser):  # noqa: F811
    url, _ = server
    page = _open(browser, f"{url}/playground", "Playground")
    box = page.get_by_placeholder("Message")
    box.fill("Tell me a long story about a team that missed a deadline.")
    box.press("Enter")
    page.get_by_text("Tell me a long story about a team").wait_for(timeout=10_000)  # echoed before any reply
    page.wait_for_function("document.body.innerText.includes('▌')", timeout=240_000)  # the first words
    page.get_by_role("button", name="Stop").click()
    page.get_by_text("Stopped: the reply so far").wait_for(timeout=60_000)
    captions = " ".join(page.locator('[data-testid="stCaptionContainer"]').all_inner_texts())
    assert "local/smollm2-135m-instruct" in captions and "first words after" in captions
    tokens = int(captions.split("→ ")[1].split(" tokens")[0])
    assert 0 < tokens < 256  # generation really ended before the max reply tokens
    _assert_no_error(page)
    page.close()
