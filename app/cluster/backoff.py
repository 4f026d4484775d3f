"""How long to wait before restarting an instance that died.

An instance that dies at once every time it starts (a bad config, a port
taken, a dependency it cannot live without) would otherwise be restarted in a
tight loop; one that ran for a while and died is restarted almost at once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Backoff:
    """`first`, doubling with each death in a row, at most `maximum` seconds.

    A death after the instance ran `stable` seconds or more starts the series
    again: the instance was healthy, the death was an accident.
    """

    first: float = 0.5
    maximum: float = 30.0
    stable: float = 30.0
    deaths_in_a_row: int = 0

    def next_delay(self, ran_for: float) -> float:
        """The delay before restarting an instance that died after `ran_for` seconds."""
        if ran_for >= self.stable:
            self.deaths_in_a_row = 0
        delay: float = min(self.first * 2.0**self.deaths_in_a_row, self.maximum)
        self.deaths_in_a_row += 1
        return delay
