"""Where `serve` listens, and how it stops listening without dropping a request.

`serve` binds `[server] host:port` itself, or serves on a listening socket it
inherited (`run.py serve --listen-fd N`; `run.py cluster` hands each instance
the socket of its port). The cluster's supervisor keeps its own copy of that
socket open while an instance is replaced, so a connection that arrives
between the old process's last accept and the new one's first waits in the
kernel's accept queue: it is neither refused nor reset. A socket a process
bound itself is closed for good when it stops listening; connections still in
its accept queue at that moment are reset by the kernel, which is why a
balancer must have stopped sending before (see app/core/draining.py).

Stopping is two steps. The listener stops accepting; then connections
accepted a moment before get `ACCEPTED_GRACE` seconds for their request to
arrive and start. Only then does aiohttp's shutdown close idle connections —
without the pause, a connection nginx has just opened and written a request
on would count as idle and be closed unanswered.
"""

from __future__ import annotations

import asyncio
import socket

from aiohttp import web

from app.errors import StartupError

# A proxy writes its request as soon as its connect completes: on one host
# that is microseconds, on a loaded event loop a few of its iterations.
ACCEPTED_GRACE = 0.25
# Connections the kernel queues for us while the process is busy (or, for an
# inherited socket, while it is being replaced). Linux caps it at somaxconn.
BACKLOG = 1024


def inherited_socket(fd: int) -> socket.socket:
    """The listening TCP socket open on file descriptor `fd`, or a StartupError."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise StartupError([f"--listen-fd {fd}: not an open socket ({exc.strerror})"]) from exc
    listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    if sock.type != socket.SOCK_STREAM or not listening:
        sock.detach()  # not ours to close
        raise StartupError([f"--listen-fd {fd}: not a listening TCP socket"])
    return sock


async def start_site(
    runner: web.AppRunner, host: str, port: int, listen_fd: int | None
) -> tuple[web.BaseSite, str, int]:
    """Start listening; return the site and the address it listens on."""
    site: web.BaseSite
    if listen_fd is not None:
        sock = inherited_socket(listen_fd)
        host, port = sock.getsockname()[:2]
        site = web.SockSite(runner, sock, backlog=BACKLOG)
    else:
        site = web.TCPSite(runner, host, port, reuse_address=True, backlog=BACKLOG)
    try:
        await site.start()
    except OSError as exc:
        raise StartupError([f"cannot listen on {host}:{port}: {exc.strerror or exc}"]) from exc
    return site, host, port


async def stop_accepting(site: web.BaseSite) -> None:
    """Stop accepting connections; let those just accepted deliver their request."""
    await site.stop()
    await asyncio.sleep(ACCEPTED_GRACE)
