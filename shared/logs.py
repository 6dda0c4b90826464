"""Structured logging: one JSON object per line on stderr, so compose and local runs can be grepped alike."""

from __future__ import annotations

import json
import logging
import sys
import time

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


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
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


def configure_logging(level: str | None = None) -> None:
    """Idempotently route the root logger to stderr as JSON lines at the configured level."""
    from shared.settings import get_settings

    root = logging.getLogger()
    level_name = (level or get_settings().log_level).upper()
    root.setLevel(level_name)
    if not any(getattr(h, "_empathy", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._empathy = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    for noisy in ("absl", "tensorflow", "h5py", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
