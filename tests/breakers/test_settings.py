"""`[breakers]` and `[breakers.<name>]` as the config loader reads them."""

from __future__ import annotations

import pytest

from app.breakers import BreakersSettings
from app.errors import ConfigError
from tests.support.apps import ConfigFactory


def problems(make_config: ConfigFactory, toml: str = "", **env: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        make_config(toml, **env)
    return caught.value.problems


def test_defaults_and_overrides_from_the_file_and_the_environment(
    make_config: ConfigFactory,
) -> None:
    config = make_config(
        '[breakers]\nwindow = 40\n[breakers."shard.1"]\nfailure_rate = 25\n',
        BREAKERS__REDIS__OPEN_SECONDS="2",
    )
    settings = config.settings(BreakersSettings)
    assert settings.policy("shard.1").failure_rate == 25.0
    assert settings.policy("shard.1").window == 40  # the section's, not the built-in default
    assert settings.policy("redis").open_seconds == 2.0
    assert settings.policy("shard.0").failure_rate == 50.0


def test_bad_values_name_their_key(make_config: ConfigFactory) -> None:
    assert problems(make_config, "[breakers]\nfailure_rate = 0\n") == [
        "breakers.failure_rate: expected a percentage in (0, 100], got 0.0"
    ]
    assert problems(make_config, "[breakers.redis]\nwindow = 0\n") == [
        "breakers.redis.window: expected a number > 0, got 0"
    ]
    assert problems(make_config, "[breakers.redis]\nwindw = 5\n")[0].startswith(
        "breakers.redis.windw: unknown key (known keys: failure_rate, half_open_calls"
    )


def test_a_stray_value_in_the_section_is_not_an_override(make_config: ConfigFactory) -> None:
    assert problems(make_config, "[breakers]\nwindw = 5\n")[0].startswith(
        "breakers.windw: unknown key (known keys: failure_rate, half_open_calls"
    )


def test_the_resolved_tree_shows_overrides_where_the_file_has_them(
    make_config: ConfigFactory,
) -> None:
    plain = make_config("[breakers.redis]\nopen_seconds = 2.5\n").as_dict()
    assert plain["breakers"]["redis"] == {"open_seconds": 2.5}
    assert plain["breakers"]["window"] == 20
    assert "overrides" not in plain["breakers"]
