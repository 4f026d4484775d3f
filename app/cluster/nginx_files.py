"""The two files `deploy/nginx/nginx.conf` includes, as the cluster renders them.

`keel-upstream.conf` (http context) holds the `upstream keel` block — the
instances' ports, upstream keep-alive and its idle timeout — and the temp
paths (nginx's compiled-in ones belong to root); `keel-listen.conf` (server
context) holds nginx's `listen` and the body limit of `[server]
client_max_size`. The compose versions of both live in deploy/nginx/compose/.
Pure functions: tested without nginx.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

NGINX_CONF = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "nginx.conf"
UPSTREAM_FILE = "keel-upstream.conf"
LISTEN_FILE = "keel-listen.conf"
# Every temp path nginx creates at startup (Debian compiles them under /var/lib/nginx).
TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
# Idle connections nginx keeps per worker process to the instances.
KEEPALIVE_CONNECTIONS = 32
# aiohttp closes a client connection idle this long; nginx must give up first.
INSTANCE_KEEPALIVE = 75.0
# A refused connect takes an instance out of the rotation this long (whole seconds).
FAIL_TIMEOUT = 2
# nginx.conf's proxy_read_timeout / proxy_send_timeout for /ws and /admin/ws.
WEBSOCKET_TIMEOUT = 120.0


def idle_timeout(drain_delay: float) -> float:
    """nginx's upstream `keepalive_timeout` for instances with this `drain_delay`.

    Half of it: every idle connection nginx holds to an instance that starts
    draining is dropped by nginx, or used once more and closed by the
    instance, well before the instance stops accepting (app/draining.py).
    Below aiohttp's own keep-alive timeout too, so an instance never closes an
    idle connection nginx still means to use.
    """
    return min(drain_delay / 2, INSTANCE_KEEPALIVE / 2)


def quote(text: str) -> str:
    """`text` as one nginx config argument."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def milliseconds(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"


def address(host: str, port: int) -> str:
    """`host:port` as nginx writes it: IPv6 literals in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def render_upstream(ports: Sequence[int], *, drain_delay: float, temp_root: Path) -> str:
    """`keel-upstream.conf`: instances on 127.0.0.1 `ports`, temp paths under `temp_root`."""
    servers = "".join(
        f"    server {address('127.0.0.1', port)} max_fails=1 fail_timeout={FAIL_TIMEOUT}s;\n"
        for port in ports
    )
    temp = "".join(f"{name}_temp_path {quote(str(temp_root / name))};\n" for name in TEMP_PATHS)
    return (
        "# Rendered by `run.py cluster`; rewritten at every start.\n"
        "upstream keel {\n"
        "    zone keel 64k;\n"
        f"{servers}"
        f"    keepalive {KEEPALIVE_CONNECTIONS};\n"
        f"    # < [server] drain_delay ({drain_delay:g} s): see app/cluster/nginx_files.py\n"
        f"    keepalive_timeout {milliseconds(idle_timeout(drain_delay))};\n"
        "}\n"
        f"{temp}"
    )


def render_listen(host: str, port: int, *, client_max_size: int) -> str:
    """`keel-listen.conf`: where nginx listens, and `[server] client_max_size`."""
    return (
        "# Rendered by `run.py cluster`; rewritten at every start.\n"
        f"listen {address(host, port)};\n"
        f"client_max_body_size {client_max_size};\n"
    )
