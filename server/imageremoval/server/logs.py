"""Structured logs: JSON when not on a terminal, trace and span IDs on every line, bounded size."""

from __future__ import annotations

import logging
import sys
from typing import Any

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

MAX_MESSAGE = 2048
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TraceContextFilter(logging.Filter):
    """Adds trace_id and span_id of the current span (empty outside a request) and clips huge messages."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        record.trace_id = format(context.trace_id, "032x") if context.is_valid else ""
        record.span_id = format(context.span_id, "016x") if context.is_valid else ""
        message = record.getMessage()
        if len(message) > MAX_MESSAGE:
            record.msg, record.args = message[:MAX_MESSAGE] + "...(truncated)", None
        return True


def configure_logging(level: str, log_format: str, stream: Any = None) -> None:
    """Configure the root logger once, at start; `auto` means JSON unless stderr is a terminal."""
    stream = stream or sys.stderr
    use_json = log_format == "json" or (log_format == "auto" and not stream.isatty())
    handler = logging.StreamHandler(stream)
    handler.addFilter(TraceContextFilter())
    if use_json:
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s %(trace_id)s %(span_id)s",
                rename_fields={"levelname": "level", "asctime": "time", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT + " trace_id=%(trace_id)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
