"""The restart back-off of app/cluster/backoff.py."""

from __future__ import annotations

from app.cluster.backoff import Backoff


def test_deaths_in_a_row_double_the_delay_up_to_the_maximum() -> None:
    backoff = Backoff(first=0.5, maximum=4.0, stable=30.0)
    assert [backoff.next_delay(ran_for=1.0) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_a_death_after_a_stable_run_starts_again_from_the_first_delay() -> None:
    backoff = Backoff(first=0.5, maximum=30.0, stable=30.0)
    backoff.next_delay(ran_for=0.1)
    backoff.next_delay(ran_for=0.1)
    assert backoff.next_delay(ran_for=30.0) == 0.5
    assert backoff.next_delay(ran_for=0.2) == 1.0
