"""Who may change what, when the studio is shared behind a login.

Without a login (no `[auth]` section in .streamlit/secrets.toml) the studio has one local user who may do
everything, as before. With a login the app sets the logged-in user for each request (`use`), and every
pipeline function that writes calls `require(current(), action)` first, so a page, the command line or a
test cannot skip the check. Roles come from the `[roles]` section of secrets.toml: an email → its roles,
and `default` for everyone else who can log in (viewer when unset).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from pipeline import settings
from pipeline.errors import UserFacingError

ROLES = ("viewer", "reviewer", "trainer", "deployer")
# action → (the role it needs, what it is, for the message)
ACTIONS = {
    "edit_persona": ("trainer", "create, change or delete personas"),
    "generate": ("trainer", "start or resume generating examples"),
    "import_examples": ("trainer", "import examples"),
    "review": ("reviewer", "review examples"),
    "build_dataset": ("trainer", "build a dataset"),
    "delete_dataset": ("trainer", "delete datasets or examples"),
    "train": ("trainer", "start training"),
    "evaluate": ("trainer", "start an evaluation"),
    "deploy": ("deployer", "deploy, roll back, archive or restore models"),
    "cancel": ("trainer", "cancel or resume jobs"),
}
DEFAULT_ROLES = ("viewer",)


@dataclass(frozen=True)
class User:
    """Someone logged in: their name and email as the login gave them, and their roles."""

    name: str
    email: str = ""
    roles: frozenset[str] = field(default_factory=frozenset)

    @property
    def label(self) -> str:
        return self.name or self.email


_current: ContextVar[User | None] = ContextVar("studio_user", default=None)
# Where the app keeps the user of the session this thread serves, for code that runs without the run's context
# (a part of a page that refreshes itself runs apart from app.py): set by the app, read only when no user is set.
_session_user: Callable[[], User | None] | None = None


def login_configured() -> bool:
    """Whether the studio is shared behind a login: an [auth] section in secrets.toml."""
    return bool(settings.secrets().get("auth"))


def login_providers() -> list[str]:
    """The named providers under [auth] ([auth.google], ...); empty when [auth] configures one provider itself."""
    auth = settings.secrets().get("auth") or {}
    return [name for name, value in auth.items() if isinstance(value, dict)]


def roles_for(email: str) -> frozenset[str]:
    """The roles `[roles]` in secrets.toml gives this email (any case), else its `default`, else viewer."""
    table = settings.secrets().get("roles") or {}
    by_email = {str(k).strip().lower(): v for k, v in table.items()}
    found = by_email.get((email or "").strip().lower(), by_email.get("default", list(DEFAULT_ROLES)))
    if isinstance(found, str):
        found = [found]
    return frozenset(str(r).strip().lower() for r in found if str(r).strip().lower() in ROLES)


def user(name: str, email: str = "") -> User:
    """The logged-in user with the roles secrets.toml gives them."""
    return User(name=(name or "").strip(), email=(email or "").strip(), roles=roles_for(email))


def current() -> User | None:
    """Who this request is for; None when no login is configured (the single local user)."""
    who = _current.get()
    if who is None and _session_user is not None:
        who = _session_user()
    return who


def use(who: User | None, session_user: Callable[[], User | None] | None = None) -> None:
    """Set the user for the rest of this request (the app does this at the top of every run), and where to find
    the session's user when a later piece of the page runs on its own."""
    global _session_user
    _current.set(who)
    if session_user is not None:
        _session_user = session_user


@contextmanager
def acting_as(who: User | None) -> Iterator[None]:
    token = _current.set(who)
    try:
        yield
    finally:
        _current.reset(token)


def allowed(who: User | None, action: str) -> bool:
    role, _ = ACTIONS[action]
    return who is None or role in who.roles


def require(who: User | None, action: str) -> None:
    """Raise a UserFacingError saying which role is missing, unless `who` may do `action`.

    `who` None is the studio without a login: everything is allowed, as on a single laptop."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if allowed(who, action):
        return
    role, what = ACTIONS[action]
    held = ", ".join(sorted(who.roles)) or "none"
    raise UserFacingError(
        f"You need the {role} role to {what} (your roles: {held}); ask whoever runs the studio to add "
        f"{role} for {who.email or who.name} under [roles] in .streamlit/secrets.toml."
    )


def check(action: str) -> None:
    """require() for whoever this request is for: what pipeline functions call before they write."""
    require(current(), action)


def actor(given: str = "") -> str:
    """The name recorded on an action: the logged-in user's when there is a login, else what was typed."""
    who = current()
    return who.label if who is not None else (given or "")
