"""The config loader: file + `KEEL_<SECTION>__<KEY>` overrides -> a typed, validated tree.

Everything goes through `load_config` (directly, or through the `make_config`
fixture that loads a TOML text with a given environment), the way `run.py`
loads it.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.admin.settings import AdminSettings
from app.config import Config
from app.core.config_schema import Secret, SecretUrl
from app.errors import ConfigError
from app.plugins import read_config
from app.redis import RedisSettings
from tests.support.apps import ConfigFactory
from tests.support.services import REPO

REPO_CONFIG = REPO / "config.toml"


def problems_of(make_config: ConfigFactory, toml: str = "", **env: str) -> list[str]:
    """The problem lines of a config that must be refused."""
    with pytest.raises(ConfigError) as caught:
        make_config(toml, **env)
    assert caught.value.problems, "a ConfigError must carry at least one problem"
    return caught.value.problems


def only_problem(make_config: ConfigFactory, toml: str = "", **env: str) -> str:
    problems = problems_of(make_config, toml, **env)
    assert len(problems) == 1, problems
    return problems[0]


def leaves(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Key paths of every leaf of a nested dict (an empty table counts as a leaf)."""
    for key, value in tree.items():
        path = (*prefix, key)
        if isinstance(value, dict) and value:
            yield from leaves(value, path)
        else:
            yield path


