"""Logging: a JSON file log (one object a line) and a console log in text or JSON.

The console log goes to stderr so that stdout stays reserved for the verdict line (and
``--follow-serial``).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

LOGGER_NAME = "harness"
_JSON_FIELDS = "{asctime}{levelname}{name}{message}"

LogFormat = Literal["text", "json"]


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted, not the one at set-up."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass  # always the current sys.stderr


def _json_formatter() -> JsonFormatter:
    return JsonFormatter(_JSON_FIELDS, style="{", rename_fields={"levelname": "level", "asctime": "time"})


def setup_console(fmt: LogFormat = "text", level: int = logging.INFO) -> logging.Logger:
    """(Re)configure the console handler of the harness logger."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    for handler in [h for h in logger.handlers if getattr(h, "_harness_console", False)]:
        logger.removeHandler(handler)
    console = _StderrHandler()
    console.setLevel(level)
    console.setFormatter(_json_formatter() if fmt == "json" else logging.Formatter("%(levelname)s: %(message)s"))
    console._harness_console = True  # type: ignore[attr-defined]
    logger.addHandler(console)
    return logger


def add_file_log(path: Path) -> logging.Handler:
    """Log everything, as JSON lines, to ``path`` (replaced) too; returns the handler so it can be removed."""
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(_json_formatter())
    logging.getLogger(LOGGER_NAME).addHandler(handler)
    return handler


def remove_handler(handler: logging.Handler) -> None:
    logging.getLogger(LOGGER_NAME).removeHandler(handler)
    handler.close()


def get_logger(name: str) -> logging.Logger:
    """A child of the harness logger (``harness.<name>``)."""
    return logging.getLogger(f"{LOGGER_NAME}.{name}")
