"""Structured logs: one JSON object per line, with delivery, run and installation ids, redacted."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import IO, Any

import orjson
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from bot.redact import redact

delivery_id: ContextVar[str | None] = ContextVar("delivery_id", default=None)
run_id: ContextVar[int | str | None] = ContextVar("run_id", default=None)
installation_id: ContextVar[int | None] = ContextVar("installation_id", default=None)
_IDS: dict[str, ContextVar[Any]] = {
    "delivery_id": delivery_id, "run_id": run_id, "installation_id": installation_id,
}
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR, "critical": logging.CRITICAL}
FORMATS = ("json", "text")
# Loggers that print request or response bodies at debug level; the Kubernetes client's
# includes Secret data, base64-encoded beyond the reach of the patterns.
_BODY_LOGGERS = ("kubernetes.client.rest",)
# Announce the same built-in things at info on every start: shown at debug only.
_CHATTY_LOGGERS = ("alembic.runtime.plugins",)
# Attributes every LogRecord has; anything else on a record came in through `extra=`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "taskName", "_log_context", *_IDS,
}
_CORE = ("ts", "level", "logger", "msg", *_IDS, "exc", "stack")


@contextlib.contextmanager
def log_context(**ids: int | str | None) -> Iterator[None]:
    """Tag every line logged inside (across awaits, and in tasks started inside) with ids."""
    unknown = set(ids) - set(_IDS)
    if unknown:
        raise TypeError(f"log_context() takes {', '.join(_IDS)}; not {', '.join(sorted(unknown))}")
    tokens = [(_IDS[name], _IDS[name].set(value)) for name, value in ids.items()]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current_log_context() -> dict[str, int | str]:
    """The ids set in the current context, for handing work to a thread or another process."""
    return {name: value for name, var in _IDS.items() if (value := var.get()) is not None}


class _ContextId:
    """Reads an id captured when the record was made. It is a non-data descriptor, so an
    explicit `extra={"run_id": ...}` (stored in the instance dict) still wins, and logging's
    guard against overwriting record attributes never sees a clash."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, record: logging.LogRecord | None, owner: type) -> Any:
        if record is None:
            return self
        return record.__dict__.get("_log_context", {}).get(self.name)


class ContextLogRecord(logging.LogRecord):
    """A LogRecord that carries the context's ids and holds no secret in message or traceback.

    Redacting here, when the record is made, covers every handler: pytest's caplog and its
    failure report included, not only the handler configure_logging() installs."""

    delivery_id = _ContextId("delivery_id")
    run_id = _ContextId("run_id")
    installation_id = _ContextId("installation_id")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _prepare(self)


def _prepare(record: logging.LogRecord) -> None:
    record.__dict__["_log_context"] = current_log_context()
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format call is the handler's to report
        return
    cleaned = redact(message)
    if cleaned != message:
        record.msg, record.args = cleaned, ()
    if record.exc_info and not record.exc_text:
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def _ids(record: logging.LogRecord) -> dict[str, Any]:
    context = record.__dict__.get("_log_context")
    if context is None:  # a record made before configure_logging() or by another factory
        context = current_log_context()
    ids = {}
    for name in _IDS:
        value = record.__dict__.get(name, context.get(name))
        if value is not None:
            ids[name] = value
    return ids


def _printable(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_printable(key): _printable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_printable(item) for item in value]
    return value