def lookup(tree: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = tree
    for key in path:
        assert isinstance(node, dict), f"{'.'.join(path)}: {key!r} is not inside a table"
        assert key in node, f"{'.'.join(path)} is missing"
        node = node[key]
    return node


# --- config.toml documents every key with its default -------------------------------


def test_repo_config_equals_builtin_defaults(tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    from_repo = read_config(REPO_CONFIG, env={})
    defaults = read_config(empty, env={})
    assert from_repo.as_dict(redact=False) == defaults.as_dict(redact=False)
    assert from_repo.source == REPO_CONFIG
    assert defaults.source == empty


def test_repo_config_states_every_key_of_the_resolved_tree(tmp_path: Path) -> None:
    text = REPO_CONFIG.read_text()
    in_file = tomllib.loads(text)
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    resolved = read_config(empty, env={}).as_dict(redact=False)
    paths = list(leaves(resolved))
    assert len(paths) > 20, "the walk must actually visit the tree"
    missing = []
    for path in paths:
        try:
            value = lookup(in_file, path)
        except AssertionError:
            missing.append(".".join(path))
            continue
        assert value == lookup(resolved, path), ".".join(path)
    assert missing == [], f"keys not written in config.toml: {missing}"
    # ...and each key is written out as `key = ...` in the text itself.
    for path in paths:
        assert re.search(rf"^{re.escape(path[-1])} = ", text, re.MULTILINE), ".".join(path)


def test_repo_config_comments_every_section() -> None:
    text = REPO_CONFIG.read_text()
    sections = re.split(r"^\[[^\]]+\]\n", text, flags=re.MULTILINE)[1:]
    headers = re.findall(r"^\[([^\]]+)\]$", text, flags=re.MULTILINE)
    assert len(headers) == len(sections) >= 6
    for header, body in zip(headers, sections, strict=True):
        assert body.lstrip().startswith("#"), f"[{header}] starts without a comment"


# --- environment overrides: every type ------------------------------------------------


def test_env_int(make_config: ConfigFactory) -> None:
    config = make_config(SERVER__PORT="9000")
    assert config.server.port == 9000
    assert type(config.server.port) is int


def test_env_float_given_an_int(make_config: ConfigFactory) -> None:
    config = make_config(SERVER__DRAIN_DELAY="2")
    assert config.server.drain_delay == 2.0
    assert type(config.server.drain_delay) is float


def test_env_float(make_config: ConfigFactory) -> None:
    assert make_config(SERVER__SHUTDOWN_TIMEOUT="0.5").server.shutdown_timeout == 0.5


@pytest.mark.parametrize(("text", "expected"), [("false", False), ("true", True)])
def test_env_bool(make_config: ConfigFactory, text: str, expected: bool) -> None:
    assert make_config(LOGGING__ACCESS_LOG=text).logging.access_log is expected


def test_env_array_of_plugin_names(make_config: ConfigFactory) -> None:
    assert make_config(PLUGINS__ENABLED='["metrics"]').plugins.enabled == ("metrics",)


def test_env_array_of_cidrs(make_config: ConfigFactory) -> None:
    config = make_config(SERVER__TRUSTED_PROXIES='["10.0.0.0/8"]')
    assert config.server.trusted_proxies == ("10.0.0.0/8",)


def test_env_empty_array(make_config: ConfigFactory) -> None:
    assert make_config(SERVER__TRUSTED_PROXIES="[]").server.trusted_proxies == ()


def test_env_plain_string_that_is_not_toml(make_config: ConfigFactory) -> None:
    assert make_config(SERVER__HOST="0.0.0.0").server.host == "0.0.0.0"


@pytest.mark.parametrize("text", ["007", "1e3", "2024", "true", "1.5"])
def test_env_string_field_keeps_number_like_text(make_config: ConfigFactory, text: str) -> None:
    # "2024", "1e3", "true" and "1.5" parse as TOML numbers/booleans; a string field
    # must still get exactly the text that was written.
    assert make_config(SERVER__DATA_DIR=text).server.data_dir == text


@pytest.mark.parametrize(
    ("key", "text", "expected"),
    [
        ("SERVER__HOST", '"0.0.0.0"', "0.0.0.0"),
        ("SERVER__DATA_DIR", '"007"', "007"),
        ("SERVER__DATA_DIR", "'/var/lib/keel'", "/var/lib/keel"),
    ],
)
def test_env_quoted_toml_string_is_unquoted(
    make_config: ConfigFactory, key: str, text: str, expected: str
) -> None:
    # DESIGN: the value is parsed as a TOML value when it parses; a quoted TOML
    # string therefore means the string inside the quotes.
    config = make_config(**{key: text})
    section, name = key.lower().split("__")
    assert getattr(getattr(config, section), name) == expected


def admin_token(config: Config) -> Secret:
    return config.settings(AdminSettings).token


def test_env_quoted_secret_is_unquoted(make_config: ConfigFactory) -> None:
    assert admin_token(make_config(ADMIN__TOKEN='"s3cret"')).reveal() == "s3cret"


def test_env_literal(make_config: ConfigFactory) -> None:
    assert make_config(LOGGING__FORMAT="json").logging.format == "json"
    assert make_config(LOGGING__LEVEL="debug").logging.level == "debug"


def test_env_secret(make_config: ConfigFactory) -> None:
    config = make_config(ADMIN__TOKEN="s3cret")
    assert isinstance(admin_token(config), Secret)
    assert admin_token(config).reveal() == "s3cret"


def test_env_secret_number_like(make_config: ConfigFactory) -> None:
    assert admin_token(make_config(ADMIN__TOKEN="12345")).reveal() == "12345"


def test_env_secret_url(make_config: ConfigFactory) -> None:
    url = "redis://:pw@127.0.0.1:6379/0"
    settings = make_config(REDIS__URL=url).settings(RedisSettings)
    assert isinstance(settings.url, SecretUrl)
    assert settings.url.reveal() == url
    assert str(settings.url) == "redis://:***@127.0.0.1:6379/0"


def test_env_overrides_file(make_config: ConfigFactory) -> None:
    toml = '[server]\nport = 1234\nhost = "10.1.2.3"\n[logging]\nlevel = "error"\n'
    config = make_config(toml, SERVER__PORT="9000", LOGGING__LEVEL="debug")
    assert config.server.port == 9000
    assert config.logging.level == "debug"
    assert config.server.host == "10.1.2.3"  # untouched file values stay


def test_env_overrides_plugin_section_from_file(make_config: ConfigFactory) -> None:
    toml = '[redis]\nurl = "redis://127.0.0.1:6379/1"\nkey_prefix = "file:"\n'
    settings = make_config(toml, REDIS__KEY_PREFIX="env:").settings(RedisSettings)
    assert settings.key_prefix == "env:"
    assert str(settings.url) == "redis://127.0.0.1:6379/1"


def test_non_keel_variables_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("")
    config = read_config(path, {"SERVER__PORT": "1", "KEELX_SERVER__PORT": "2", "HOME": "/"})
    assert config.server.port == 8080


# --- errors name the key path -----------------------------------------------------------


def test_unknown_key_in_core_section(make_config: ConfigFactory) -> None:
    problem = only_problem(make_config, "[server]\nprot = 8080\n")
    assert problem.startswith("server.prot: unknown key")
    assert "port" in problem  # lists the known keys so the typo is obvious


def test_unknown_key_in_plugin_section(make_config: ConfigFactory) -> None:
    problem = only_problem(make_config, '[redis]\nurll = ""\n')
    assert problem.startswith("redis.urll: unknown key")


def test_unknown_section(make_config: ConfigFactory) -> None:
    problem = only_problem(make_config, "[sevrer]\nport = 1\n")
    assert problem.startswith("sevrer: unknown section")
    assert "server" in problem


def test_unknown_key_via_env_names_the_variable(make_config: ConfigFactory) -> None:
    problem = only_problem(make_config, SERVER__PROT="1")
    assert problem.startswith("server.prot: unknown key")
    assert "KEEL_SERVER__PROT" in problem


def test_unknown_section_via_env_names_the_variable(make_config: ConfigFactory) -> None:
    problem = only_problem(make_config, NOPE__X="1")
    assert problem.startswith("nope: unknown section")
    assert "KEEL_NOPE__X" in problem


def test_bad_value_via_env_names_the_variable(make_config: ConfigFactory) -> None:
    problem = only_problem(make_config, SERVER__PORT="x")
    assert problem.startswith('server.port: expected an integer, got "x"')
    assert "KEEL_SERVER__PORT" in problem


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[server]\nport = "8080"\n', 'server.port: expected an integer, got "8080"'),
        ("[logging]\naccess_log = 1\n", "logging.access_log: expected a boolean, got 1"),
        ("[server]\nport = 80.5\n", "server.port: expected an integer, got 80.5"),
        ("[server]\nport = 8080.0\n", "server.port: expected an integer, got 8080.0"),
        ("[server]\nport = {a = 1}\n", "server.port: expected an integer, got a table"),
        ("[server]\nhost = [1]\n", "server.host: expected a string, got an array"),
        ('[server]\ndrain_delay = "5"\n', 'server.drain_delay: expected a number, got "5"'),
        ("[server]\ntrusted_proxies = 1\n", "server.trusted_proxies: expected an array"),
        ("[plugins]\nenabled = [1]\n", "plugins.enabled[0]: expected a string, got 1"),
        ("[admin]\ntoken = 5\n", "admin.token: expected a string, got 5"),
        ("[redis]\nurl = {a = 1}\n", "redis.url: expected a string, got a table"),
        ("logging = 1\n", "logging: expected a table"),
        ("redis = 1\n", "redis: expected a table"),
    ],
    ids=[
        "string-for-int",
        "int-for-bool",
        "float-for-int",
        "integral-float-for-int",
        "table-for-scalar",
        "array-for-string",
        "string-for-float",
        "scalar-for-array",
        "int-in-string-array",
        "int-for-secret",
        "table-for-secret-url",
        "scalar-for-core-table",
        "scalar-for-plugin-table",
    ],
)
def test_wrong_type(make_config: ConfigFactory, toml: str, expected: str) -> None:
    assert only_problem(make_config, toml).startswith(expected)


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[server]\nport = 0\n", "server.port: expected a port 1..65535, got 0"),
        ("[server]\nport = 70000\n", "server.port: expected a port 1..65535, got 70000"),
        ("[worker]\nport = 0\n", "worker.port: expected a port 1..65535, got 0"),
        (
            '[server]\ntrusted_proxies = ["10.0.0.0/8", "10.0.0.0/33"]\n',
            'server.trusted_proxies: expected CIDRs like "10.0.0.0/8", got "10.0.0.0/33"',
        ),
        (
            '[server]\ntrusted_proxies = ["proxy.local"]\n',
            'server.trusted_proxies: expected CIDRs like "10.0.0.0/8", got "proxy.local"',
        ),
        (
            '[logging]\nlevel = "loud"\n',
            'logging.level: expected "debug" or "info" or "warning" or "error" or "critical",'
            ' got "loud"',
        ),
        ('[logging]\nformat = "xml"\n', 'logging.format: expected "text" or "json", got "xml"'),
        (
            '[plugins]\nenabled = ["metrics", "redis", "metrics"]\n',
            'plugins.enabled: "metrics" is listed twice',
        ),
        ("[server]\ndrain_delay = -1\n", "server.drain_delay: expected a number >= 0"),
        ("[server]\nshutdown_timeout = -0.5\n", "server.shutdown_timeout: expected a number >= 0"),
        ("[server]\nclient_max_size = 0\n", "server.client_max_size: expected a number > 0"),
        ("[worker]\nconcurrency = 0\n", "worker.concurrency: expected a number > 0"),
        (
            '[redis]\nurl = "http://127.0.0.1:6379"\n',
            'redis.url: expected "" or a URL like "redis://127.0.0.1:6379/0",'
            ' got "http://127.0.0.1:6379"',
        ),
        ("[redis]\nsocket_timeout = 0\n", "redis.socket_timeout: expected a number > 0"),
        (
            '[cors]\nallow_origins = ["example.com"]\n',
            'cors.allow_origins: expected "*" or origins like "https://example.com",'
            ' got "example.com"',
        ),
    ],
    ids=[
        "port-0",
        "port-70000",
        "worker-port-0",
        "bad-cidr-prefix",
        "cidr-hostname",
        "log-level",
        "log-format",
        "duplicate-plugin",
        "negative-drain-delay",
        "negative-shutdown-timeout",
        "zero-client-max-size",
        "zero-concurrency",
        "redis-url-scheme",
        "redis-zero-timeout",
        "cors-origin",
    ],
)
def test_bad_value(make_config: ConfigFactory, toml: str, expected: str) -> None:
    assert only_problem(make_config, toml).startswith(expected)


