"""Load `config.toml` plus `KEEL_<SECTION>__<KEY>` overrides into a frozen, typed tree.

`load_config()` is the only reader of the file and the environment. Core
sections are declared here; a plugin owns its own section (`Plugin.settings`),
validated in the same pass, so one run reports every problem in the file with
its key path. Which sections plugins own is passed in by the caller (the
plugin registry: `app.plugins.read_config`), so this module knows no plugin.
Nothing is read at import time.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from app.core.config_schema import (
    Problems,
    SecretUrl,
    build,
    check,
    not_negative,
    positive,
    tcp_port,
    to_plain,
)
from app.core.logging_config import LoggingSettings
from app.errors import ConfigError

T = TypeVar("T")

ENV_PREFIX = "KEEL_"
CONFIG_ENV = "KEEL_CONFIG"
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config.toml"
DEFAULT_PLUGINS = (
    "metrics",
    "breakers",
    "redis",
    "cache",
    "ratelimit",
    "sharding",
    "upstreams",
    "websocket",
    "queue",
    "demo",
    "admin",
)


def _networks(values: tuple[str, ...]) -> str | None:
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            return f'expected CIDRs like "10.0.0.0/8", got "{value}"'
    return None


def _origins(values: tuple[str, ...]) -> str | None:
    for value in values:
        if value != "*" and not value.startswith(("http://", "https://")):
            return f'expected "*" or origins like "https://example.com", got "{value}"'
    return None


def _unique(values: tuple[str, ...]) -> str | None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            return f'"{value}" is listed twice: list each plugin once'
        seen.add(value)
    return None


@dataclass(frozen=True)
class ServerSettings:
    """`[server]`: the HTTP listener and the drain sequence."""

    host: str = "127.0.0.1"
    port: int = field(default=8080, metadata=check(tcp_port))
    data_dir: str = "data"
    client_max_size: int = field(default=1024 * 1024, metadata=check(positive))
    trusted_proxies: tuple[str, ...] = field(
        default=("127.0.0.0/8", "::1/128"), metadata=check(_networks)
    )
    shutdown_timeout: float = field(default=30.0, metadata=check(not_negative))
    drain_delay: float = field(default=5.0, metadata=check(not_negative))
    uvloop: bool = True

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()


@dataclass(frozen=True)
class WorkerSettings:
    """`[worker]`: the `run.py worker` process."""

    port: int = field(default=8081, metadata=check(tcp_port))
    concurrency: int = field(default=8, metadata=check(positive))


def _amqp_url(value: SecretUrl) -> str | None:
    url = value.reveal()
    if url and not url.startswith(("amqp://", "amqps://")):
        example = "amqp://guest:guest@127.0.0.1:5672/"
        return f'expected "" or a URL like "{example}", got "{value.redacted}"'
    return None


@dataclass(frozen=True)
class AmqpSettings:
    """`[amqp]`: the RabbitMQ broker of the queue plugin ("" = the embedded SQLite queue)."""

    url: SecretUrl = field(default=SecretUrl(""), metadata=check(_amqp_url))
    connect_timeout: float = field(default=5.0, metadata=check(positive))
    publish_timeout: float = field(default=5.0, metadata=check(positive))
    heartbeat: int = field(default=10, metadata=check(positive))
    # A refused connect costs the broker nothing; a long pause costs the time to
    # recover after it is back (the fault report's broker cut).
    reconnect_max: float = field(default=2.0, metadata=check(positive))


@dataclass(frozen=True)
class PluginsSettings:
    """`[plugins]`: which plugins load, by name or `package.module:Class`."""

    enabled: tuple[str, ...] = field(default=DEFAULT_PLUGINS, metadata=check(_unique))


@dataclass(frozen=True)
class CorsSettings:
    """`[cors]`: origins allowed to call the API from a browser (none by default)."""

    allow_origins: tuple[str, ...] = field(default=(), metadata=check(_origins))


@dataclass(frozen=True)
class Config:
    """The whole resolved configuration. Plugins' sections are reached with `settings()`."""

    server: ServerSettings = field(default_factory=ServerSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    amqp: AmqpSettings = field(default_factory=AmqpSettings)
    plugins: PluginsSettings = field(default_factory=PluginsSettings)
    cors: CorsSettings = field(default_factory=CorsSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    # Plugin-owned sections by name; filled by load_config.
    plugin_settings: Mapping[str, Any] = field(default_factory=dict)
    source: Path | None = None

    def settings(self, kind: type[T]) -> T:
        """The plugin-owned section of type `kind` (its defaults if the file has none)."""
        for value in self.plugin_settings.values():
            if type(value) is kind:
                return value
        return kind()

    def as_dict(self, *, redact: bool = True) -> dict[str, Any]:
        """The resolved tree as plain data, secrets masked unless `redact=False`."""
        core = {
            f.name: to_plain(getattr(self, f.name), redact=redact)
            for f in dataclasses.fields(self)
            if f.name not in ("plugin_settings", "source")
        }
        core.update({name: to_plain(s, redact=redact) for name, s in self.plugin_settings.items()})
        return core


CORE_SECTIONS: dict[str, type[Any]] = {
    "server": ServerSettings,
    "worker": WorkerSettings,
    "amqp": AmqpSettings,
    "plugins": PluginsSettings,
    "cors": CorsSettings,
    "logging": LoggingSettings,
}


def config_path(explicit: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path:
    """`--config FILE`, else `KEEL_CONFIG`, else the repository's config.toml."""
    if explicit:
        return Path(explicit)
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    return DEFAULT_CONFIG_PATH


def _parse_env_value(text: str) -> Any:
    """A TOML value when it parses as one, else the text itself."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _apply_env(raw: dict[str, Any], env: Mapping[str, str], problems: Problems) -> dict[str, str]:
    """Merge `KEEL_A__B=value` into `raw`; returns key path -> raw text of each override."""
    text: dict[str, str] = {}
    for name, value in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__")]
        if len(keys) < 2 or not all(keys):
            problems.add(name, "expected KEEL_<SECTION>__<KEY> (two underscores between levels)")
            continue
        node = raw
        for key in keys[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                problems.add(
                    ".".join(keys), f"{name} sets a key inside a value that is not a table"
                )
                break
            node = child
        else:
            node[keys[-1]] = _parse_env_value(value)
            text[".".join(keys)] = value
    return text


def _name_env_source(problem: str, text: Mapping[str, str]) -> str:
    """Point a problem at the environment variable that caused it, if one did."""
    path = problem.split(": ", 1)[0].split("[", 1)[0]
    for key_path in text:
        if key_path == path or key_path.startswith(f"{path}."):
            return f"{problem} (from {env_name(key_path)})"
    return problem


def env_name(key_path: str) -> str:
    """`server.port` -> `KEEL_SERVER__PORT`."""
    return ENV_PREFIX + key_path.upper().replace(".", "__")


def _read_file(path: Path, problems: Problems) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        problems.add(str(path), "config file not found")
    except tomllib.TOMLDecodeError as exc:
        problems.add(str(path), f"not valid TOML: {exc}")
    except OSError as exc:
        problems.add(str(path), f"cannot read: {exc.strerror}")
    return {}


# Given `plugins.enabled`, the sections plugins own: name -> dataclass (problems noted).
PluginSettingsLookup = Callable[[Sequence[str], Problems], Mapping[str, type[Any]]]


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    plugin_settings: PluginSettingsLookup,
) -> Config:
    """Read, merge and validate; raise `ConfigError` listing every problem.

    `plugin_settings` tells which sections plugins own, given the enabled list
    (the registry's `settings_classes`).
    """
    env = os.environ if env is None else env
    problems = Problems()
    source = config_path(path, env)
    raw = _read_file(source, problems)
    text = _apply_env(raw, env, problems)

    core: dict[str, Any] = {}
    for name, cls in CORE_SECTIONS.items():
        value = raw.get(name, {})
        if isinstance(value, dict):
            core[name] = build(cls, value, problems, name, text)
        else:
            problems.add(name, "expected a table")
    enabled = core["plugins"].enabled if "plugins" in core else DEFAULT_PLUGINS
    owned = plugin_settings(enabled, problems)
    sections: dict[str, Any] = {}
    for name, value in raw.items():
        if name in CORE_SECTIONS:
            continue
        if name not in owned:
            known = ", ".join(sorted([*CORE_SECTIONS, *owned]))
            problems.add(name, f"unknown section (known sections: {known})")
        elif not isinstance(value, dict):
            problems.add(name, "expected a table")
    for name, cls in owned.items():
        value = raw.get(name, {})
        sections[name] = build(cls, value if isinstance(value, dict) else {}, problems, name, text)
    if problems.lines:
        raise ConfigError([_name_env_source(line, text) for line in problems.lines])
    return Config(**core, plugin_settings=sections, source=source)
