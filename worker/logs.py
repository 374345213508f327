"""Logging: one JSON object per line in production, plain readable lines in a terminal.

Lines about an event carry its `event_id`, `event_type`, `subject`, `topic`, `partition` and
`offset` as fields (passed with `extra=`); never values from the event's data, which may be
personal data.
"""

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["auto", "json", "console"]

# Attributes every LogRecord has; anything else was passed with `extra=` and is a field.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's duplicate of the message with terminal colours
}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value
        for key, value in vars(record).items()
        if key not in _STANDARD and not key.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    """`{"time", "level", "logger", "message", ...extra fields, "exception"?}` per line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_fields(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """`time level logger: message key=value ...` for humans."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = [f"{key}={value}" for key, value in _fields(record).items()]
        return f"{text} {' '.join(fields)}" if fields else text


def configure(log_format: LogFormat, level: str) -> None:
    """Route every logger (the worker's, FastStream's, aiokafka's, uvicorn's) to stderr."""
    if log_format == "auto":
        log_format = "console" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("faststream", "faststream.access", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # aiokafka's DEBUG lines dump whole protocol requests and records: the SASL PLAIN
    # password (SaslAuthenticateRequest) and every produced value (personal data).
    logging.getLogger("aiokafka").setLevel(max(logging.INFO, root.level))
