"""`run.py` as a real subprocess: check-config, config selection, refusals, serve and worker.

Every process gets the test's environment without any KEEL_* variable of the
machine, plus what the test sets; every wait has a timeout and every process is
killed in a `finally`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import __version__
from app.plugins import read_config
from tests.support.apps import PROBE
from tests.support.services import REPO, free_port

RUN_TIMEOUT = 15.0  # one short-lived `run.py` invocation
READY_TIMEOUT = 10.0  # a served port answering
STOP_TIMEOUT = 10.0  # exit after SIGTERM

# urllib honours http_proxy & co.; requests to the child must go straight to it.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """os.environ without KEEL_*, with embedded state under tmp_path and no drain wait."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env["KEEL_SERVER__DATA_DIR"] = str(tmp_path / "data")
    env["KEEL_SERVER__DRAIN_DELAY"] = "0"
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "run.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def split_header(stdout: str) -> tuple[str, str]:
    """check-config output: the first comment line, and the document after it."""
    header, _, body = stdout.partition("\n")
    assert header.startswith("# "), stdout
    return header, body


def assert_no_traceback(*outputs: str) -> None:
    for output in outputs:
        assert "Traceback" not in output, output


def http_get(url: str) -> tuple[int, bytes]:
    try:
        with _OPENER.open(url, timeout=2) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Running:
    """A `run.py` process whose stdout and stderr go to files the test reads."""

    def __init__(self, proc: subprocess.Popen[bytes], stdout: Path, stderr: Path) -> None:
        self.proc = proc
        self.stdout_path = stdout
        self.stderr_path = stderr

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def wait_ready(self, url: str) -> None:
        """Poll `url` until it answers (any status); fail at once if the process exits."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"run.py exited with {self.proc.returncode} before {url} answered:\n"
                    f"{self.stdout}{self.stderr}"
                )
            try:
                http_get(url)
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
            else:
                return
        pytest.fail(f"{url} did not answer within {READY_TIMEOUT}s:\n{self.stderr}")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=STOP_TIMEOUT)


@contextlib.contextmanager
def running(
    tmp_path: Path, *args: str, env: dict[str, str], stdin: int | None = None
) -> Iterator[Running]:
    stdout, stderr = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "run.py", *args],
            cwd=REPO,
            env=env,
            stdin=stdin,
            stdout=out,
            stderr=err,
        )
    try:
        yield Running(proc, stdout, stderr)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)


def assert_refused_connection(port: int) -> None:
    with socket.socket() as s:
        s.settimeout(2)
        assert s.connect_ex(("127.0.0.1", port)) != 0, f"something listens on {port}"


# --- check-config ------------------------------------------------------------------------

SECRETS = {
    "KEEL_ADMIN__TOKEN": "s3cret-XYZ",
    "KEEL_REDIS__URL": "redis://:pw-XYZ@127.0.0.1:6379/0",
}


def test_check_config_prints_redacted_toml(tmp_path: Path) -> None:
    env = clean_env(tmp_path, **SECRETS)
    result = run_cli("check-config", env=env)
    assert result.returncode == 0, result.stderr
    assert "XYZ" not in result.stdout + result.stderr
    header, body = split_header(result.stdout)
    assert str(REPO / "config.toml") in header
    printed = tomllib.loads(body)
    assert printed["admin"]["token"] == "***"
    assert printed["redis"]["url"] == "redis://:***@127.0.0.1:6379/0"
    # exactly the resolved config, redacted
    assert printed == read_config(REPO / "config.toml", env).as_dict()
    assert printed["server"]["data_dir"] == str(tmp_path / "data")  # env applied


def test_check_config_json(tmp_path: Path) -> None:
    env = clean_env(tmp_path, **SECRETS)
    result = run_cli("check-config", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert "XYZ" not in result.stdout + result.stderr
    _, body = split_header(result.stdout)
    printed = json.loads(body)
    assert printed["admin"]["token"] == "***"
    assert printed["redis"]["url"] == "redis://:***@127.0.0.1:6379/0"
    assert printed == read_config(REPO / "config.toml", env).as_dict()


def test_check_config_user_in_url_keeps_the_user(tmp_path: Path) -> None:
    env = clean_env(tmp_path, KEEL_REDIS__URL="redis://keel:pw-XYZ@cache.internal:6379/2")
    result = run_cli("check-config", env=env)
    assert result.returncode == 0, result.stderr
    assert "XYZ" not in result.stdout
    _, body = split_header(result.stdout)
    assert tomllib.loads(body)["redis"]["url"] == "redis://keel:***@cache.internal:6379/2"


OTHER_CONFIG = '[server]\nport = 4321\n[logging]\nlevel = "debug"\n'


@pytest.mark.parametrize("where", ["before-verb", "after-verb"])
def test_config_option_selects_the_file(tmp_path: Path, where: str) -> None:
    path = tmp_path / "other.toml"
    path.write_text(OTHER_CONFIG)
    args = (
        ("--config", str(path), "check-config")
        if where == "before-verb"
        else ("check-config", "--config", str(path))
    )
    result = run_cli(*args, env=clean_env(tmp_path))
    assert result.returncode == 0, result.stderr
    header, body = split_header(result.stdout)
    assert str(path) in header
    printed = tomllib.loads(body)
    assert printed["server"]["port"] == 4321
    assert printed["logging"]["level"] == "debug"


def test_keel_config_selects_the_file(tmp_path: Path) -> None:
    path = tmp_path / "other.toml"
    path.write_text(OTHER_CONFIG)
    result = run_cli("check-config", env=clean_env(tmp_path, KEEL_CONFIG=str(path)))
    assert result.returncode == 0, result.stderr
    header, body = split_header(result.stdout)
    assert str(path) in header
    assert tomllib.loads(body)["server"]["port"] == 4321


def test_config_option_beats_keel_config(tmp_path: Path) -> None:
    chosen = tmp_path / "chosen.toml"
    chosen.write_text("[server]\nport = 1111\n")
    other = tmp_path / "other.toml"
    other.write_text("[server]\nport = 2222\n")
    env = clean_env(tmp_path, KEEL_CONFIG=str(other))
    result = run_cli("--config", str(chosen), "check-config", env=env)
    assert result.returncode == 0, result.stderr
    assert tomllib.loads(split_header(result.stdout)[1])["server"]["port"] == 1111


def test_env_overrides_the_selected_file(tmp_path: Path) -> None:
    path = tmp_path / "other.toml"
    path.write_text(OTHER_CONFIG)
    env = clean_env(tmp_path, KEEL_SERVER__PORT="9000")
    result = run_cli("--config", str(path), "check-config", env=env)
    assert result.returncode == 0, result.stderr
    printed = tomllib.loads(split_header(result.stdout)[1])
    assert printed["server"]["port"] == 9000
    assert printed["logging"]["level"] == "debug"


# --- refusals: exit 2, one line per problem, no traceback -----------------------------

BAD_CONFIG = '[server]\nport = 0\nprot = 1\n[logging]\nlevel = "loud"\n'
BAD_PATHS = ("server.port", "server.prot", "logging.level", "worker.port")


@pytest.mark.parametrize("verb", ["check-config", "serve", "worker"])
def test_bad_config_exits_2_with_one_line_per_problem(tmp_path: Path, verb: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BAD_CONFIG)
    env = clean_env(tmp_path, KEEL_WORKER__PORT="x")
    result = run_cli("--config", str(path), verb, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert_no_traceback(result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == len(BAD_PATHS), lines
    for key_path in BAD_PATHS:
        assert sum(f"{key_path}:" in line for line in lines) == 1, (key_path, lines)
    worker_line = next(line for line in lines if "worker.port:" in line)
    assert "KEEL_WORKER__PORT" in worker_line
    assert any(
        'logging.level: expected "debug" or "info" or "warning" or "error" or "critical",'
        ' got "loud"' in line
        for line in lines
    )


def test_invalid_toml_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[server\n")
    result = run_cli("--config", str(path), "check-config", env=clean_env(tmp_path))
    assert result.returncode == 2
    assert_no_traceback(result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert str(path) in lines[0]
    assert "not valid TOML" in lines[0]


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    result = run_cli("check-config", env=clean_env(tmp_path, KEEL_CONFIG=str(missing)))
    assert result.returncode == 2
    assert_no_traceback(result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert f"{missing}: config file not found" in lines[0]


def test_malformed_env_name_exits_2(tmp_path: Path) -> None:
    result = run_cli("check-config", env=clean_env(tmp_path, KEEL_SERVER="1"))
    assert result.returncode == 2
    assert_no_traceback(result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert "KEEL_SERVER:" in lines[0]


@pytest.mark.parametrize(
    ("enabled", "expected"),
    [
        ('["nope"]', 'unknown plugin "nope"'),
        (f'["{PROBE}", "{PROBE}"]', "listed twice"),
        ('["metrics", "app.plugins.metrics:MetricsPlugin"]', 'plugin "metrics" is listed twice'),
        (
            '["tests.support.plugins.nothere:Plugin"]',
            'cannot load plugin "tests.support.plugins.nothere:Plugin"',
        ),
        ('["queue"]', '"queue" requires "sharding"'),
    ],
    ids=[
        "unknown-name",
        "duplicate-import-path",
        "duplicate-by-name",
        "missing-module",
        "missing-requirement",
    ],
)
@pytest.mark.parametrize("verb", ["serve", "check-config"])
def test_bad_plugin_set_exits_2_whether_serving_or_checking(
    tmp_path: Path, enabled: str, expected: str, verb: str
) -> None:
    port = free_port()
    env = clean_env(tmp_path, KEEL_PLUGINS__ENABLED=enabled)
    args = ("serve", "--port", str(port)) if verb == "serve" else ("check-config",)
    result = run_cli(*args, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert_no_traceback(result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if expected in line]
    assert len(lines) == 1, result.stderr
    assert "plugins.enabled" in lines[0]
    assert_refused_connection(port)  # refused before a port is bound


# --- serve ---------------------------------------------------------------------------


def startup_lines(stderr: str, port: int) -> list[str]:
    """The lines announcing the listener on `port`."""
    return [line for line in stderr.splitlines() if f"http://127.0.0.1:{port}" in line]


@pytest.mark.parametrize(
    "args",
    [
        ("serve", "--port", "{port}"),
        ("--port", "{port}"),
        ("serve", "--host", "127.0.0.1", "--port", "{port}"),
    ],
    ids=["serve", "no-verb", "host-option"],
)
def test_serve_answers_logs_and_stops_on_sigterm(tmp_path: Path, args: tuple[str, ...]) -> None:
    port = free_port()
    argv = [a.format(port=port) for a in args]
    base = f"http://127.0.0.1:{port}"
    with running(tmp_path, *argv, env=clean_env(tmp_path)) as keel:
        keel.wait_ready(f"{base}/healthz")
        status, body = http_get(f"{base}/healthz")
        assert status == 200
        assert json.loads(body) == {"status": "ok"}
        assert http_get(f"{base}/readyz")[0] == 200
        assert http_get(f"{base}/api/openapi.json")[0] == 200  # the public API is served
        assert keel.stop(signal.SIGTERM) == 0
        stderr = keel.stderr
    assert_no_traceback(stderr, keel.stdout)
    started = startup_lines(stderr, port)
    assert len(started) == 1, stderr
    assert __version__ in started[0]
    assert "metrics" in started[0]
    assert "redis" in started[0]


def test_serve_logs_configured_plugin_names(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(tmp_path, KEEL_PLUGINS__ENABLED=f'["metrics", "{PROBE}"]')
    with running(tmp_path, "serve", "--port", str(port), env=env) as keel:
        keel.wait_ready(f"http://127.0.0.1:{port}/healthz")
        assert http_get(f"http://127.0.0.1:{port}/test/items/7")[0] == 200  # probe is loaded
        assert keel.stop() == 0
        stderr = keel.stderr
    started = startup_lines(stderr, port)
    assert len(started) == 1, stderr
    assert "metrics" in started[0]
    assert PROBE in started[0]
    assert "redis" not in started[0]


def test_serve_stops_on_sigint(tmp_path: Path) -> None:
    port = free_port()
    with running(tmp_path, "--port", str(port), env=clean_env(tmp_path)) as keel:
        keel.wait_ready(f"http://127.0.0.1:{port}/healthz")
        assert keel.stop(signal.SIGINT) == 0
    assert_no_traceback(keel.stderr, keel.stdout)


@contextlib.contextmanager
def terminal() -> Iterator[int]:
    """A pseudo-terminal's slave end: a child with it as stdin runs "at a terminal"."""
    leader, follower = os.openpty()
    try:
        yield follower
    finally:
        os.close(follower)
        os.close(leader)


