"""Log lines in `text` or `json`, each carrying the current request id."""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from app.core.config_schema import check
from app.core.request_id import current_request_id

LEVELS = ("debug", "info", "warning", "error", "critical")


def _level(value: str) -> str | None:
    if value.lower() in LEVELS:
        return None
    # Worded as config_schema words any other choice of values; any case is accepted.
    choices = " or ".join(f'"{level}"' for level in LEVELS)
    return f'expected {choices}, got "{value}"'


@dataclass(frozen=True)
class LoggingSettings:
    """`[logging]`: level (any case: Python users write `WARNING`), line format, access log."""

    level: str = field(default="info", metadata=check(_level))
    format: Literal["text", "json"] = "text"
    access_log: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "level", self.level.lower())  # one spelling from here on


_TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s"


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; `extra={"fields": {...}}` adds structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(config: LoggingSettings) -> None:
    """Install one stderr handler on the root logger (replacing any earlier one of ours)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "keel", False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.keel = True  # type: ignore[attr-defined]
    handler.addFilter(_RequestIdFilter())
    formatter = JsonFormatter() if config.format == "json" else logging.Formatter(_TEXT_FORMAT)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    set_level(config.level)


def set_level(level: str) -> None:
    logging.getLogger().setLevel(level.upper())
