"""The collector pause nests, spans threads, and restores what it found."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from decisiongraph.store.gc_pause import gc_paused


@pytest.fixture(autouse=True)
def collector_restored() -> Iterator[None]:
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def test_nested_pauses_switch_the_collector_back_on_at_the_outermost_end() -> None:
    gc.enable()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_found_off_stays_off() -> None:
    gc.disable()
    with gc_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_an_error_in_the_body_still_restores_the_collector() -> None:
    gc.enable()
    with pytest.raises(ValueError), gc_paused():
        raise ValueError("boom")
    assert gc.isenabled()


def test_overlapping_pauses_in_two_threads() -> None:
    """Thread A pauses, B pauses, A ends: still off until B ends too."""
    gc.enable()
    b_inside = threading.Event()
    a_done = threading.Event()
    seen_after_a: list[bool] = []

    def thread_b() -> None:
        with gc_paused():
            b_inside.set()
            assert a_done.wait(10)
            seen_after_a.append(gc.isenabled())

    with gc_paused():
        other = threading.Thread(target=thread_b)
        other.start()
        assert b_inside.wait(10)
    a_done.set()
    other.join(10)
    assert seen_after_a == [False]
    assert gc.isenabled()
