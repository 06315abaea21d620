"""Times as people read them: in their own time zone, to the minute, "—" when there is none.

The store keeps UTC (SQLite returns it without a zone). The app sets the viewer's zone at the top of
every run (`use_zone(st.context.timezone)`, the browser's IANA name); without one, as on the command
line, times are shown in this machine's zone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MISSING = "—"
_zone: ContextVar[tzinfo | None] = ContextVar("studio_zone", default=None)
LOG_STAMP = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) ")  # JobContext.log writes UTC stamps


def zone_named(name: str | None) -> tzinfo | None:
    """The zone called `name` (e.g. "Europe/Paris"), or None for a missing or unknown name."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


_lookup: Callable[[], str | None] | None = None


def use_zone(name: str | None, lookup: Callable[[], str | None] | None = None) -> None:
    """Show times in zone `name` for the rest of this run; an unknown name falls back to this machine's.

    `lookup` finds the viewer's zone name when a piece of a page reruns on its own (a fragment),
    outside the run that set it."""
    global _lookup
    _zone.set(zone_named(name))
    if lookup is not None:
        _lookup = lookup


def zone() -> tzinfo:
    found = _zone.get()
    if found is None and _lookup is not None:
        try:
            found = zone_named(_lookup())
        except Exception:  # noqa: BLE001 - outside a page (a job, the command line) there is no viewer
            found = None
    return found or datetime.now().astimezone().tzinfo


def to_local(moment: datetime) -> datetime:
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(zone())


def local(moment: datetime | None, seconds: bool = False) -> str:
    """`moment` in the viewer's zone, e.g. "2026-12-02 14:05 CET"; "—" for None."""
    if moment is None:
        return MISSING
    shown = to_local(moment)
    return shown.strftime("%Y-%m-%d %H:%M:%S %Z" if seconds else "%Y-%m-%d %H:%M %Z").strip()


def local_log(text: str) -> str:
    """A job log with its UTC line stamps in the viewer's zone (the file on disk keeps UTC)."""

    def shift(line: str) -> str:
        found = LOG_STAMP.match(line)
        if not found:
            return line
        stamp = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        return to_local(stamp).strftime("%Y-%m-%d %H:%M:%S") + line[found.end(1) :]

    return "\n".join(shift(line) for line in text.splitlines())
