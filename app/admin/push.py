"""`GET /admin/ws`: the state pushed to every open dashboard, at the server's pace.

A viewer gets the whole state (with 15 minutes of series) as soon as it
connects, then `{"op": "state", "data": …}` every `push_interval` seconds with
the newest points only. The state is built and serialized once per push for
every viewer; what a client sends is ignored (it cannot make pushes faster).
Before each push every viewer's session is looked up again, so a logout — on
any instance — or an expired session closes its sockets (1008, "session
ended"). A viewer that cannot take a push within `SEND_TIMEOUT` is closed.
At shutdown every viewer is closed with 1001.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import WSCloseCode, WSMsgType, web

from app.admin.board import Board
from app.admin.sessions import Session, SessionStore
from app.core.json_codec import dumps
from app.core.lifecycle import Lifecycle
from app.errors import HTTPError

log = logging.getLogger("keel.admin")

SEND_TIMEOUT = 5.0
SESSION_ENDED = "session ended"


class Viewer:
    __slots__ = ("session_id", "ws")

    def __init__(self, ws: web.WebSocketResponse, session_id: str) -> None:
        self.ws = ws
        self.session_id = session_id


def state_frame(data: dict[str, object]) -> str:
    return dumps({"op": "state", "data": data}).decode()


class Push:
    def __init__(
        self, board: Board, sessions: SessionStore, lifecycle: Lifecycle, interval: float
    ) -> None:
        self.board = board
        self.sessions = sessions
        self.lifecycle = lifecycle
        self.interval = interval
        self.viewers: set[Viewer] = set()
        self.pushes = 0
        self.closing = False

    async def handle(self, request: web.Request, session: Session) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=4096, compress=False)
        await ws.prepare(request)
        # A connection from here on, not a request: the drain closes it.
        self.lifecycle.untrack(request)
        viewer = Viewer(ws, session.id)
        try:
            await ws.send_str(state_frame(await self.board.state(history=True)))
        except (ConnectionResetError, HTTPError) as exc:
            log.info("admin viewer gone before its first state: %s", exc)
            await ws.close()
            return ws
        self.viewers.add(viewer)
        try:
            while True:
                message = await ws.receive()
                if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                    break
                if message.type is WSMsgType.ERROR:
                    break
                # Anything else a client sends is ignored: the server sets the pace.
        finally:
            self.viewers.discard(viewer)
        return ws

    async def push_once(self) -> None:
        """Send the current state to every viewer whose session is still alive."""
        if not self.viewers:
            return
        viewers = list(self.viewers)
        alive = await asyncio.gather(*(self._alive(v) for v in viewers))
        for viewer, ok in zip(viewers, alive, strict=True):
            if not ok:
                self.viewers.discard(viewer)
                await viewer.ws.close(
                    code=WSCloseCode.POLICY_VIOLATION, message=SESSION_ENDED.encode()
                )
        receivers = [v for v, ok in zip(viewers, alive, strict=True) if ok]
        if not receivers:
            return
        # Younger than half an interval: the snapshot the reporter just built will do.
        frame = state_frame(await self.board.state(history=False, max_age=self.interval / 2))
        await asyncio.gather(*(self._send(v, frame) for v in receivers))
        self.pushes += 1

    async def _alive(self, viewer: Viewer) -> bool:
        try:
            return await self.sessions.get(viewer.session_id) is not None
        except HTTPError:
            return True  # the store is unreachable: keep the viewer, check again next push

    async def _send(self, viewer: Viewer, frame: str) -> None:
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await viewer.ws.send_str(frame)
        except (TimeoutError, ConnectionResetError) as exc:
            log.info("closing a dashboard that cannot keep up: %r", exc)
            self.viewers.discard(viewer)
            await viewer.ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too slow")

    async def close_all(self) -> None:
        self.closing = True
        viewers, self.viewers = list(self.viewers), set()
        await asyncio.gather(
            *(
                v.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
                for v in viewers
            ),
            return_exceptions=True,
        )

    async def run(self) -> None:
        """Push every `interval` seconds, forever (a background task of the plugin)."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.push_once()
            except Exception:
                log.exception("admin push failed")  # the next push tries again