def test_bad_log_level_message_is_exact(make_config: ConfigFactory) -> None:
    assert only_problem(make_config, '[logging]\nlevel = "loud"\n') == (
        'logging.level: expected "debug" or "info" or "warning" or "error" or "critical",'
        ' got "loud"'
    )


@pytest.mark.parametrize(
    "origins", [["*"], ["https://app.example.com", "http://localhost:3000"], []]
)
def test_good_cors_origins(make_config: ConfigFactory, origins: list[str]) -> None:
    toml = f"[cors]\nallow_origins = {origins!r}\n".replace("'", '"')
    assert make_config(toml).cors.allow_origins == tuple(origins)


@pytest.mark.parametrize("port", [1, 65535])
def test_port_bounds_are_inclusive(make_config: ConfigFactory, port: int) -> None:
    assert make_config(SERVER__PORT=str(port)).server.port == port


@pytest.mark.parametrize("name", ["SERVER", "SERVER__", "__PORT", "SERVER____PORT"])
def test_malformed_env_name(make_config: ConfigFactory, name: str) -> None:
    problem = only_problem(make_config, **{name: "1"})
    assert problem.startswith(f"KEEL_{name}: expected KEEL_<SECTION>__<KEY>")


def test_keel_config_variable_is_not_an_override(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[server]\nport = 1234\n")
    config = read_config(path, {"KEEL_CONFIG": str(tmp_path / "elsewhere.toml")})
    assert config.server.port == 1234


def test_env_key_inside_a_scalar(make_config: ConfigFactory) -> None:
    problem = only_problem(make_config, "[server]\nport = 1\n", SERVER__PORT__X="1")
    assert problem.startswith("server.port")
    assert "KEEL_SERVER__PORT__X" in problem


def test_invalid_toml_file(make_config: ConfigFactory) -> None:
    problem = only_problem(make_config, "[server\nport = 1\n")
    assert "not valid TOML" in problem
    assert "line 1" in problem


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError) as caught:
        read_config(missing, {})
    assert caught.value.problems == [f"{missing}: config file not found"]


