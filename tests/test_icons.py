"""Icons that render everywhere: Material Symbols, never an emoji (an empty box without an emoji font)."""

from __future__ import annotations

import re

import regex
from streamlit.material_icon_names import ALL_MATERIAL_ICONS

from tests.conftest import REPO

# What needs an emoji font: characters drawn as emoji by default (🟢, ⚪), anything asking for emoji
# presentation (U+FE0F, as in ⚖️), and the pictographs of the supplementary planes (🏋). Text
# symbols that ordinary fonts draw (★, →, ●) are fine.
EMOJI = regex.compile(r"[\p{Emoji_Presentation}\uFE0F\u200D]|(?=[\U0001F000-\U0001FFFF])\p{Extended_Pictographic}")
MATERIAL = re.compile(r":material/([a-z0-9_]+):")


def ui_sources():
    """The app, its pages, and the engine, whose words (status, labels, messages) reach the pages."""
    return [REPO / "app.py", *sorted((REPO / "pages").glob("*.py")), *sorted((REPO / "pipeline").rglob("*.py"))]


def test_no_emoji_anywhere_in_the_ui():
    found = [
        f"{path.relative_to(REPO)}:{number}: {''.join(EMOJI.findall(line))}"
        for path in ui_sources()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if EMOJI.search(line)
    ]
    assert found == []


def test_the_scan_catches_the_emoji_the_studio_used_to_show():
    for emoji in ["🟢", "⚪", "🟡", "🎭", "🏋️", "⚖️", "🗂️", "➕"]:
        assert EMOJI.search(emoji), emoji
    assert not EMOJI.search("★ Gold star → next · ● chosen")


def test_every_material_icon_is_a_real_one():
    """A misspelt name is drawn as its raw text (":material/tropy:"), so check each against Streamlit's list."""
    used = {
        name
        for path in [REPO / "app.py", *(REPO / "pages").glob("*.py")]
        for name in MATERIAL.findall(path.read_text(encoding="utf-8"))
    }
    assert used, "the pages use Material Symbols"
    assert sorted(used - ALL_MATERIAL_ICONS) == []
