"""Keep secrets out of what the dashboard shows: state, snapshots and the audit log.

Plugins already redact what they know is secret (DSN passwords), but state
is assembled from many places — an error message may quote a URL, an
upstream URL may carry credentials — so everything the dashboard publishes
goes through a `Redactor` as well: it masks the password of any URL
(`scheme://user:***@host`) and every secret value found in the configuration
(tokens, the passwords of Redis, RabbitMQ and shard URLs), wherever it appears.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from app.core.config_schema import Secret, SecretUrl

MASK = "***"
_URL_PASSWORD = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s\"']*:)([^@\s/\"']+)@")
# Shorter values would mask ordinary words; no real secret is this short.
_MIN_SECRET = 6


def secret_values(tree: Any) -> Iterator[str]:
    """Every secret in a config tree: `Secret` values, URL passwords, userinfo of plain URLs."""
    if isinstance(tree, SecretUrl):
        url = tree.reveal()
        yield from _url_password(url)
        if url:
            yield url
    elif isinstance(tree, Secret):
        yield tree.reveal()
    elif isinstance(tree, str):
        yield from _url_password(tree)
    elif dataclasses.is_dataclass(tree) and not isinstance(tree, type):
        for f in dataclasses.fields(tree):
            yield from secret_values(getattr(tree, f.name))
    elif isinstance(tree, Mapping):
        for value in tree.values():
            yield from secret_values(value)
    elif isinstance(tree, tuple | list):
        for value in tree:
            yield from secret_values(value)


def _url_password(text: str) -> Iterator[str]:
    if "://" not in text or "@" not in text:
        return
    try:
        password = urlsplit(text).password
    except ValueError:
        return
    if password:
        yield password
        yield unquote(password)


class Redactor:
    """Masks URL passwords and the given secret values in any JSON-able value."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted({s for s in secrets if len(s) >= _MIN_SECRET}, key=len, reverse=True)

    def add(self, secret: str) -> None:
        if len(secret) >= _MIN_SECRET and secret not in self._secrets:
            self._secrets.append(secret)
            self._secrets.sort(key=len, reverse=True)

    def text(self, value: str) -> str:
        if "@" in value:
            value = _URL_PASSWORD.sub(rf"\1{MASK}@", value)
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.text(str(k)): self(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        return value
