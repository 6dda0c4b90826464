"""shared.logs: text lines for people, JSON lines for services, and which one a process gets."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator

import pytest

from shared.logs import JsonFormatter, TextFormatter, configure_logging, resolve_format
from tests.ensemble_support import environment


def _record(msg: str = "model loaded", level: int = logging.INFO, exc_info: object = None,
            **extra: object) -> logging.LogRecord:
    record = logging.getLogger("serving.servable").makeRecord("serving.servable", level, __file__, 1, msg, (),
                                                             exc_info, extra=extra)
    return record


def test_text_lines_are_short_and_say_the_fields() -> None:
    line = TextFormatter().format(_record(model="audio", version=3))
    assert re.fullmatch(r"\d\d:\d\d:\d\d INFO  model loaded \(model=audio, version=3\)", line), line
    assert TextFormatter().format(_record("ensemble stopped")).endswith(" INFO  ensemble stopped")  # no "()"
    assert " WARNING child exited" in TextFormatter().format(_record("child exited", logging.WARNING))


def test_text_lines_carry_the_traceback_of_an_exception() -> None:
    try:
        raise RuntimeError("no model")
    except RuntimeError:
        line = TextFormatter().format(_record("analysis failed", logging.ERROR, exc_info=sys.exc_info()))
    first, *rest = line.split("\n")
    assert first.endswith(" ERROR analysis failed") and rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "RuntimeError: no model"


def test_json_lines_hold_the_fields_as_values() -> None:
    payload = json.loads(JsonFormatter().format(_record(model="audio", version=3, path=None)))
    assert payload["msg"] == "model loaded" and payload["level"] == "INFO" and payload["logger"] == "serving.servable"
    assert payload["model"] == "audio" and payload["version"] == 3 and payload["path"] is None
    assert isinstance(payload["ts"], float) and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", payload["time"])


@pytest.mark.parametrize(("flag", "setting", "default", "chosen"), [
    (None, "auto", "text", "text"),  # a command, nothing asked: text
    (None, "auto", "json", "json"),  # a service, nothing asked: JSON
    (None, "json", "text", "json"),  # EMPATHY_LOG_FORMAT over the program's default
    (None, "text", "json", "text"),
    ("json", "text", "text", "json"),  # --log-format over EMPATHY_LOG_FORMAT
    ("text", "json", "json", "text"),
])
def test_the_command_line_beats_the_setting_which_beats_the_program(flag: str | None, setting: str, default: str,
                                                                    chosen: str) -> None:
    assert resolve_format(flag, setting, default) == chosen


def test_an_unknown_format_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="'xml': choose text, json"):
        resolve_format(None, "xml", "text")


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, its handlers and level restored after the test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def _ours(root: logging.Logger) -> list[logging.Handler]:
    return [h for h in root.handlers if getattr(h, "_empathy", False)]


def test_services_log_json_and_commands_text_from_one_handler(root_logger: logging.Logger) -> None:
    with environment({"EMPATHY_LOG_FORMAT": "auto", "EMPATHY_LOG_LEVEL": "WARNING"}):
        assert configure_logging() == "json"  # what the gateway, workers and model server call
        assert isinstance(_ours(root_logger)[0].formatter, JsonFormatter)
        assert root_logger.level == logging.WARNING
        assert configure_logging(log_format=None, default_format="text") == "text"  # what a command calls
        assert len(_ours(root_logger)) == 1 and isinstance(_ours(root_logger)[0].formatter, TextFormatter)
    with environment({"EMPATHY_LOG_FORMAT": "json"}):
        assert configure_logging(default_format="text") == "json"
        assert isinstance(_ours(root_logger)[0].formatter, JsonFormatter)
