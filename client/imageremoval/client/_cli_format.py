"""How the CLI shows sizes, ages, IDs and errors, the way the docker CLI shows them."""

from __future__ import annotations

import time

from ._errors import ImageRemovalError

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def human_size(size: int) -> str:
    """Decimal units with 4 significant digits, as docker's units.HumanSize (`1.234MB`)."""
    value = float(size)
    unit = 0
    while value >= 1000 and unit < len(_UNITS) - 1:
        value /= 1000
        unit += 1
    return f"{value:.4g}{_UNITS[unit]}"


def since(nanoseconds: int, now: float | None = None) -> str:
    """How long ago, as docker's units.HumanDuration (`2 hours ago`)."""
    seconds = (time.time() if now is None else now) - nanoseconds / 1e9
    if seconds < 1:
        return "Less than a second ago"
    if seconds < 60:
        return f"{int(seconds)} seconds ago" if int(seconds) != 1 else "1 second ago"
    minutes = seconds / 60
    if minutes < 60:
        return "About a minute ago" if int(minutes) == 1 else f"{int(minutes)} minutes ago"
    hours = minutes / 60
    if hours < 48:
        return "About an hour ago" if round(hours) == 1 else f"{round(hours)} hours ago"
    days = hours / 24
    if days < 14:
        return f"{int(days)} days ago"
    if days < 60:
        return f"{int(days / 7)} weeks ago"
    if days < 730:
        return f"{int(days / 30)} months ago"
    return f"{int(days / 365)} years ago"


def short(image_id: str, *, no_trunc: bool = False) -> str:
    """`sha256:...` in full, or its first 12 hex digits."""
    return image_id if no_trunc else image_id.removeprefix("sha256:")[:12]


def is_local(error: ImageRemovalError) -> bool:
    """A failure of this client or its connection, not an answer from the server (which always carries our
    ErrorInfo)."""
    return not error.reason


def describe_error(error: ImageRemovalError, server: str, timeout: float | None) -> str:
    """One line for stderr: the daemon's words for the server's refusals, our own for local failures."""
    if not is_local(error):
        return f"Error response from daemon: {error.message}"
    if error.code == "UNAVAILABLE":
        return f"imageremoval: cannot connect to the server at {server}: {error.message}"
    if error.code == "DEADLINE_EXCEEDED":
        waited = f" after {timeout:g}s" if timeout else ""
        return f"imageremoval: no answer from the server at {server}{waited} (--timeout); it may still be working"
    return f"imageremoval: the call to {server} failed: {error.code}: {error.message}"
