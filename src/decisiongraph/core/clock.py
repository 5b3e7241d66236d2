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
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def now_timestamp(clock: Clock = system_clock) -> str:
    """Current time of ``clock`` in the store timestamp format."""
    return format_timestamp(clock())


def parse_timestamp(text: str) -> datetime:
    """Parse ``Z`` or offset timestamps; naive values are taken as UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
