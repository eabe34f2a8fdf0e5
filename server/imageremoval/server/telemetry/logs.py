"""Structured logs fit for an audit trail: RFC 3339 UTC times, who asked and from where, trace IDs, bounded size."""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from imageremoval.server.domain.model import Item, ItemKind
from imageremoval.server.telemetry import names as t

MAX_MESSAGE = 2048
MAX_LIST = 4096  # characters of a field listing names or IDs


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made the current call: set once per RPC by the server interceptor, read by every log line."""

    method: str = ""
    peer: str = ""
    identities: tuple[str, ...] = ()
    request_id: str = ""


CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("imageremoval_caller", default=None)


def rfc3339(created: float) -> str:
    """A log record's time as RFC 3339 in UTC with milliseconds: 2026-12-01T08:39:45.473Z."""
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def clip_list(values: Iterable[str]) -> str:
    """Comma-separated, cut between values and flagged when too long for one line."""
    out = ""
    for value in values:
        candidate = f"{out},{value}" if out else value
        if len(candidate) > MAX_LIST:
            return out + ",...(truncated)"
        out = candidate
    return out


def removal_fields(
    namespace: str,
    reference: str,
    outcome: str,
    seconds: float,
    *,
    reason: str = "",
    items: Sequence[Item] = (),
    image_id: str = "",
) -> dict[str, object]:
    """The structured fields of a removal's log line: what was asked, what happened, what was removed."""
    untagged = [i.value for i in items if i.kind is ItemKind.UNTAGGED]
    deleted = [i.value for i in items if i.kind is ItemKind.DELETED]
    return {
        "namespace": namespace[:80],
        "reference": reference[:256],
        "outcome": outcome,
        "reason": reason,
        "image_id": image_id or next((i.image_id for i in items), ""),
        "untagged": clip_list(untagged),
        "deleted": clip_list(deleted),
        "items": len(items),
        "duration_ms": round(seconds * 1000, 3),
    }


class ContextFilter(logging.Filter):
    """Adds the current span's IDs and the caller (empty outside a request) and clips huge messages."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        record.trace_id = format(context.trace_id, "032x") if context.is_valid else ""
        record.span_id = format(context.span_id, "016x") if context.is_valid else ""
        caller = CALLER.get()
        if caller is not None:
            for key, value in (
                (t.LOG_RPC_METHOD, caller.method),
                (t.LOG_PEER, caller.peer),
                (t.LOG_IDENTITY, ",".join(caller.identities)),
                (t.LOG_REQUEST_ID, caller.request_id),
            ):
                if not getattr(record, key, ""):
                    setattr(record, key, value)
        message = record.getMessage()
        if len(message) > MAX_MESSAGE:
            record.msg, record.args = message[:MAX_MESSAGE] + "...(truncated)", None
        return True


def _present(record: logging.LogRecord) -> list[tuple[str, Any]]:
    """The record's fields that have a value: the known ones in LOG_FIELDS order, then any other extra
    (say `address=`), the same set JsonLines writes."""
    extras = [key for key in vars(record) if key not in RESERVED_ATTRS and key not in t.LOG_FIELDS]
    found = []
    for key in (*t.LOG_FIELDS, *extras):
        value = getattr(record, key, None)
        if value is None or value == "":
            continue
        found.append((key, value))
    return found


class JsonLines(JsonFormatter):
    """One JSON object per line: time (RFC 3339 UTC), level, logger, message, then every non-empty field."""

    def __init__(self) -> None:
        super().__init__("%(message)s", rename_fields={"levelname": "level", "name": "logger"}, timestamp=False)

    def add_fields(self, log_record: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_record["time"] = rfc3339(record.created)
        log_record["level"] = record.levelname
        log_record["logger"] = record.name
        super().add_fields(log_record, record, message_dict)
        for key in list(log_record):
            if log_record[key] == "" or log_record[key] is None:
                del log_record[key]


class TextLines(logging.Formatter):
    """`time level logger: message key=value ...`, the same fields as JSON, empty ones left out."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{rfc3339(record.created)} {record.levelname} {record.name}: {record.getMessage()}"
        fields = " ".join(f"{key}={_quote(value)}" for key, value in _present(record))
        text = f"{line} {fields}" if fields else line
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def _quote(value: object) -> str:
    text = str(value)
    return f'"{text}"' if not text or any(c in text for c in ' "=') else text


def configure_logging(level: str, log_format: str, stream: Any = None) -> None:
    """Configure the root logger once, at start; `auto` means JSON unless stderr is a terminal."""
    stream = stream or sys.stderr
    use_json = log_format == "json" or (log_format == "auto" and not stream.isatty())
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonLines() if use_json else TextLines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
