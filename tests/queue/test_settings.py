"""`[amqp]` and `[queue]`: defaults, and bad values named by their key path."""

from __future__ import annotations

import pytest

from app.errors import ConfigError
from app.queue.settings import QueueSettings
from tests.support.apps import ConfigFactory


def test_defaults_are_the_embedded_queue(make_config: ConfigFactory) -> None:
    config = make_config()
    assert config.amqp.url.reveal() == ""
    settings = config.settings(QueueSettings)
    assert (settings.name, settings.consume, settings.max_attempts) == ("keel", True, 5)


def test_the_amqp_password_is_redacted(make_config: ConfigFactory) -> None:
    config = make_config(AMQP__URL="amqp://keel:s3cret@broker:5672/")
    assert config.amqp.url.reveal() == "amqp://keel:s3cret@broker:5672/"
    assert config.as_dict()["amqp"]["url"] == "amqp://keel:***@broker:5672/"


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"AMQP__URL": "redis://x"}, 'amqp.url: expected "" or a URL like "amqp://'),
        ({"QUEUE__NAME": "bad name"}, "queue.name: expected 1..101 characters"),
        ({"QUEUE__MAX_ATTEMPTS": "0"}, "queue.max_attempts: expected an integer 1..100"),
        ({"QUEUE__PREFETCH": "0"}, "queue.prefetch: expected a number > 0"),
        ({"QUEUE__LEASE": "fast"}, 'queue.lease: expected a number, got "fast"'),
    ],
)
def test_bad_values_name_their_key(
    make_config: ConfigFactory, env: dict[str, str], problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        make_config(**env)
    (line,) = caught.value.problems
    assert line.startswith(problem), line
