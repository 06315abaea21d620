"""The whole flow in a real browser, as a person who is not an engineer walks it, on the built-in model.

Persona → Generate → Review → Datasets → Train → Live monitoring → Evaluate → Leaderboard → Models (deploy, export) →
Playground, by clicking: no keys, no GPU, the smallest settings each page offers. Each step's wall time
is printed (pytest -s) and the whole walk must stay well under the half hour a fresh clone is allowed
to take to a deployed persona model on two cores. Screenshots of each step go to the `shots` folder.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import time

import pytest

from tests.conftest import SHARED_MODELS
from tests.test_browser import (  # noqa: F401 - browser and shots are fixtures
    _assert_no_error,
    _open,
    _screenshot,
    _settled,
    browser,
    serve,
    shots,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1080)]  # past the walk's limit: its timings still print

PERSONA = "flowbot"
MODEL = "flowbot-tuned"  # the fine-tuned model's name, typed on the Train page
WALK_LIMIT_S = 15 * 60  # the issue: a fresh clone to a deployed persona model in under 30 minutes on 2 cores
MAIN = '[data-testid="stMainBlockContainer"]'
SIDEBAR = '[data-testid="stSidebar"]'
LONG = 600_000  # ms: a job's wait on a loaded two-core machine


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A studio with a models folder of its own: the fine-tuned adapter lands there, not in data/models."""
    from pipeline.llm import embedded

    root = tmp_path_factory.mktemp("flow")
    models = root / "models"
    models.mkdir()
    (models / embedded.EMBEDDED_NAME).symlink_to(SHARED_MODELS / embedded.EMBEDDED_NAME)
    with serve(root / "data", models) as started:
        yield started
    _stop_jobs(root / "data")


def _stop_jobs(data) -> None:
    """A job still running when the walk failed: the monitor was stopped, its job's process group is ended here."""
    try:
        with sqlite3.connect(data / "studio.db") as db:
            pids = [row[0] for row in db.execute("SELECT pid FROM job WHERE pid IS NOT NULL AND finished_at IS NULL")]
    except sqlite3.Error:
        return
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# --- what a person does: click a link, pick an option, type a number, move a slider ------------------------


def _heading(page, text: str) -> None:
    page.locator(f"{MAIN} h1", has_text=text).wait_for(timeout=60_000)
    _settled(page)


def _sidebar(page, name: str, heading: str | None = None) -> None:
    page.locator(SIDEBAR).get_by_role("link", name=re.compile(rf"{re.escape(name)}$")).click()
    _heading(page, heading or name)


def _widget(page, testid: str, label: str):
    """The widget of this kind whose label is exactly `label`."""
    exact = page.locator('[data-testid="stWidgetLabel"]', has_text=re.compile(rf"^\s*{re.escape(label)}\s*$"))
    return page.locator(f'[data-testid="{testid}"]').filter(has=exact)


def _select(page, label: str, option: str) -> None:
    _widget(page, "stSelectbox", label).click()
    page.get_by_role("option", name=option).first.click()
    _settled(page)


def _number(page, label: str, value: int) -> None:
    box = _widget(page, "stNumberInput", label).locator("input")
    box.fill(str(value))
    box.press("Enter")
    _settled(page)


def _slider_to_lowest(page, label: str, steps_up: int = 0) -> None:
    """Home on each thumb (a range slider's upper thumb stops at the lower one), then `steps_up` to the right."""
    thumbs = _widget(page, "stSlider", label).get_by_role("slider")
    for index in reversed(range(thumbs.count())):
        thumbs.nth(index).press("Home")
    for _ in range(steps_up):
        thumbs.last.press("ArrowRight")
    _settled(page)


def _untick(page, label: str) -> None:
    box = page.locator('[data-testid="stCheckbox"]', has_text=label)
    if box.locator("input").is_checked():
        box.locator("label").click()
        _settled(page)


def _expand(page, title: str) -> None:
    page.locator('[data-testid="stExpander"] summary', has_text=title).click()
    page.wait_for_timeout(300)