def test_keel_config_selects_the_file(tmp_path: Path) -> None:
    path = tmp_path / "other.toml"
    path.write_text("[server]\nport = 4321\n")
    config = read_config(None, {"KEEL_CONFIG": str(path)})
    assert config.server.port == 4321
    assert config.source == path


def test_explicit_path_beats_keel_config(tmp_path: Path) -> None:
    explicit = tmp_path / "explicit.toml"
    explicit.write_text("[server]\nport = 1111\n")
    other = tmp_path / "other.toml"
    other.write_text("[server]\nport = 2222\n")
    assert read_config(explicit, {"KEEL_CONFIG": str(other)}).server.port == 1111


def test_several_problems_are_reported_together(make_config: ConfigFactory) -> None:
    toml = (
        "[server]\nport = 0\nprot = 1\n"
        '[logging]\nlevel = "loud"\n'
        "[sevrer]\nx = 1\n"
        '[redis]\nurl = "http://x"\n'
    )
    problems = problems_of(make_config, toml, WORKER__PORT="x", KEEL="1")
    assert len(problems) == 7, problems
    joined = "\n".join(problems)
    for start in (
        "server.port: expected a port",
        "server.prot: unknown key",
        "logging.level: expected",
        "sevrer: unknown section",
        "redis.url: expected",
        'worker.port: expected an integer, got "x"',
        "KEEL_KEEL: expected KEEL_<SECTION>__<KEY>",
    ):
        assert any(p.startswith(start) for p in problems), (start, joined)
    # the ConfigError's message carries them too, one per line
    with pytest.raises(ConfigError) as caught:
        make_config(toml, WORKER__PORT="x", KEEL="1")
    assert str(caught.value).splitlines() == problems


