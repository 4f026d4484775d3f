"""deploy/nginx/nginx.conf: what each location sets, and `nginx -t` on both renderings."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from app.cluster.nginx import Nginx
from app.cluster.nginx_files import (
    NGINX_CONF,
    TEMP_PATHS,
    WEBSOCKET_TIMEOUT,
    address,
    idle_timeout,
    quote,
    render_listen,
    render_upstream,
)
from app.cluster.preflight import find_nginx
from app.config import ServerSettings

COMPOSE = NGINX_CONF.parent / "compose"
# What every proxied request carries, whichever location sends it.
BASE_HEADERS = {
    "Host": "$keel_host",
    "X-Forwarded-For": "$proxy_add_x_forwarded_for",
    "X-Forwarded-Proto": "$scheme",
    "X-Request-ID": "$keel_request_id",
}


def locations(text: str) -> dict[str, str]:
    """Each `location` block's body by its argument ("= /ws", "/", "@bad_gateway")."""
    found: dict[str, str] = {}
    for match in re.finditer(r"^\s*location\s+([^{]+?)\s*\{", text, re.MULTILINE):
        depth, end = 1, match.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        found[match.group(1)] = text[match.end() : end - 1]
    return found


def directives(body: str, name: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(rf"^\s*{name}\s+([^;]*);", body, re.MULTILINE)]


def headers(body: str) -> dict[str, str]:
    pairs = (line.split(None, 1) for line in directives(body, "proxy_set_header"))
    return {name: value for name, value in pairs}


CONF = NGINX_CONF.read_text()
PROXIED = {name: body for name, body in locations(CONF).items() if "proxy_pass" in body}


def test_every_proxied_location_sets_every_forwarding_header() -> None:
    assert set(PROXIED) == {"/", "= /ws", "= /admin/ws"}
    for name, body in PROXIED.items():
        assert headers(body).items() >= BASE_HEADERS.items(), name
        assert directives(body, "proxy_http_version") == ["1.1"], name


def test_websocket_locations_upgrade_and_outlast_the_heartbeat() -> None:
    for name in ("= /ws", "= /admin/ws"):
        body = PROXIED[name]
        assert headers(body)["Upgrade"] == "$http_upgrade"
        assert headers(body)["Connection"] == "$keel_connection"
        for timeout in ("proxy_read_timeout", "proxy_send_timeout"):
            assert directives(body, timeout) == [f"{WEBSOCKET_TIMEOUT:g}s"], (name, timeout)
    assert WEBSOCKET_TIMEOUT > 30.0  # [websocket] heartbeat's default
    # Everything else keeps its upstream connection alive.
    assert headers(PROXIED["/"])["Connection"] == '""'


def test_only_unsent_or_idempotent_requests_go_to_the_next_instance() -> None:
    for name, body in PROXIED.items():
        assert directives(body, "proxy_next_upstream") == ["error timeout"], name
        (tries,) = directives(body, "proxy_next_upstream_tries")
        assert 1 < int(tries) <= 3, name


def test_the_body_limit_is_keels_and_metrics_stay_off_the_balancer() -> None:
    assert directives(CONF, "client_max_body_size") == ["1m"]
    assert ServerSettings().client_max_size == 1024 * 1024
    metrics = locations(CONF)["= /metrics"]
    assert "return 404" in metrics
    assert "proxy_pass" not in metrics


def test_the_compose_upstream_lets_go_of_idle_connections_within_drain_delay() -> None:
    upstream = (COMPOSE / "keel-upstream.conf").read_text()
    (timeout,) = directives(upstream, "keepalive_timeout")
    assert timeout == f"{round(idle_timeout(ServerSettings().drain_delay) * 1000)}ms"
    assert re.findall(r"server (keel\d):8080", upstream) == ["keel1", "keel2", "keel3"]
    assert directives((COMPOSE / "keel-listen.conf").read_text(), "listen") == ["80"]


def test_rendered_upstream_and_listen() -> None:
    upstream = render_upstream([9001, 9002], drain_delay=3.0, temp_root=Path("/t/my dir"))
    assert "server 127.0.0.1:9001 max_fails=1 fail_timeout=2s;" in upstream
    assert "server 127.0.0.1:9002 " in upstream
    assert "keepalive_timeout 1500ms;" in upstream
    assert 'proxy_temp_path "/t/my dir/proxy";' in upstream
    assert len(re.findall(r"_temp_path ", upstream)) == len(TEMP_PATHS)
    listen = render_listen("::1", 8080, client_max_size=2048)
    assert "listen [::1]:8080;" in listen
    assert "client_max_body_size 2048;" in listen


def test_idle_timeout_stays_under_drain_delay_and_aiohttps_keepalive() -> None:
    assert idle_timeout(5.0) == 2.5
    assert idle_timeout(600.0) < 75.0
    assert quote('a "b" \\c') == '"a \\"b\\" \\\\c"'
    assert address("0.0.0.0", 80) == "0.0.0.0:80"


@pytest.fixture
def nginx_binary(nginx_installed: None) -> str:
    binary = find_nginx("nginx")
    assert binary is not None
    return binary


async def test_nginx_accepts_the_config_as_the_cluster_renders_it(
    tmp_path: Path, nginx_binary: str
) -> None:
    nginx = Nginx(nginx_binary, tmp_path / "nginx")
    nginx.write_files(
        render_upstream([18081, 18082, 18083], drain_delay=5.0, temp_root=nginx.temp),
        render_listen("127.0.0.1", 18080, client_max_size=1024 * 1024),
    )
    await nginx.check()  # raises StartupError with nginx's words otherwise


def test_nginx_accepts_the_config_as_compose_mounts_it(tmp_path: Path, nginx_binary: str) -> None:
    """As /etc/nginx/{nginx.conf,keel-upstream.conf,keel-listen.conf}, compose names on loopback."""
    etc = tmp_path / "etc-nginx"
    etc.mkdir()
    shutil.copyfile(NGINX_CONF, etc / "nginx.conf")
    shutil.copyfile(COMPOSE / "keel-listen.conf", etc / "keel-listen.conf")
    upstream = (COMPOSE / "keel-upstream.conf").read_text()
    # The test's stand-ins: the compose service names resolve only inside compose,
    # and the image's temp directories are not this machine's.
    upstream = re.sub(r"\bkeel\d:8080\b", lambda m: "127.0.0.1:8080", upstream)
    upstream += "".join(f"{n}_temp_path {tmp_path / n};\n" for n in TEMP_PATHS)
    (etc / "keel-upstream.conf").write_text(upstream)
    paths = ["-p", f"{tmp_path}/", "-c", str(etc / "nginx.conf"), "-e", "stderr"]
    result = subprocess.run(
        [nginx_binary, "-t", *paths, "-g", f"pid {tmp_path / 'nginx.pid'};"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=os.environ,
    )
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