def _shown(page, testid: str, label: str) -> str:
    """What a widget shows: its text and the value of its box (a selectbox's choice is the value of its input)."""
    widget = _widget(page, testid, label)
    return " ".join([widget.inner_text(), *(box.input_value() for box in widget.locator("input").all())])


def _button(page, key: str):
    """A button by its widget key (Streamlit gives its container the class st-key-<key>), once the run that
    redraws it has replaced the previous example's copy (both stay in the page for a moment)."""
    found = page.locator(f".st-key-{key} button")
    deadline = time.monotonic() + 60
    while found.count() != 1 and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    return found


def _main(page) -> str:
    return page.locator(MAIN).inner_text()


def _metric(page, label: str) -> str:
    metric = page.locator('[data-testid="stMetric"]').filter(
        has=page.locator('[data-testid="stMetricLabel"]', has_text=re.compile(rf"^\s*{re.escape(label)}\s*$"))
    )
    return metric.locator('[data-testid="stMetricValue"]').inner_text().strip()


def _wait_for_text(page, pattern: str, timeout_ms: int = 60_000) -> re.Match:
    """Wait until the main area shows text matching `pattern`; its match."""
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        found = re.search(pattern, _main(page))
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{pattern!r} never showed; the page said:\n{_main(page)[-3000:]}")
        page.wait_for_timeout(500)