def test_ctrl_c_at_a_terminal_skips_the_drain_delay(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(tmp_path, KEEL_SERVER__DRAIN_DELAY="60")
    with terminal() as tty, running(tmp_path, "--port", str(port), env=env, stdin=tty) as keel:
        keel.wait_ready(f"http://127.0.0.1:{port}/healthz")
        # Within STOP_TIMEOUT, far below the 60 s drain_delay: nobody waits for a balancer.
        assert keel.stop(signal.SIGINT) == 0
    assert "draining (/readyz answers 503) for 0.0s (Ctrl-C at a terminal" in keel.stderr


def test_sigterm_at_a_terminal_keeps_the_whole_drain(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(tmp_path, KEEL_SERVER__DRAIN_DELAY="60")
    with terminal() as tty, running(tmp_path, "--port", str(port), env=env, stdin=tty) as keel:
        url = f"http://127.0.0.1:{port}"
        keel.wait_ready(f"{url}/healthz")
        keel.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + READY_TIMEOUT
        while http_get(f"{url}/readyz")[0] != 503:  # draining: /readyz says so, still served
            assert time.monotonic() < deadline, keel.stderr
            time.sleep(0.05)
        assert "draining (/readyz answers 503) for 60.0s," in keel.stderr
        assert keel.stop(signal.SIGTERM) == 1  # the second signal: exit now


def test_serve_port_from_env(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(tmp_path, KEEL_SERVER__PORT=str(port))
    with running(tmp_path, env=env) as keel:
        keel.wait_ready(f"http://127.0.0.1:{port}/healthz")
        assert http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        assert keel.stop() == 0


# --- worker --------------------------------------------------------------------------


def test_worker_serves_health_and_metrics_on_its_port(tmp_path: Path) -> None:
    port, api_port = free_port(), free_port()
    env = clean_env(tmp_path, KEEL_WORKER__PORT=str(port), KEEL_SERVER__PORT=str(api_port))
    base = f"http://127.0.0.1:{port}"
    with running(tmp_path, "worker", env=env) as keel:
        keel.wait_ready(f"{base}/healthz")
        status, body = http_get(f"{base}/healthz")
        assert status == 200
        assert json.loads(body) == {"status": "ok"}
        assert http_get(f"{base}/readyz")[0] == 200
        status, body = http_get(f"{base}/metrics")
        assert status == 200
        assert b"keel_" in body
        assert http_get(f"{base}/api/openapi.json")[0] == 404
        assert_refused_connection(api_port)  # the API port stays closed
        assert keel.stop(signal.SIGTERM) == 0
        stderr = keel.stderr
    assert_no_traceback(stderr, keel.stdout)
    started = startup_lines(stderr, port)
    assert len(started) == 1, stderr
    assert __version__ in started[0]


# --- a port already in use ------------------------------------------------------------


@pytest.mark.parametrize("verb", ["serve", "worker"])
def test_port_in_use_exits_nonzero_without_traceback(tmp_path: Path, verb: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = clean_env(tmp_path, KEEL_SERVER__PORT=str(port), KEEL_WORKER__PORT=str(port))
        result = run_cli(verb, env=env)
    assert result.returncode != 0
    assert_no_traceback(result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if "cannot listen" in line]
    assert len(lines) == 1, result.stderr
    assert f"127.0.0.1:{port}" in lines[0]
    assert "in use" in lines[0]


@pytest.mark.parametrize(("setting", "loop"), [("true", "uvloop"), ("false", "asyncio")])
def test_server_uvloop_selects_the_event_loop(tmp_path: Path, setting: str, loop: str) -> None:
    port = free_port()
    env = clean_env(tmp_path, KEEL_SERVER__UVLOOP=setting)
    with running(tmp_path, "--port", str(port), env=env) as keel:
        keel.wait_ready(f"http://127.0.0.1:{port}/healthz")
        assert keel.stop() == 0
        stderr = keel.stderr
    assert f"{loop} loop" in startup_lines(stderr, port)[0], stderr
