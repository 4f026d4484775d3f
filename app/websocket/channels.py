"""Channel names, and the patterns that say where clients may publish.

A channel name is 1-100 characters of `[a-z0-9._-]`. A publish pattern is a
name in which `*` stands for one or more name characters: `chat.*` matches
`chat.lobby` and `chat.eu.lobby`, but neither `chat.` nor `chatter`. Server
channels (`items`, `jobs`) are written by the server only: no pattern opens
them to clients, not even `*`. Private channels (`[websocket] private_channels`
and the patterns plugins hide) are not even visible to clients: no subscribe,
no presence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

CHANNEL = re.compile(r"[a-z0-9._-]{1,100}")
_PATTERN = re.compile(r"[a-z0-9._*-]{1,100}")
_NAME_CHARS = "[a-z0-9._-]"

# Fed by the server (item changes, job status changes); read-only to clients.
SERVER_CHANNELS = frozenset({"items", "jobs"})


def is_channel(name: object) -> bool:
    """Is `name` a valid channel name?"""
    return isinstance(name, str) and CHANNEL.fullmatch(name) is not None


def check_pattern(pattern: str) -> str | None:
    """Why `pattern` is not a valid publish pattern, or None."""
    if _PATTERN.fullmatch(pattern) is None or "**" in pattern:
        return (
            "expected a channel name of [a-z0-9._-] in which * stands for any name"
            f' characters (e.g. "chat.*"), got "{pattern}"'
        )
    return None


def check_patterns(patterns: tuple[str, ...]) -> str | None:
    """Config validator: every entry a valid publish pattern."""
    for pattern in patterns:
        if problem := check_pattern(pattern):
            return problem
    return None


def _compile(patterns: Iterable[str]) -> re.Pattern[str] | None:
    alternatives = [
        "".join(f"{_NAME_CHARS}+" if part == "*" else re.escape(part) for part in _split(p))
        for p in patterns
    ]
    return re.compile("|".join(alternatives)) if alternatives else None


def _split(pattern: str) -> list[str]:
    """`chat.*.x` -> ["chat.", "*", ".x"]."""
    return [part for part in re.split(r"(\*)", pattern) if part]


class ChannelPatterns:
    """A set of channel patterns: those configured plus those plugins added."""

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        self._configured: tuple[str, ...] = ()
        self._added: list[str] = []
        self._regex: re.Pattern[str] | None = None
        self.configure(patterns)

    @property
    def patterns(self) -> tuple[str, ...]:
        return (*self._configured, *(p for p in self._added if p not in self._configured))

    def configure(self, patterns: Iterable[str]) -> None:
        """Replace the configured patterns (those plugins added are kept)."""
        patterns = tuple(patterns)
        for pattern in patterns:
            if problem := check_pattern(pattern):
                raise ValueError(problem)
        self._configured = patterns
        self._regex = _compile(self.patterns)

    def add(self, pattern: str) -> None:
        """Add `pattern`; ValueError if it is not one."""
        if problem := check_pattern(pattern):
            raise ValueError(problem)
        if pattern not in self._added:
            self._added.append(pattern)
            self._regex = _compile(self.patterns)

    def matches(self, channel: str) -> bool:
        """Does a pattern match `channel` (a valid name)?"""
        return self._regex is not None and self._regex.fullmatch(channel) is not None


class PublishPermissions(ChannelPatterns):
    """Where clients may publish: configured patterns plus those plugins allow."""

    def allow(self, pattern: str) -> None:
        """Let clients publish on channels matching `pattern`; ValueError if it is not one."""
        self.add(pattern)

    def allows(self, channel: str) -> bool:
        """May a client publish on `channel` (a valid name)?"""
        return channel not in SERVER_CHANNELS and self.matches(channel)