# --- redaction -------------------------------------------------------------------------


def test_as_dict_masks_admin_token(make_config: ConfigFactory) -> None:
    config = make_config(ADMIN__TOKEN="s3cret")
    assert config.as_dict()["admin"]["token"] == "***"
    assert "s3cret" not in json.dumps(config.as_dict())
    assert config.as_dict(redact=False)["admin"]["token"] == "s3cret"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("redis://user:pw@host:6379/0", "redis://user:***@host:6379/0"),
        ("rediss://user:pw@[::1]:6380/2", "rediss://user:***@[::1]:6380/2"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_as_dict_masks_url_password(make_config: ConfigFactory, url: str, masked: str) -> None:
    config = make_config(REDIS__URL=url)
    assert config.as_dict()["redis"]["url"] == masked
    assert config.as_dict(redact=False)["redis"]["url"] == url


def test_as_dict_redacts_by_default_everywhere(make_config: ConfigFactory) -> None:
    config = make_config(ADMIN__TOKEN="tok-XYZ", REDIS__URL="redis://u:pw-XYZ@h:1/0")
    assert "XYZ" not in repr(config.as_dict())
    assert "XYZ" not in repr(config)
    revealed = repr(config.as_dict(redact=False))
    assert "tok-XYZ" in revealed
    assert "pw-XYZ" in revealed


def test_secret_repr_and_str_hide_the_value() -> None:
    token = Secret("s3cret")
    for shown in (repr(token), str(token), f"{token}", "%s" % token, "%r" % token):  # noqa: UP031
        assert "s3cret" not in shown
        assert "***" in shown
    assert token.reveal() == "s3cret"
    assert token
    assert token == Secret("s3cret")
    assert token != Secret("other")


def test_empty_secret() -> None:
    token = Secret("")
    assert not token
    assert "***" not in repr(token)
    assert token.reveal() == ""


def test_empty_token_shows_empty(make_config: ConfigFactory) -> None:
    config = make_config()
    assert admin_token(config).reveal() == ""
    assert config.as_dict()["admin"]["token"] == ""
    assert make_config(ADMIN__TOKEN="").as_dict()["admin"]["token"] == ""


def test_secret_url_repr_hides_the_password() -> None:
    url = SecretUrl("redis://user:pw-XYZ@host:6379/0")
    assert "pw-XYZ" not in repr(url)
    assert url.redacted == "redis://user:***@host:6379/0"
    assert "pw-XYZ" not in repr(RedisSettings(url=url))


@pytest.mark.parametrize("url", ["", "redis://127.0.0.1:6379/0", "unix:///run/redis.sock"])
def test_secret_url_without_password_shows_it_whole(url: str) -> None:
    assert repr(SecretUrl(url)) == f"SecretUrl({url!r})"
    assert SecretUrl(url).redacted == url
    assert str(SecretUrl(url)) == url


def test_default_config_has_a_repr(make_config: ConfigFactory) -> None:
    # The default [redis] url is "" (no password): printing the config must still work.
    config = make_config()
    assert "RedisSettings(" in repr(config)
    assert "'***'" not in repr(config.as_dict())  # nothing to mask in the defaults


def test_secret_url_str_and_format_hide_the_password() -> None:
    # str() and %s/f-string formatting are what log lines use: they must not leak.
    url = SecretUrl("redis://user:pw-XYZ@host:6379/0")
    for shown in (str(url), f"{url}", "%s" % url):  # noqa: UP031
        assert "pw-XYZ" not in shown


# --- plugin-owned sections -------------------------------------------------------------


def test_section_defaults_without_the_table(make_config: ConfigFactory) -> None:
    settings = make_config("[server]\nport = 8080\n").settings(RedisSettings)
    assert settings == RedisSettings()
    assert settings.url.reveal() == ""
    assert not settings.url
    assert settings.key_prefix == "keel:"


def test_section_values_from_the_file(make_config: ConfigFactory) -> None:
    toml = (
        "[redis]\n"
        'url = "redis://:pw@10.0.0.5:6379/3"\n'
        'key_prefix = "staging:"\n'
        "max_connections = 8\n"
        "heartbeat_interval = 1\n"
    )
    settings = make_config(toml).settings(RedisSettings)
    assert isinstance(settings, RedisSettings)
    assert settings.url.reveal() == "redis://:pw@10.0.0.5:6379/3"
    assert settings.key_prefix == "staging:"
    assert settings.max_connections == 8
    assert settings.heartbeat_interval == 1.0
    assert type(settings.heartbeat_interval) is float
    assert settings.socket_timeout == RedisSettings().socket_timeout  # unset keys: defaults


def test_section_of_an_unknown_kind_is_its_defaults(make_config: ConfigFactory) -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Elsewhere:
        x: int = 3

    assert make_config().settings(Elsewhere) == Elsewhere()


def test_config_is_frozen(make_config: ConfigFactory) -> None:
    config = make_config()
    with pytest.raises(AttributeError):
        config.server.port = 1  # type: ignore[misc]
    assert isinstance(config, Config)


@pytest.mark.parametrize("written", ["WARNING", "Warning", "warning"])
def test_log_level_in_any_case(make_config: ConfigFactory, written: str) -> None:
    # Python users write levels in capitals (logging.WARNING); that must not stop startup.
    assert make_config(f'[logging]\nlevel = "{written}"\n').logging.level == "warning"
    assert make_config(LOGGING__LEVEL=written).logging.level == "warning"
