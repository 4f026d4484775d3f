"""The end of a subscribe with history on: the replay, then what arrived while it was read.

While the history was read, the subscription was held (`Hub.hold`): the
channel's messages were kept aside for this connection. The bus had the
channel before the read (`Bus.ready`), and everything published before the
read had reached this instance after it (`Bus.caught_up`: over Redis, the
read's reply and the pub/sub messages come on two connections, in either
order). So a message published around the read is in the replay, or held,
or both — never neither, and never late. Sent now, in order:

1. the replayed messages (those after the client's `since`),
2. the `ok`, with the position read (the last replayed message's),
3. the held messages after that position (the offsets say which), so each is
   sent exactly once: they are live messages, and follow the `ok`'s offset
   without a gap.

From then on the connection receives the channel live (`Hub.release` made
it a subscriber again before this runs, and nothing awaits in between).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.websocket import protocol
from app.websocket.connection import Connection
from app.websocket.frames import text_frame
from app.websocket.history import Replay
from app.websocket.position import Position, position_of
from app.websocket.protocol import Ref


def send_replay(connection: Connection, replay: Replay, ref: Ref, held: list[bytes]) -> int:
    """Send the replay, the `ok` (answering `ref`) and the held messages after it; how
    many frames were sent."""
    sent = 0
    for payload in replay.messages:
        sent += connection.send(text_frame(payload))
    ok = protocol.subscribed(ref, replay.latest, replay.recovered)
    sent += connection.send(text_frame(ok))
    latest = replay.latest
    for payload in held:
        position = position_of(payload)
        if position is not None:
            if _not_after(position, latest):
                continue  # read with the history: sent above, or before `since`
            latest = position
        sent += connection.send(text_frame(payload))
    return sent


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
