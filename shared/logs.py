"""Logging for people and for machines: short text lines at a terminal, one JSON object per line for services.

The commands people run (``empathy analyze``, ``submit``, ``train``...) write ``12:01:03 INFO  model loaded
(model=audio, version=3)``; the services (gateway, workers, model server, ``empathy up`` and its children)
write JSON lines, so compose and local runs can be grepped alike. ``--log-format`` or ``EMPATHY_LOG_FORMAT``
chooses the other one.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

LOG_FORMATS: tuple[str, ...] = ("text", "json")
AUTO = "auto"  # EMPATHY_LOG_FORMAT's default: the program's own (text for commands, json for services)

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def _extra(record: logging.LogRecord) -> dict[str, object]:
    """The ``extra=`` fields of a record (what the standard LogRecord does not have)."""
    return {k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """Renders a record and its ``extra=`` fields as a single JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        payload.update(_extra(record))
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    """``HH:MM:SS LEVEL message (key=value, ...)`` in local time: what a person at a terminal reads."""

    def format(self, record: logging.LogRecord) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        fields = ", ".join(f"{k}={v}" for k, v in _extra(record).items())
        line = f"{clock} {record.levelname:<5} {record.getMessage()}" + (f" ({fields})" if fields else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def resolve_format(log_format: str | None, configured: str, default_format: str) -> str:
    """The format to use: the command line's, else the setting's (unless ``auto``), else the program's default."""
    chosen = log_format or (configured if configured and configured != AUTO else default_format)
    if chosen not in LOG_FORMATS:
        raise ValueError(f"log format {chosen!r}: choose {', '.join(LOG_FORMATS)} (EMPATHY_LOG_FORMAT also takes "
                         f"{AUTO!r})")
    return chosen


def configure_logging(level: str | None = None, log_format: str | None = None, *,
                      default_format: str = "json") -> str:
    """Route the root logger to stderr at the configured level, as text or JSON lines; returns the format.

    Idempotent: a second call replaces the formatter of the handler it installed instead of adding one.
    ``log_format`` is a command's ``--log-format`` (None: not given); ``default_format`` is the program's
    own when neither it nor ``EMPATHY_LOG_FORMAT`` chooses: ``text`` for commands, ``json`` for services.
    """
    from shared.settings import get_settings

    settings = get_settings()
    chosen = resolve_format(log_format, settings.log_format, default_format)
    root = logging.getLogger()
    level_name = (level or settings.log_level).upper()
    root.setLevel(level_name)
    handler = next((h for h in root.handlers if getattr(h, "_empathy", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._empathy = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    handler.setFormatter(TextFormatter() if chosen == "text" else JsonFormatter())
    for noisy in ("absl", "tensorflow", "h5py", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return chosen


def add_log_format_argument(parser: argparse.ArgumentParser) -> None:
    """``--log-format`` of a command people run: text by default, JSON for scripts that read the logs."""
    parser.add_argument("--log-format", choices=LOG_FORMATS, default=None,
                        help="log lines on stderr: text (short lines; the default) or json (one object a line); "
                        "default EMPATHY_LOG_FORMAT")
