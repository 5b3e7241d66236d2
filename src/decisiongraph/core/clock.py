"""Injected time: the core never reads the wall clock except through a Clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The real UTC wall clock (the default everywhere)."""
    return datetime.now(UTC)


def format_timestamp(moment: datetime) -> str:
    """Spec 3.4: ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC, always six fraction digits."""
    if moment.tzinfo is not None and moment.utcoffset():
        moment = moment.astimezone(UTC)
    # Hand-formatted: strftime costs more than the rest of an append's timing.
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T"
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}.{moment.microsecond:06d}Z"
    )


def now_timestamp(clock: Clock = system_clock) -> str:
    """Current time of ``clock`` in the store timestamp format."""
    return format_timestamp(clock())


def parse_timestamp(text: str) -> datetime:
    """Parse ``Z`` or offset timestamps; naive values are taken as UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
