"""Item and job ids: time-ordered, and in the order this process made them."""

from __future__ import annotations

from app.items.model import IdGenerator


def test_ids_made_within_one_millisecond_sort_in_the_order_they_were_made() -> None:
    make = IdGenerator(clock=lambda: 1_700_000_000.0)
    ids = [make() for _ in range(2000)]  # past several fetches of random bytes
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 26 for i in ids)


def test_a_later_millisecond_sorts_after_and_starts_from_fresh_random_bits() -> None:
    now = [1_700_000_000.0]
    make = IdGenerator(clock=lambda: now[0])
    first = [make() for _ in range(300)]
    now[0] += 0.001
    later = [make() for _ in range(300)]
    assert max(first) < min(later)
    assert later[0][:10] != first[0][:10]  # the time part moved
    assert len({i[10:] for i in later}) == len(later)


def test_a_clock_that_steps_back_does_not_break_the_order() -> None:
    now = [1_700_000_000.5]
    make = IdGenerator(clock=lambda: now[0])
    before = make()
    now[0] -= 10
    assert make() > before