def _until(ready, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert time.monotonic() < deadline, "the page never got there"
        time.sleep(0.3)


def _shot(page, folder, name: str) -> None:
    _screenshot(page, folder, name)
    page.set_viewport_size({"width": 1400, "height": 1000})


# --- the walk, one function a step ------------------------------------------------------------------------


def _persona(page, folder) -> None:
    _sidebar(page, "Personas")
    page.get_by_role("button", name="New persona").click()
    page.get_by_role("heading", name="New persona").wait_for()
    _settled(page)
    page.get_by_label("Name", exact=True).fill(PERSONA)
    page.get_by_label("One-line description", exact=True).fill("A brisk, friendly team lead.")
    page.get_by_label("System prompt", exact=True).fill(
        "You are a brisk, friendly team lead. Answer in short, warm sentences and always name a next step."
    )
    page.get_by_label("Trait 1").fill("brisk")
    page.get_by_label("What it means").nth(0).fill("Gets to the point.")
    page.get_by_label("Behavioural markers", exact=False).nth(0).fill("Short sentences\nNames a next step")
    page.get_by_role("button", name="Add a trait").click()
    page.get_by_label("Trait 2").wait_for()
    _settled(page)
    page.get_by_label("Trait 2").fill("warm")
    page.get_by_label("What it means").nth(1).fill("Kind to the reader.")
    page.get_by_role("button", name="Save persona").click()
    page.get_by_text(f"Saved persona “{PERSONA}” with 2 traits.").wait_for(timeout=30_000)
    page.get_by_role("heading", name=f"Edit “{PERSONA}”").wait_for()
    _settled(page)
    _assert_no_error(page)
    _shot(page, folder, "01_persona")


def _generate(page, folder) -> int:
    """Home's Next button to Generate, the smallest run, watched to its end; how many examples are ready."""
    _sidebar(page, "Home", "Persona Studio")  # the guided flow says what comes next, for this persona
    assert "0 examples" in _main(page)
    page.get_by_role("button", name="Next: Generate examples").click()
    _heading(page, "Generate")
    page.wait_for_url(f"**persona={PERSONA}**", timeout=30_000)
    _number(page, "How many examples", 4)
    _expand(page, "More settings")
    _slider_to_lowest(page, "Document length (words)")  # 50 words
    _slider_to_lowest(page, "Response length (words)")  # 30 words
    _slider_to_lowest(page, "Examples in parallel", 3)  # all 4 at once: one batch per step
    # the tiny model's short replies must not be refused for a word or two
    _number(page, "Shortest acceptable document (words)", 10)
    _number(page, "Shortest acceptable response (words)", 5)
    assert _metric(page, "Model calls") == "12"  # scenario, document, response for each of 4
    _assert_no_error(page)
    page.get_by_role("button", name="Start generating").click()
    _wait_for_text(page, r"of 4 examples")
    seen, shot_mid = set(), False
    deadline = time.monotonic() + LONG / 1000
    while time.monotonic() < deadline:
        text = _main(page)
        stages = tuple(_metric(page, f"{s}s") for s in ("Scenario", "Document", "Response"))
        seen.add(stages)
        if not shot_mid and any(s != "0 / 4" for s in stages) and stages[2] != "4 / 4":
            _shot(page, folder, "02_generate_progress")  # the per-stage counts, mid-run
            shot_mid = True
        if re.search(r"#\d+ · .* · (succeeded|failed|cancelled)", _shown(page, "stSelectbox", "Run")):
            break
        page.wait_for_timeout(1000)
    page.wait_for_timeout(2500)  # the next refresh draws the finished run whole
    text = _main(page)
    stages = tuple(_metric(page, f"{s}s") for s in ("Scenario", "Document", "Response"))
    assert re.search(r"#\d+ · .* · succeeded", _shown(page, "stSelectbox", "Run")), text[-2000:]
    assert "4 of 4 examples" in text
    assert stages == ("4 / 4", "4 / 4", "4 / 4"), stages
    assert len(seen) >= 2, seen  # the counts moved while we watched
    ready = int(re.search(r"4 of 4 examples · (\d+) ready", text).group(1))
    assert ready >= 2, text[-2000:]  # enough to train on one and hold one out
    _assert_no_error(page)
    _shot(page, folder, "03_generate_done")
    return ready


def _review(page, folder, ready: int) -> None:
    """Accept every example, one by one, and gold-star the first two."""
    _sidebar(page, "Review")
    _wait_for_text(page, rf"{ready} examples\s+match · 0 gold-starred")
    for number in range(1, ready + 1):
        _wait_for_text(page, rf"\({number} of {ready}\)")
        if number <= 2:
            _button(page, "review_star_one").click()
            _settled(page)
            _wait_for_text(page, rf"\({number} of {ready}\).*★ gold")
        _button(page, "review_accept").click()
        _settled(page)
        _wait_for_text(page, rf"\({number} of {ready}\).*status accepted")
        if number < ready:
            _button(page, "review_next").click()
            _settled(page)
    _wait_for_text(page, rf"{ready} examples\s+match · 2 gold-starred")
    _assert_no_error(page)
    _shot(page, folder, "04_review")


def _dataset(page, folder, ready: int) -> None:
    _sidebar(page, "Datasets")
    # the built-in model's 30-word replies rarely show the persona's markers: the quality gate flags them,
    # and the page says they are left out unless included, which a person trying the flow then ticks
    page.locator('[data-testid="stCheckbox"]', has_text="Include replies the quality gate flagged").click()
    _settled(page)
    page.get_by_role("button", name="Check these examples").click()
    _settled(page)
    _wait_for_text(page, rf"{ready - 1} training and 1 validation examples")
    assert _metric(page, "Valid examples") == str(ready) and _metric(page, "Errors") == "0"
    page.get_by_role("button", name="Save dataset").click()
    _settled(page)
    _wait_for_text(page, rf"Saved {PERSONA}-v1: {ready - 1} train, 1 validation\.")
    _assert_no_error(page)
    _shot(page, folder, "05_dataset")


def _train(page, folder, ready: int) -> None:
    """A local LoRA on the built-in model: the quick preset, one epoch, one example a step."""
    _sidebar(page, "Train")
    assert PERSONA + "-v1" in _shown(page, "stSelectbox", "Dataset")
    page.locator('[data-testid="stButtonGroup"]').get_by_text("quick", exact=True).click()  # 1 epoch, a small adapter
    _settled(page)
    _expand(page, "Advanced settings")
    epochs = page.get_by_role("spinbutton", name="Epochs", exact=True)
    _until(lambda: epochs.count() == 1 and epochs.input_value() == "1")  # the preset's one epoch, drawn
    _number(page, "Batch size", 1)  # one step per example: a few points on the curve
    name = _widget(page, "stTextInput", "New model's name").locator("input")
    name.fill(MODEL)
    name.press("Enter")
    _settled(page)
    assert _metric(page, "Examples") == str(ready - 1)
    _assert_no_error(page)
    page.get_by_role("button", name="Start training").click()
    _wait_for_text(page, r"Queued training job \d+\. Follow it on Live monitoring\.")
    _settled(page)
    _shot(page, folder, "06_train")


def _monitor(page, folder, ready: int) -> None:
    page.get_by_role("link", name=re.compile("Open Live monitoring")).click()
    _heading(page, "Live monitoring")
    assert re.search(r"#\d+ · SFT .*" + PERSONA, _shown(page, "stSelectbox", "Show job"))  # the job just started
    _until(lambda: re.search("succeeded|failed", _metric(page, "Status")), LONG / 1000)
    page.wait_for_timeout(2500)  # the next refresh draws the finished job whole
    assert "succeeded" in _metric(page, "Status"), _main(page)[-2000:]
    _wait_for_text(page, rf"{ready - 1} of {ready - 1} steps")
    assert page.locator('[data-testid="stPlotlyChart"]').count() >= 1  # the loss curve
    _assert_no_error(page)
    _shot(page, folder, "07_monitor")


def _evaluate(page, folder) -> None:
    """The offline judge (no key), one held-out prompt, short replies; watched until it succeeds."""
    _sidebar(page, "Evaluate")
    chosen = _shown(page, "stMultiSelect", "Contestants (a model, and how it is prompted)")
    assert MODEL in chosen  # the fine-tuned model is a contestant from the start
    _slider_to_lowest(page, "Held-out prompts, at most")  # one prompt
    _untick(page, "break-character variant")
    _untick(page, "Keep going.")
    _expand(page, "More settings")
    _number(page, "Longest reply (tokens)", 32)
    planned = page.locator('[data-testid="stMetricLabel"]', has_text="Prompts")
    _until(lambda: planned.count() or "The prompt set is empty" in _main(page))
    if "The prompt set is empty" in _main(page):  # the held-out one was too like a training prompt: type one
        box = _widget(page, "stTextArea", "Custom prompts (separate them with a blank line)").locator("textarea")
        box.fill("Our launch slipped a week. Write the note to the team.")
        box.press("Tab")
        _settled(page)
    assert _metric(page, "Prompts") == "1"
    assert "Offline (no key)" in _shown(page, "stSelectbox", "Judge")
    _assert_no_error(page)
    page.get_by_role("button", name="Start evaluation").click()
    _wait_for_text(page, r"Queued evaluation \d+\.")
    frame = page.locator('[data-testid="stDataFrame"]').first
    deadline = time.monotonic() + LONG / 1000
    while "succeeded" not in (frame.text_content() or "") and time.monotonic() < deadline:
        assert "failed" not in (frame.text_content() or ""), frame.text_content()
        page.wait_for_timeout(1000)
    assert "succeeded" in frame.text_content()
    _assert_no_error(page)
    _shot(page, folder, "08_evaluate")


def _leaderboard(page, folder) -> None:
    page.get_by_role("link", name=re.compile("Open the Leaderboard")).click()
    _heading(page, "Leaderboard")
    assert re.search(r"#\d+ · .* · succeeded", _shown(page, "stSelectbox", "Evaluation"))
    _wait_for_text(page, r"Ratings: not enough battles yet \(\d+ of 30\)")
    assert int(_metric(page, "Rated battles")) > 0
    _assert_no_error(page)
    _shot(page, folder, "09_leaderboard_small_sample")


def _deploy(page, folder) -> None:
    _sidebar(page, "Models")
    _select(page, "Model", MODEL)
    _select(page, "Serve persona", PERSONA)
    _button(page, "models_deploy").click()
    _settled(page)
    _wait_for_text(page, rf"{MODEL} now serves {PERSONA}\.")
    _assert_no_error(page)
    _shot(page, folder, "10_models_deploy")


def _export(page, folder) -> None:
    """The Models page's Export tab: the fine-tuned model as an Ollama bundle, checked, with its commands."""
    page.get_by_role("tab", name="Export").click()
    assert "Q8_0" in _shown(page, "stSelectbox", "Precision of the GGUF file (Ollama, llama.cpp)")
    page.get_by_role("button", name="Export for Ollama").click()
    _wait_for_text(page, r"Export queued as job \d+")
    _wait_for_text(page, rf"{MODEL}-Q8_0-ollama\.zip, [\d.]+ MB, made in \d+ s", timeout_ms=LONG)
    _wait_for_text(page, rf"ollama create {MODEL} -f Modelfile")
    assert page.get_by_role("button", name=re.compile(rf"Download {MODEL}-Q8_0-ollama\.zip")).count() == 1
    _assert_no_error(page)
    _shot(page, folder, "11_models_export")


def _playground(page, folder) -> None:
    """It opens on the deployed model without the system prompt; a message shows at once, the reply streams."""
    _sidebar(page, "Playground")
    assert MODEL in _shown(page, "stSelectbox", "Model")  # its deployed model
    assert page.get_by_role("radio", name="Without it").is_checked()  # and no system prompt
    _expand(page, "Generation settings")
    _slider_to_lowest(page, "Max reply tokens", 2)  # 48 tokens: a short reply, still streamed
    box = page.get_by_placeholder("Message")
    box.fill("Our launch slipped a week. What should I tell the team?")
    box.press("Enter")
    page.get_by_text("Our launch slipped a week.").wait_for(timeout=10_000)  # shown before any reply
    page.wait_for_function("document.body.innerText.includes('▌')", timeout=240_000)  # streaming
    caption = page.locator('[data-testid="stCaptionContainer"]', has_text="first words after")
    caption.wait_for(timeout=240_000)
    assert MODEL in caption.inner_text()
    assert page.locator('[data-testid="stChatMessage"]').count() == 2  # the message and the reply
    _settled(page)
    _assert_no_error(page)
    _shot(page, folder, "12_playground")


def _home(page, folder) -> None:
    _sidebar(page, "Home", "Persona Studio")
    _wait_for_text(page, rf"7\. Deploy\s+{MODEL} is deployed")  # the guided flow's last step, done
    _shot(page, folder, "13_home_done")


def test_a_person_walks_from_a_new_persona_to_a_deployed_model_and_chats_with_it(server, browser, shots):  # noqa: F811
    url, _ = server
    times: dict[str, float] = {}
    started = time.monotonic()

    def step(name: str, action, *args):
        began = time.monotonic()
        try:
            return action(*args)
        except Exception:
            if name != "open":
                _shot(args[0], shots, f"failed_{name}")  # what the page showed when the step failed
            raise
        finally:
            times[name] = time.monotonic() - began

    try:
        page = step("open", _open, browser, url, "Persona Studio")
        step("persona", _persona, page, shots)
        ready = step("generate", _generate, page, shots)
        step("review", _review, page, shots, ready)
        step("dataset", _dataset, page, shots, ready)
        step("train", _train, page, shots, ready)
        step("monitor", _monitor, page, shots, ready)
        step("evaluate", _evaluate, page, shots)
        step("leaderboard", _leaderboard, page, shots)
        step("deploy", _deploy, page, shots)
        step("export", _export, page, shots)
        step("playground", _playground, page, shots)
        step("home", _home, page, shots)
        page.close()
    finally:
        total = time.monotonic() - started
        print("\nWhole-flow walk, wall time per step:")
        for name, seconds in times.items():
            print(f"  {name:<12} {seconds:7.1f} s")
        print(f"  {'total':<12} {total:7.1f} s")
    assert total < WALK_LIMIT_S, f"the walk took {total:.0f} s"
