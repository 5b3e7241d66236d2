"""Injected time: the core never reads the wall clock except through a Clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The real UTC wall clock (the default everywhere)."""
    return datetime.now(UTC)


def format_timestamp(moment: datetime) -> str:
    """Spec 3.4: ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC, always six fraction digits.

    ``isoformat`` (in C) with a fixed timespec always prints four year digits
    and six fraction digits; only its offset suffix is cut off. A naive
    moment is taken as UTC.
    """
    if moment.tzinfo is not None and moment.utcoffset():
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")[:26] + "Z"


def now_timestamp(clock: Clock = system_clock) -> str:
    """Current time of ``clock`` in the store timestamp format."""
    return format_timestamp(clock())


def parse_timestamp(text: str) -> datetime:
    """Parse ``Z`` or offset timestamps; naive values are taken as UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
