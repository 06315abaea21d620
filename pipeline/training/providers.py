"""Where fine-tuning runs, as people pick it: labels, the cloud default, and OpenAI's closing.

One source for the words and dates the Train page, `python -m pipeline train` and the registry's
"Retrain on an open base" use. Standard library only: the command line imports it for its help.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

CLOUD_DEFAULT = "together"  # among cloud choices, Together comes first and is what a cloud choice means
CLOUD = ("together", "openai")  # the order the cloud choices are offered in

DEPRECATIONS_URL = "https://platform.openai.com/docs/deprecations"
OPENAI_NOTIFIED = date(2026, 5, 7)  # the self-serve fine-tuning change, as the deprecations page records it
OPENAI_SHUTDOWN = date(2027, 1, 14)  # these bases, and the models fine-tuned from them, stop answering
OPENAI_SHUT_DOWN_BASES = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini")

OPENAI_CLOSING = (
    f"OpenAI fine-tuning is closing: OpenAI's deprecations page ({DEPRECATIONS_URL}) records the self-serve "
    f"fine-tuning change notified on {OPENAI_NOTIFIED.isoformat()}, and gpt-4o, gpt-4o-mini, gpt-4.1 and "
    f"gpt-4.1-mini, with their fine-tuned versions, shut down on {OPENAI_SHUTDOWN.isoformat()}. Train on "
    "Together or on this machine instead; a model already trained at OpenAI can be retrained on an open base "
    "(Models → Retrain on an open base, or `python -m pipeline models retrain`)."
)
LABELS = {
    "local": "This machine",
    "together": "Together",
    "openai": f"OpenAI (closing: shuts down {OPENAI_SHUTDOWN.isoformat()})",
}
# the command line's --backend help
BACKEND_HELP = (
    "local (this machine, the default) | together (the cloud default) | "
    f"openai (closing: the self-serve fine-tuning change notified {OPENAI_NOTIFIED.isoformat()}; fine-tuned "
    f"gpt-4o / gpt-4.1 models shut down {OPENAI_SHUTDOWN.isoformat()}; {DEPRECATIONS_URL})"
)

_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def today() -> date:
    """Today in UTC (tests replace it to stand on either side of a shutdown)."""
    return datetime.now(UTC).date()


def openai_base(model: str) -> str:
    """The OpenAI base a model string names, undated: `openai/ft:gpt-4o-mini-2024-07-18:org::id` → gpt-4o-mini."""
    name = model.removeprefix("openai/").removeprefix("ft:").split(":", 1)[0]
    return _DATED.sub("", name)


def shutdown_date(backend: str, base_model: str, reference: str = "") -> date | None:
    """When a model of `backend` on `base_model` (or named by `reference`) stops answering; None: not announced."""
    if backend != "openai":
        return None
    for model in (base_model, reference):
        if model and openai_base(model) in OPENAI_SHUT_DOWN_BASES:
            return OPENAI_SHUTDOWN
    return None


def shut_down(backend: str, base_model: str, reference: str = "", on: date | None = None) -> str | None:
    """Why the model no longer answers because its provider shut it down, in words; None while it still may."""
    when = shutdown_date(backend, base_model, reference)
    if when is None or (on or today()) < when:
        return None
    return (
        f"OpenAI shut down {openai_base(base_model or reference)} and its fine-tuned versions on "
        f"{when.isoformat()} ({DEPRECATIONS_URL})"
    )
