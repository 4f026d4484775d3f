"""What makes `run.py cluster` refuse to start (exit 2), and what it only warns about."""

from __future__ import annotations

import ipaddress
import os
import shutil
from dataclasses import dataclass

from app.cluster.nginx_files import WEBSOCKET_TIMEOUT
from app.config import Config
from app.redis import RedisSettings
from app.websocket.settings import WebSocketSettings

MAX_INSTANCES = 32
# nginx must drop its idle connections to a draining instance within
# drain_delay / 2 (nginx_files.idle_timeout); below this it has no time to.
MIN_DRAIN_DELAY = 0.5
# Where nginx lives when it is not on PATH (Debian keeps it in /usr/sbin,
# which is not on a normal user's PATH; Homebrew in /opt/homebrew/bin).
NGINX_PLACES = ("/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/local/bin", "/opt/homebrew/bin")
INSTALL_NGINX = (
    "install it (Debian/Ubuntu: apt-get install nginx; macOS: brew install nginx)"
    " or name it with --nginx PATH"
)


@dataclass(frozen=True)
class ClusterOptions:
    """`run.py cluster [--instances N] [--port P] [--nginx PATH]` (P is `[server] port`)."""

    instances: int = 3
    nginx: str = "nginx"


def find_nginx(name: str) -> str | None:
    """The nginx executable `name` names: a path, or a name on PATH or in NGINX_PLACES."""
    if os.sep in name:
        return name if os.access(name, os.X_OK) and os.path.isfile(name) else None
    path = os.pathsep.join([os.environ.get("PATH", ""), *NGINX_PLACES])
    return shutil.which(name, path=path)


def refusals(config: Config, options: ClusterOptions) -> list[str]:
    """One line per reason the cluster cannot start; empty when it can."""
    problems: list[str] = []
    if not 1 <= options.instances <= MAX_INSTANCES:
        problems.append(f"--instances: expected 1 to {MAX_INSTANCES}, got {options.instances}")
    port = config.server.port
    if port + options.instances > 65535:
        problems.append(
            f"--port {port}: the instances need ports up to {port + options.instances}"
            " (at most 65535)"
        )
    if not config.settings(RedisSettings).url.reveal():
        problems.append(
            "cluster: [redis] url is empty; instances share the cache, rate limits and"
            " WebSocket messages through Redis, so set it"
            " (e.g. KEEL_REDIS__URL=redis://127.0.0.1:6379/0)"
        )
    elif "redis" not in config.plugins.enabled:
        problems.append('cluster: add "redis" to plugins.enabled: instances share state through it')
    if config.server.drain_delay < MIN_DRAIN_DELAY:
        problems.append(
            f"cluster: server.drain_delay is {config.server.drain_delay:g}; a draining"
            f" instance needs at least {MIN_DRAIN_DELAY:g} s for nginx to let go of it"
        )
    if find_nginx(options.nginx) is None:
        problems.append(f"cluster: nginx not found ({options.nginx}); {INSTALL_NGINX}")
    return problems


def warnings(config: Config) -> list[str]:
    """Settings that work, but not as well as they should behind nginx."""
    lines: list[str] = []
    loopback = ipaddress.ip_address("127.0.0.1")
    networks = [ipaddress.ip_network(cidr, strict=False) for cidr in config.server.trusted_proxies]
    if not any(loopback in network for network in networks):
        lines.append(
            "server.trusted_proxies does not include 127.0.0.1: the instances will take"
            " nginx for the client (one rate-limit budget for everyone)"
        )
    heartbeat = config.settings(WebSocketSettings).heartbeat
    silent_too_long = heartbeat == 0 or heartbeat >= WEBSOCKET_TIMEOUT
    if "websocket" in config.plugins.enabled and silent_too_long:
        lines.append(
            f"websocket.heartbeat is {heartbeat:g}: nginx closes a WebSocket silent"
            f" for {WEBSOCKET_TIMEOUT:g} s (deploy/nginx/nginx.conf)"
        )
    return lines
