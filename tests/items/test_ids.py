"""Item and job ids: time-ordered, and in the order this process made them."""

from __future__ import annotations

import time

from app.items.model import IdGenerator, UtcStamps, _encode


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


def test_timestamps_match_strftime_and_keep_second_and_milliseconds_together() -> None:
    now = [1_700_000_000.25]
    stamps = UtcStamps(clock=lambda: now[0])
    assert stamps() == "2023-11-14T22:13:20.250Z"
    now[0] = 1_700_000_000.999
    assert stamps() == "2023-11-14T22:13:20.999Z"
    now[0] = 1_700_000_001.0004  # the next second: formatted afresh
    assert stamps() == "2023-11-14T22:13:21.000Z"
    for t in (0.0, 86_399.5, 1_767_225_599.123):  # 1970, a day's last second, 2025's
        now[0] = t
        expected = (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"
        )
        assert stamps() == expected


def test_ids_are_26_crockford_characters_of_the_130_bit_value() -> None:
    crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    for value in (0, 1, 31, 32, 1023, 1024, (1 << 130) - 1, 0x1F2E3D4C5B6A79881726354453627180):
        expected = "".join(crockford[(value >> shift) & 31] for shift in range(125, -1, -5))
        assert _encode(value) == expected
    assert _encode(0) == "0" * 26
    assert _encode((1 << 130) - 1) == "Z" * 26
