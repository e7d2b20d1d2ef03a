"""Count checks for flags and arguments: one line naming the flag when a value is below its minimum."""
from __future__ import annotations

from saf.core.errors import SafError


class CountError(SafError, ValueError):
    """A count flag or argument below its minimum (exit 2, one line)."""


def check_count(flag: str, value, minimum: int = 1, error: type = CountError) -> None:
    """Raise `error` ('{flag} must be >= {minimum}, got {value}') when value < minimum; None passes (not given)."""
    if value is not None and value < minimum:
        raise error(f"{flag} must be >= {minimum}, got {value}")
