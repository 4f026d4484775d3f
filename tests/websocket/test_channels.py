"""Channel names and publish patterns (pure)."""

from __future__ import annotations

import pytest

from app.websocket.channels import PublishPermissions, check_pattern, is_channel


@pytest.mark.parametrize("name", ["a", "chat.lobby", "x-1_2.y", "0" * 100, "items"])
def test_valid_channel_names(name: str) -> None:
    assert is_channel(name)


@pytest.mark.parametrize("name", ["", "Chat", "a b", "a/b", "x" * 101, "é", "chat.*", None, 7])
def test_invalid_channel_names(name: object) -> None:
    assert not is_channel(name)


def test_a_star_stands_for_one_or_more_name_characters() -> None:
    permissions = PublishPermissions(["chat.*"])
    assert permissions.allows("chat.lobby")
    assert permissions.allows("chat.eu.lobby")
    assert not permissions.allows("chat.")
    assert not permissions.allows("chatter")
    assert not permissions.allows("news")


def test_exact_names_and_stars_in_the_middle() -> None:
    permissions = PublishPermissions(["news", "room.*.public"])
    assert permissions.allows("news")
    assert not permissions.allows("news.x")
    assert permissions.allows("room.7.public")
    assert not permissions.allows("room.7.private")


def test_server_channels_are_never_open_to_clients() -> None:
    permissions = PublishPermissions(["*", "items", "jobs"])
    assert permissions.allows("anything")
    assert not permissions.allows("items")
    assert not permissions.allows("jobs")


def test_nothing_is_open_by_default_and_plugins_add_patterns() -> None:
    permissions = PublishPermissions()
    assert not permissions.allows("chat.x")
    permissions.allow("chat.*")
    permissions.allow("chat.*")  # twice is once
    assert permissions.allows("chat.x")
    assert permissions.patterns == ("chat.*",)


def test_reconfiguring_keeps_what_plugins_allowed() -> None:
    permissions = PublishPermissions(["news"])
    permissions.allow("chat.*")
    permissions.configure(["alerts"])
    assert permissions.patterns == ("alerts", "chat.*")
    assert not permissions.allows("news")
    assert permissions.allows("chat.x")
    assert permissions.allows("alerts")


@pytest.mark.parametrize("pattern", ["", "Chat.*", "chat.**", "chat/*", "a" * 101])
def test_bad_patterns_are_refused_with_the_reason(pattern: str) -> None:
    assert check_pattern(pattern) is not None
    with pytest.raises(ValueError, match="expected a channel name"):
        PublishPermissions().allow(pattern)
