"""Errors whose message is meant for the person using the studio."""


class UserFacingError(Exception):
    """A problem the user can act on; pages show its message as it is, without a traceback."""