def _clean(value: Any, depth: int = 0) -> Any:
    """A JSON-ready copy of an extra value with every string redacted."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact(value)
    if depth < 4 and isinstance(value, dict):
        return {str(key): _clean(item, depth + 1) for key, item in value.items()}
    if depth < 4 and isinstance(value, list | tuple | set | frozenset):
        return [_clean(item, depth + 1) for item in value]
    if isinstance(value, bytes):
        return redact(value.decode("utf-8", "replace"))
    try:
        return redact(str(value))
    except Exception:  # noqa: BLE001 - an object whose __str__ fails must not lose the line
        return f"<unprintable {type(value).__name__}>"


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + (
        f".{int(record.msecs):03d}Z"
    )


def _exception_text(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    if record.exc_info and not record.exc_text:
        record.exc_text = redact(formatter.formatException(record.exc_info))
    return record.exc_text or None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the ids, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
            **_ids(record),
        }
        exc = _exception_text(self, record)
        if exc:
            line["exc"] = redact(exc)
        if record.stack_info:
            line["stack"] = redact(record.stack_info)
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[f"extra.{key}" if key in _CORE else key] = _clean(value)
        try:
            return orjson.dumps(line).decode()
        except orjson.JSONEncodeError:
            # A string that is not UTF-8 (a header byte decoded as a lone surrogate): written
            # as its escape, so the line is kept and says what arrived.
            return orjson.dumps(_printable(line)).decode()


class TextFormatter(logging.Formatter):
    """Readable lines for a terminal: time, level, logger, message, then key=value pairs."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {**_ids(record)}
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                fields[key] = value
        pairs = "".join(f" {key}={value}" for key, value in fields.items())
        head = f"{_timestamp(record)} {record.levelname:<7} {record.name}:"
        text = f"{head} {record.getMessage()}{pairs}"
        exc = _exception_text(self, record)
        if exc:
            text += "\n" + exc
        if record.stack_info:
            text += "\n" + record.stack_info
        return redact(text)


class _Handler(logging.StreamHandler):
    """Writes to the given stream, or to whatever sys.stderr is at the time of writing (so a
    test runner that swaps sys.stderr never leaves it holding a closed file)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        logging.Handler.__init__(self)
        self._explicit = stream

    @property
    def stream(self) -> IO[str]:
        return self._explicit if self._explicit is not None else sys.stderr

    @stream.setter
    def stream(self, value: IO[str] | None) -> None:
        self._explicit = value


# The root level from before configure_logging(), for reset_logging() to put back.
_saved_levels: dict[str, int] = {}


def configure_logging(level: str = "info", fmt: str = "json", *,
                      stream: IO[str] | None = None) -> None:
    """Send every logger's records to stderr (or stream) as JSON or text lines; idempotent."""
    if level.lower() not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}")
    if logging.getLogRecordFactory() is logging.LogRecord:
        logging.setLogRecordFactory(ContextLogRecord)
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _Handler)), None)
    if handler is None:
        _saved_levels["root"] = root.level
        handler = _Handler(stream)
        root.addHandler(handler)
    else:
        handler.stream = stream
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.setLevel(LEVELS[level.lower()])
    for name in _BODY_LOGGERS:
        logging.getLogger(name).setLevel(max(LEVELS[level.lower()], logging.INFO))
    chatty = LEVELS[level.lower()]
    if chatty > logging.DEBUG:
        chatty = max(chatty, logging.WARNING)
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(chatty)
    # aiohttp's access log propagates to the root logger, so it takes the same formatter.
    logging.getLogger("aiohttp.access").propagate = True


def reset_logging() -> None:
    """Undo configure_logging(): remove its handler and restore the standard record factory."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(handler)
    if logging.getLogRecordFactory() is ContextLogRecord:
        logging.setLogRecordFactory(logging.LogRecord)
    root.setLevel(_saved_levels.pop("root", root.level))


class AccessLogger(AbstractAccessLogger):
    """aiohttp's access log as structured fields; pass it as `access_log_class`. It logs the
    path without the query string, and the GitHub delivery id when the request carries one."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        extra: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "status": response.status,
            "bytes": response.body_length,
            "duration_ms": round(time * 1000, 3),
            "remote": request.remote,
        }
        delivery = request.headers.get("X-GitHub-Delivery", "")
        if delivery and len(delivery) <= 100 and delivery.isprintable():
            extra["delivery_id"] = delivery
        self.logger.info("%s %s %s", request.method, request.path, response.status, extra=extra)
