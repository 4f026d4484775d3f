"""One pipelined Redis connection for the request path: write in order, match replies FIFO.

redis-py's pipeline costs more per command than the command itself costs
Redis: a pool checkout, a pipeline object, per-command response callbacks
and a wait for the whole batch before the next one may use the connection.
Here commands are packed by hiredis (C), written as soon as a batch is
ready — without waiting for the replies of the batch before — and the replies,
parsed by hiredis, resolve the callers' futures in the order the commands
went out, which is the order Redis answers in.

A script called by its hash (`EVALSHA`) that the server does not know —
restarted, or its script cache flushed — is sent again at once as `EVAL`
with its source, which also loads it; the caller sees only the result.

Timeouts work like a socket read timeout: when commands are waiting and no
reply at all has arrived for `socket_timeout` seconds, the connection is
aborted and every waiting caller gets `redis.exceptions.TimeoutError`.
Connection settings (address, TLS, credentials, database, timeouts) are
taken from a redis-py client's pool, so there is one place to configure them.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Command = tuple[Any, ...]
# A command, the future its reply resolves, and for an EVALSHA the script's source.
Entry = tuple[Command, "asyncio.Future[Any]", str | None]


def reply_error(error: hiredis.ReplyError) -> ResponseError:
    """redis-py's exception for an error reply, so callers catch one family of errors."""
    message = str(error)
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    return ResponseError(message)


class _Protocol(asyncio.Protocol):
    def __init__(self, socket_timeout: float | None) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reader = hiredis.Reader()
        self._waiting: deque[Entry] = deque()
        self._socket_timeout = socket_timeout
        self._replies = 0  # progress counter read by the watchdog
        self._watchdog: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        waiting = self._waiting
        while (reply := self._reader.gets()) is not False:
            self._replies += 1
            command, future, source = waiting.popleft()
            if future.done():  # its caller gave up (cancelled)
                continue
            if isinstance(reply, hiredis.ReplyError):
                error = reply_error(reply)
                if source is not None and isinstance(error, NoScriptError):
                    self._send_source(command, future, source)
                else:
                    future.set_exception(error)
            else:
                future.set_result(reply)

    def _send_source(self, command: Command, future: asyncio.Future[Any], source: str) -> None:
        """EVALSHA sha n keys... args... again as EVAL source n ...: runs and loads the script."""
        assert self.transport is not None  # a reply just arrived on it
        retry = ("EVAL", source, *command[2:])
        self.transport.write(hiredis.pack_command(retry))
        self._waiting.append((retry, future, None))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._watchdog is not None:
            self._watchdog.cancel()
        error = exc if isinstance(exc, RedisTimeoutError) else None
        self.fail_waiting(error or RedisConnectionError(f"connection to Redis lost: {exc}"))
        if not self.lost.done():
            self.lost.set_result(None)

    def fail_waiting(self, error: Exception) -> None:
        while self._waiting:
            _, future, _ = self._waiting.popleft()
            if not future.done():
                future.set_exception(error)

    def waiting(self) -> list[asyncio.Future[Any]]:
        return [future for _, future, _ in self._waiting]

    def send(self, payload: bytes, entries: Sequence[Entry]) -> None:
        assert self.transport is not None
        self.transport.write(payload)
        self._waiting.extend(entries)
        if self._socket_timeout is not None and self._watchdog is None:
            self._arm()

    def _arm(self) -> None:
        assert self._socket_timeout is not None
        seen = self._replies
        self._watchdog = asyncio.get_running_loop().call_later(
            self._socket_timeout, self._check, seen
        )

    def _check(self, replies_when_armed: int) -> None:
        self._watchdog = None
        if not self._waiting or self.transport is None:
            return
        if self._replies == replies_when_armed:  # nothing came back for a whole timeout
            self.transport.abort()
            self.connection_lost(RedisTimeoutError("Timeout reading from Redis"))
            return
        self._arm()


class RespConnection:
    """A connection opened with the settings of `client`'s pool; `send()` batches of commands."""

    def __init__(self, client: aioredis.Redis) -> None:
        pool = client.connection_pool
        self._kwargs: dict[str, Any] = dict(pool.connection_kwargs)
        self._ssl = (
            self._ssl_context(pool) if issubclass(pool.connection_class, SSLConnection) else None
        )
        self._unix = issubclass(pool.connection_class, UnixDomainSocketConnection)
        self._protocol: _Protocol | None = None

    @staticmethod
    def _ssl_context(pool: aioredis.ConnectionPool) -> ssl.SSLContext:
        # redis-py turns its ssl_* options into a context; borrow it rather than re-derive them.
        connection = pool.make_connection()  # type: ignore[no-untyped-call]
        assert isinstance(connection, SSLConnection)
        return connection.ssl_context.get()

    @property
    def is_open(self) -> bool:
        return self._protocol is not None and self._protocol.transport is not None

    async def open(self) -> None:
        """Connect, authenticate and select the database; raises a redis-py error on failure."""
        loop = asyncio.get_running_loop()
        kwargs = self._kwargs
        timeout = kwargs.get("socket_connect_timeout") or kwargs.get("socket_timeout")

        def factory() -> _Protocol:
            return _Protocol(kwargs.get("socket_timeout"))

        try:
            async with asyncio.timeout(timeout):
                if self._unix:
                    _, protocol = await loop.create_unix_connection(factory, kwargs["path"])
                else:
                    _, protocol = await loop.create_connection(
                        factory,
                        kwargs.get("host", "localhost"),
                        kwargs.get("port", 6379),
                        ssl=self._ssl,
                    )
                self._protocol = protocol
                await self._handshake()
        except TimeoutError as exc:
            self.close()
            raise RedisTimeoutError("Timeout connecting to Redis") from exc
        except OSError as exc:
            self.close()
            raise RedisConnectionError(f"cannot connect to Redis: {exc}") from exc
        except BaseException:
            self.close()
            raise

    async def _handshake(self) -> None:
        kwargs = self._kwargs
        commands: list[Command] = []
        if kwargs.get("password"):
            user = kwargs.get("username")
            commands.append(
                ("AUTH", user, kwargs["password"]) if user else ("AUTH", kwargs["password"])
            )
        if kwargs.get("db"):
            commands.append(("SELECT", kwargs["db"]))
        if kwargs.get("client_name"):
            commands.append(("CLIENT", "SETNAME", kwargs["client_name"]))
        if commands:
            loop = asyncio.get_running_loop()
            batch: list[Entry] = [(command, loop.create_future(), None) for command in commands]
            self.send(batch)
            await asyncio.gather(*(future for _, future, _ in batch))

    def send(self, batch: Sequence[Entry]) -> None:
        """Write a batch in one write; each command's reply (or error) resolves its future.

        A command that cannot be packed fails alone; the others still go out.
        """
        assert self._protocol is not None
        packed: list[bytes] = []
        sent: list[Entry] = []
        for entry in batch:
            try:
                packed.append(hiredis.pack_command(entry[0]))
            except (TypeError, ValueError) as exc:
                entry[1].set_exception(exc)
                continue
            sent.append(entry)
        if packed:
            self._protocol.send(b"".join(packed), sent)

    async def drain(self) -> None:
        """Wait for the replies of everything sent (bounded by the socket timeout)."""
        if self._protocol is not None:
            await asyncio.gather(*self._protocol.waiting(), return_exceptions=True)

    def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()

    async def aclose(self) -> None:
        protocol = self._protocol
        self.close()
        if protocol is not None:
            await protocol.lost
