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

from harness.textsafe import visible

LOGGER_NAME = "harness"
_JSON_FIELDS = "{asctime}{levelname}{name}{message}"

LogFormat = Literal["text", "json"]


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted, not the one at set-up."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass  # always the current sys.stderr


def _json_formatter(kind: type[JsonFormatter] = JsonFormatter) -> JsonFormatter:
    return kind(_JSON_FIELDS, style="{", rename_fields={"levelname": "level", "asctime": "time"})


def _without_traceback(record: logging.LogRecord) -> logging.LogRecord:
    """The console gets one line a record: the traceback stays in harness.log."""
    if record.exc_info is None and record.exc_text is None and record.stack_info is None:
        return record
    copy = logging.makeLogRecord(record.__dict__)
    copy.exc_info = copy.exc_text = copy.stack_info = None
    return copy


class _ConsoleText(logging.Formatter):
    """``LEVEL: message``, one line, guest control bytes shown as ``\\xNN`` (never obeyed by the terminal)."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return visible(super().format(_without_traceback(record)))


class _ConsoleJson(JsonFormatter):
    """One JSON object a line (JSON escapes control bytes itself), without tracebacks."""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(_without_traceback(record))


class _FileHandler(logging.FileHandler):
    """harness.log: created afresh without following a link planted where it goes; a write error
    (a full disk) is counted, never printed with a traceback, and never stops the run."""

    def __init__(self, path: Path) -> None:
        self.errors_seen = 0
        self.first_error: str | None = None
        super().__init__(path, mode="w", encoding="utf-8", delay=False)

    def _open(self):  # type: ignore[no-untyped-def]
        from harness.outputs import open_new  # late: outputs imports the error hierarchy

        return open_new(Path(self.baseFilename), text=True)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - the base class's name
        self._count(sys.exc_info()[1])

    def _count(self, err: BaseException | None) -> None:
        self.errors_seen += 1
        if self.first_error is None:
            self.first_error = f"{type(err).__name__}: {err}" if err else "unknown error"

    def flush(self) -> None:
        # logging guards emit() but not flush() and close(): on a full disk the last buffered lines
        # would otherwise escape as an OSError at the end of a run that already has its verdict.
        try:
            super().flush()
        except OSError as err:
            self._count(err)

    def close(self) -> None:
        try:
            super().close()
        except OSError as err:
            self._count(err)
            self.stream = None


def setup_console(fmt: LogFormat = "text", level: int = logging.INFO) -> logging.Logger:
    """(Re)configure the console handler of the harness logger."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    for handler in [h for h in logger.handlers if getattr(h, "_harness_console", False)]:
        logger.removeHandler(handler)
    console = _StderrHandler()
    console.setLevel(level)
    console.setFormatter(_json_formatter(_ConsoleJson) if fmt == "json" else _ConsoleText())
    console._harness_console = True  # type: ignore[attr-defined]
    logger.addHandler(console)
    return logger


def quiet_console(quiet: bool = True) -> None:
    """Silence the console log (the verdict line was printed and must stay the last thing a person
    sees); every record still reaches harness.log. ``quiet_console(False)`` undoes it."""
    for handler in logging.getLogger(LOGGER_NAME).handlers:
        if getattr(handler, "_harness_console", False):
            if quiet:
                handler._harness_level = handler.level  # type: ignore[attr-defined]
                handler.setLevel(logging.CRITICAL + 1)
            else:
                handler.setLevel(getattr(handler, "_harness_level", handler.level))


def add_file_log(path: Path) -> _FileHandler:
    """Log everything, as JSON lines, to ``path`` (replaced) too; returns the handler so it can be removed."""
    handler = _FileHandler(path)
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
