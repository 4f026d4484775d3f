"""Channel history: offsets, epochs and the replay a reconnecting client asks for.

With `[websocket] history_size` > 0 every publication goes through a
`History`, which gives it the channel's next offset (1, 2, 3, …), keeps the
last `history_size` messages of the channel for `history_ttl` seconds after
its last publish, and delivers it. A channel's history has an `epoch`: a
token made when the history is created, and made anew when it is lost (the
channel expired, the process or Redis restarted). An offset means something
only within its epoch.

`read(channel, since)` is what a subscribe needs: the channel's latest
position and, when `since` is given and the history still holds every message
after it, those messages in order (`recovered`). It is not recovered when the
epoch differs, when `since` is beyond the latest offset, or when messages
after it fell out of the history; then the client reloads its state.

Contract, held by `tests/websocket/test_history_contract.py` for both
implementations (in process and Redis):

- offsets are consecutive per channel and epoch, whoever publishes;
- `publish` delivers the stamped message to the channel's subscribers on every
  instance, in offset order;
- `read` never raises for an unreachable backend: it answers `Replay.unknown`.
"""

from __future__ import annotations

import abc
import contextlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

from app.websocket.position import Position

# state() lists this many channels' histories.
STATE_CHANNELS = 50


@dataclass(frozen=True, slots=True)
class Replay:
    """The answer to a subscribe: where the channel stands, and what `since` missed."""

    # The channel's latest position; None when the history cannot be read now.
    latest: Position | None
    # Was every message after `since` found (None when no `since` was given)?
    recovered: bool | None = None
    # Serialized, stamped messages after `since`, in order (empty unless recovered).
    messages: list[bytes] = field(default_factory=list)

    @classmethod
    def unknown(cls, since: Position | None) -> Replay:
        """The history cannot be read (its backend is down): nothing is recovered."""
        return cls(None, False if since is not None else None)


def judge(since: Position | None, latest: Position, first: int | None) -> bool | None:
    """Can `since` be recovered, given the latest position and the oldest offset kept?

    `first` is the oldest offset still held (None when nothing is held).
    """
    if since is None:
        return None
    if since.epoch != latest.epoch or since.offset > latest.offset:
        return False
    if since.offset == latest.offset:
        return True
    return first is not None and first <= since.offset + 1


@dataclass(slots=True)
class ChannelHistory:
    """What `state()` shows of one channel's history."""

    epoch: str
    offset: int
    messages: int

    def as_dict(self) -> dict[str, Any]:
        return {"offset": self.offset, "epoch": self.epoch, "messages": self.messages}


class History(abc.ABC):
    backend: ClassVar[str]

    def __init__(self, size: int, ttl: float) -> None:
        self.size = size
        self.ttl = ttl

    @abc.abstractmethod
    async def publish(self, channel: str, body: bytes) -> None:
        """Give `body` (a serialized `message` op) the next offset, keep it, deliver it."""

    @abc.abstractmethod
    async def read(self, channel: str, since: Position | None) -> Replay:
        """The latest position and, with `since`, the messages after it (if all are kept)."""

    @abc.abstractmethod
    def channels(self) -> dict[str, ChannelHistory]:
        """The channels whose history this instance knows, as last seen."""

    def running(self) -> contextlib.AbstractAsyncContextManager[None]:
        """The history's whole life (the in-process one needs none)."""
        return contextlib.nullcontext()

    def state(self) -> dict[str, Any]:
        channels = self.channels()
        shown = sorted(channels.items(), key=lambda item: (-item[1].offset, item[0]))
        return {
            "backend": self.backend,
            "size": self.size,
            "ttl": self.ttl,
            "channel_count": len(channels),
            "channels": {name: h.as_dict() for name, h in shown[:STATE_CHANNELS]},
        }
