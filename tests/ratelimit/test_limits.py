"""Limits as written in config: parsing, and the errors naming the key path."""

from __future__ import annotations

import pytest

from app.errors import ConfigError
from app.ratelimit.limits import Limit, parse_limit
from app.ratelimit.settings import RatelimitSettings
from tests.support.apps import ConfigFactory


@pytest.mark.parametrize(
    ("text", "quota", "window"),
    [("100/second", 100, 1), ("5/minute", 5, 60), ("1/hour", 1, 3600), (" 7 / day ", 7, 86400)],
)
def test_parse(text: str, quota: int, window: int) -> None:
    limit = parse_limit(text)
    assert (limit.quota, limit.window) == (quota, window)


@pytest.mark.parametrize(
    "text", ["fast", "", "0/second", "-1/second", "5/week", "5", "5/s", "x/hour"]
)
def test_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r'expected "N/second\|minute\|hour\|day"'):
        parse_limit(text)


def test_str_round_trips() -> None:
    assert str(parse_limit("5/minute")) == "5/minute"


def test_interval_is_rounded_up_so_the_rate_is_never_exceeded() -> None:
    limit = Limit(3, 1)
    assert limit.interval_us == 333_334
    assert limit.horizon_us == 1_000_002


def test_divided_never_reaches_zero() -> None:
    assert Limit(10, 1).divided(3).quota == 3
    assert Limit(2, 1).divided(5).quota == 1
    assert Limit(10, 60).divided(2).window == 60


def problem(make_config: ConfigFactory, toml: str = "", **env: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        make_config(toml, **env)
    return caught.value.problems


def test_bad_default_names_the_key(make_config: ConfigFactory) -> None:
    (line,) = problem(make_config, RATELIMIT__DEFAULT="fast")
    assert line.startswith('ratelimit.default: expected "N/second|minute|hour|day", got "fast"')


def test_env_default(make_config: ConfigFactory) -> None:
    settings = make_config(RATELIMIT__DEFAULT="5/second").settings(RatelimitSettings)
    assert settings.default == "5/second"


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[ratelimit]\nkey = "cookie"', 'ratelimit.key: expected "ip" or "header:<Name>"'),
        ('[ratelimit]\nkey = "header:"', 'ratelimit.key: expected "ip" or "header:<Name>"'),
        (
            '[[ratelimit.rules]]\npath = "/api/x"\nlimit = "lots"',
            'ratelimit.rules[0].limit: expected "N/second|minute|hour|day", got "lots"',
        ),
        (
            '[[ratelimit.rules]]\npath = "api/x"\nlimit = "1/second"',
            "ratelimit.rules[0].path: expected a route template",
        ),
        (
            '[[ratelimit.rules]]\npath = "/healthz"\nlimit = "1/second"',
            'ratelimit.rules[0].path: "/healthz" is never rate limited',
        ),
        (
            '[[ratelimit.rules]]\npath = "/api/x"\nmethod = "FETCH"\nlimit = "1/second"',
            "ratelimit.rules[0].method: expected one of GET",
        ),
        (
            '[[ratelimit.rules]]\nlimit = "1/second"',
            'ratelimit.rules: rules[0]: a rule needs a valid "path" and "limit"',
        ),
        (
            '[[ratelimit.rules]]\npath = "/api/x"\nlimit = "1/second"\n'
            '[[ratelimit.rules]]\npath = "/api/x"\nlimit = "2/second"',
            "ratelimit.rules: rules[1]: a second rule for * /api/x",
        ),
        (
            '[[ratelimit.rules]]\npath = "/api/x"\nlimit = "1/second"\nspeed = 3',
            "ratelimit.rules[0].speed: unknown key",
        ),
    ],
)
def test_bad_rules_and_keys_name_the_key(make_config: ConfigFactory, toml: str, expected: str):
    # An invalid path or limit also leaves the rule incomplete: said once more, after.
    first, *rest = problem(make_config, toml)
    assert first.startswith(expected), first
    assert rest in ([], ['ratelimit.rules: rules[0]: a rule needs a valid "path" and "limit"'])
