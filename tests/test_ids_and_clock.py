"""Ids and store timestamps: the fast formatters agree with the slow, obvious ones."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from decisiongraph.core.clock import format_timestamp
from decisiongraph.core.ids import new_id


def test_new_id_is_a_canonical_random_uuid4() -> None:
    ids = [new_id() for _ in range(2000)]  # crosses several 4 KiB pool refills
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text


def test_new_id_in_a_forked_child_never_repeats_the_parent() -> None:
    new_id()  # the parent's pool holds unused randomness now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports its next id and leaves at once
        os.write(write, new_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert uuid.UUID(child).version == 4
    assert child != new_id()


def _reference(moment: datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ").rjust(27, "0")


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.one_of(
            st.none(),
            st.just(UTC),
            st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m))),
        ),
    )
)
def test_format_timestamp_is_the_spec_format(moment: datetime) -> None:
    text = format_timestamp(moment)
    assert text == _reference(moment)
    assert len(text) == 27 and text.endswith("Z")


def test_format_timestamp_keeps_a_whole_second_fraction() -> None:
    assert format_timestamp(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == (
        "2026-01-02T03:04:05.000000Z"
    )
    assert format_timestamp(datetime(999, 1, 2, 3, 4, 5, 7)) == "0999-01-02T03:04:05.000007Z"
