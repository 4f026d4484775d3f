"""The end of a subscribe with history on: the replay, then what arrived while it was read.

While the history was read, the subscription was held (`Hub.hold`): the
channel's messages were kept aside for this connection. The bus had the
channel before the read (`Bus.ready`), and everything published before the
read had reached this instance after it (`Bus.caught_up`: over Redis, the
read's reply and the pub/sub messages come on two connections, in either
order). So a message published around the read is in the replay, or held,
or both — never neither, and never late. Sent now, in order:

1. the replayed messages (those after the client's `since`), then
2. the held messages not already among them (the offsets say which), so each
   is sent exactly once.

The position returned is the latest sent, for the `ok` that follows; from
then on the connection receives the channel live (`Hub.release` made it a
subscriber again before this runs, and nothing awaits in between).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.websocket.connection import Connection
from app.websocket.frames import text_frame
from app.websocket.history import Replay
from app.websocket.position import Position, position_of


def send_replay(
    connection: Connection, replay: Replay, held: list[bytes]
) -> tuple[Position | None, int]:
    """Send the replay and the held messages after it; the latest position and frames sent."""
    latest = replay.latest
    sent = 0
    for payload in replay.messages:
        sent += connection.send(text_frame(payload))
    for payload in held:
        position = position_of(payload)
        if position is not None:
            if _not_after(position, latest):
                continue  # read with the history: sent above, or before `since`
            latest = position
        sent += connection.send(text_frame(payload))
    return latest, sent


def _not_after(position: Position, latest: Position | None) -> bool:
    return (
        latest is not None and position.epoch == latest.epoch and (position.offset <= latest.offset)
    )


@dataclass
class Recoveries:
    """Subscribes with `since`: how many recovered, how many were told to reload."""

    recovered: int = 0
    reset: int = 0

    def count(self, recovered: bool) -> None:
        if recovered:
            self.recovered += 1
        else:
            self.reset += 1

    def as_dict(self) -> dict[str, Any]:
        return {"recovered": self.recovered, "reset": self.reset}
