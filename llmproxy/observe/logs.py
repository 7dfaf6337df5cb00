"""Structured logs: a redactor every record passes through, JSON or text lines,
and the per-request access line.

Invariants:
- ``setup_logging`` puts one handler first on the *root* logger with a
  ``RedactingFilter``, so every record (ours, aiohttp's, asyncio's) is
  formatted with its arguments, traceback and structured fields already
  masked, and any handler after it (pytest's capture included) sees the
  masked record too;
- prompts and completions reach a log only through ``AccessLog.log_body``,
  which does nothing unless ``log_bodies`` was turned on;
- ``AccessLog.log`` returns before building anything when its logger is not
  enabled for INFO;
- a text-format record is one line: control characters in any part of it
  (a percent-decoded ``%0A`` in a path, an upstream's message) are written
  as escapes, and the lines of a traceback after it are indented, so every
  line that starts at column 0 is a record of ours (no forged lines).

What the redactor masks is described in ``redact.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from typing import IO, Any

import orjson
from aiohttp import web

from .redact import MASK as MASK  # re-exported
from .redact import Redactor as Redactor
from .redact import config_secrets as config_secrets


class RedactingFilter(logging.Filter):
    """Formats a record's message now and masks it, its traceback, stack and fields.

    After this filter ``record.args`` is None and ``record.exc_info`` is None
    with the masked traceback in ``record.exc_text``, so no later formatter
    can render the unmasked originals.
    """

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        attrs = record.__dict__
        if "_redacted" in attrs:
            return True
        redact = self.redactor.redact
        msg = record.msg
        if record.args or msg.__class__ is not str:
            try:
                msg = record.getMessage()
            except (TypeError, ValueError):  # bad %-args: keep both parts, masked
                msg = f"{record.msg!r} {record.args!r}"
            record.args = None
        record.msg = redact(msg)
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self._formatter.formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        fields = attrs.get("fields")
        if fields:
            masked: dict[str, Any] | None = None
            for k, v in fields.items():
                if v.__class__ is str:
                    r = redact(v)
                    if r != v:
                        if masked is None:
                            masked = dict(fields)
                        masked[k] = r
            if masked is not None:
                record.fields = masked
        attrs["_redacted"] = True
        return True


_LEVEL_NAMES = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning",
                logging.ERROR: "error", logging.CRITICAL: "critical"}


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, then ``record.fields``,
    then ``exc`` / ``stack`` when present."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._prefix = ""
        self._prefix_bytes = b""

    def _ts(self, created: float) -> str:
        sec = int(created)
        if sec != self._second:
            self._second = sec
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec))
            self._prefix_bytes = self._prefix.encode()
        return f"{self._prefix}{int((created - sec) * 1000):03d}Z"

    def format_bytes(self, record: logging.LogRecord) -> bytes:
        """The line as UTF-8 bytes, without the newline (``LineHandler`` writes these)."""
        levelno = record.levelno
        doc: dict[str, Any] = {
            "ts": self._ts(record.created),
            "level": _LEVEL_NAMES[levelno] if levelno in _LEVEL_NAMES else record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = record.__dict__.get("fields")
        if fields:
            doc.update(fields)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = record.stack_info
        try:
            return orjson.dumps(doc, default=str)
        except TypeError:  # e.g. an int beyond 64 bits, or non-str keys in fields
            return orjson.dumps({str(k): _json_safe(v) for k, v in doc.items()})

    def format(self, record: logging.LogRecord) -> str:
        return self.format_bytes(record).decode()


def _json_safe(value: object) -> object:
    """``value`` if orjson can write it as is, else its ``str``."""
    if value is None or isinstance(value, (str, float, bool)):
        return value
    if isinstance(value, int) and -(2**63) <= value < 2**64:
        return value
    return str(value)


Render = Callable[..., bytes]


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A ``StreamHandler`` for ``JSONFormatter`` lines, written as bytes to the
    stream's binary buffer when it has one (no decode/encode round trip).

    On the event loop's thread, DEBUG and INFO lines are coalesced and written
    once per loop iteration (a write syscall per access line costs more than
    the rest of the line under load); WARNING and above, lines from other
    threads and ``flush()`` / ``close()`` (``logging.shutdown`` at exit) write
    everything out at once, in order.

    A caller may also queue a line as a renderer and its arguments
    (``write_deferred``): it is rendered when the batch is written, with the
    rest of the batch, in order. Under load a loop iteration finishes about a
    dozen requests; rendering their access lines in one go keeps that code and
    its data hot (about 7 µs a line instead of 12 in a loaded proxy).
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__(stream)
        self._pending: list[bytes | tuple[Render, tuple[Any, ...]]] = []
        self._drain_loop: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:
        fmt = self.formatter
        if not isinstance(fmt, JSONFormatter):
            self.flush()
            super().emit(record)
            return
        try:
            self.write_line(fmt.format_bytes(record), urgent=record.levelno >= logging.WARNING)
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - logging's contract (as StreamHandler): handleError, never raise
            self.handleError(record)

    def write_line(self, line: bytes, *, urgent: bool = False) -> None:
        """Queue one line (without its newline); called with the handler's lock held."""
        self._queue(line, urgent)

    def write_deferred(self, render: Render, args: tuple[Any, ...]) -> None:
        """Queue the INFO line ``render(*args)`` (bytes, no newline, must not
        raise) to be rendered when the batch is written."""
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            self._queue((render, args), False)

    def _queue(self, item: bytes | tuple[Render, tuple[Any, ...]], urgent: bool) -> None:
        self._pending.append(item)
        if not urgent:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                if self._drain_loop is not loop:
                    self._drain_loop = loop
                    loop.call_soon(self._drain)
                return
        self._write_pending()

    def _drain(self) -> None:
        self.acquire()
        try:
            self._drain_loop = None
            self._write_pending()
        except Exception:  # noqa: BLE001 - as emit: never raise out of logging
            self.handleError(logging.makeLogRecord({"msg": "cannot write log lines"}))
        finally:
            self.release()

    def _write_pending(self) -> None:
        pending = self._pending
        if not pending:
            return
        self._pending = []
        for i, item in enumerate(pending):
            if item.__class__ is tuple:
                render, args = item
                try:
                    pending[i] = render(*args)
                except Exception:  # noqa: BLE001 - one bad line must not take the batch with it
                    pending[i] = b'{"level":"error","logger":"llmproxy.logs","msg":"a log line could not be rendered"}'
        pending.append(b"")
        data = b"\n".join(pending)  # type: ignore[arg-type]  # every item is bytes now
        stream = self.stream
        buffer = getattr(stream, "buffer", None)
        if buffer is None:  # a text-only stream (StringIO)
            stream.write(data.decode())
            stream.flush()
            return
        stream.flush()  # whatever the text layer holds goes first
        buffer.write(data)
        buffer.flush()

    def flush(self) -> None:
        self.acquire()
        try:
            if self._pending:
                self._write_pending()
            super().flush()
        finally:
            self.release()


def _direct_handler(logger: logging.Logger) -> LineHandler | None:
    """The handler when ``logger``'s records would reach exactly one handler,
    ours (JSON, redacting, nothing else filtering on the way); else None.
    Its one filter is then a ``RedactingFilter``."""
    root = logging.root
    handlers = root.handlers
    if len(handlers) != 1 or root.filters or root.manager.disable >= logging.INFO:
        return None
    h = handlers[0]
    if h.__class__ is not LineHandler or len(h.filters) != 1 or h.level > logging.INFO:
        return None
    if not isinstance(h.formatter, JSONFormatter) or not isinstance(h.filters[0], RedactingFilter):
        return None
    node: logging.Logger | None = logger
    while node is not None and node is not root:
        if node.handlers or node.filters or (not node.propagate and node is not root):
            return None
        node = node.parent
    return h


# C0 and C1 controls, DEL and the Unicode line/paragraph separators: anything
# a terminal or a log shipper may take for a line break or a cursor move.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _control_escape(m: re.Match[str]) -> str:
    c = m.group()
    return _CONTROL_ESCAPES.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def escape_controls(text: str) -> str:
    """``text`` with every control character written as an escape (``\\n``, ``\\x1b``)."""
    if _CONTROL.search(text) is None:
        return text
    return _CONTROL.sub(_control_escape, text)


def _continuation(text: str) -> str:
    """A traceback or stack under its record: each line indented and escaped."""
    return "\n".join("  " + escape_controls(line) for line in text.split("\n"))


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...`` for a terminal, one line a
    record (control characters escaped), a traceback indented under it."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._second = -1
        self._prefix = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        sec = int(record.created)
        if sec != self._second:  # strftime once a second, not once a line
            self._second = sec
            self._prefix = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(sec))
        return f"{self._prefix},{int(record.msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line = f"{line}\n{_continuation(record.exc_text)}"
        if record.stack_info:
            line = f"{line}\n{_continuation(self.formatStack(record.stack_info))}"
        return line

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = record.__dict__.get("fields")
        if not fields:
            return escape_controls(line)
        parts = [line]
        for k, v in fields.items():
            if v is None:
                continue
            if isinstance(v, bool):
                v = "true" if v else "false"
            elif isinstance(v, str) and (not v or any(c in v for c in ' "=\\') or _CONTROL.search(v)):
                v = orjson.dumps(v).decode()
            parts.append(f"{k}={v}")
        return escape_controls(" ".join(parts))


# Third-party loggers that are chatty at INFO; ``levels`` can override.
QUIET_LOGGERS: Mapping[str, int] = {"watchfiles": logging.WARNING}


def parse_level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.strip().upper())
    if not isinstance(value, int):
        raise ValueError(f"unknown log level {level!r}; use debug, info, warning or error")  # noqa: TRY004
    return value


def setup_logging(
    level: str | int,
    fmt: str,
    redactor: Redactor,
    *,
    stream: IO[str] | None = None,
    levels: Mapping[str, str | int] | None = None,
    exclusive: bool = False,
) -> logging.Handler:
    """Install (or replace) llmproxy's handler first on the root logger.

    Idempotent: handlers an earlier call installed are removed; handlers that
    others added (pytest's) stay, after ours, unless ``exclusive`` (the CLI:
    its start-up ``basicConfig`` handler goes). ``levels`` sets per-logger
    levels such as ``{"llmproxy.access": "warning"}``.
    """
    if fmt not in ("json", "text"):
        raise ValueError(f"unknown log format {fmt!r}; use json or text")
    root = logging.getLogger()
    for h in [h for h in root.handlers if exclusive or getattr(h, "_llmproxy", False)]:
        root.removeHandler(h)
    handler = LineHandler(stream if stream is not None else sys.stderr)
    handler._llmproxy = True  # type: ignore[attr-defined]
    handler.addFilter(RedactingFilter(redactor))
    handler.setFormatter(JSONFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.handlers.remove(handler)
    root.handlers.insert(0, handler)
    root.setLevel(parse_level(level))
    for name, lvl in {**QUIET_LOGGERS, **(levels or {})}.items():
        logging.getLogger(name).setLevel(parse_level(lvl))
    return handler


# --------------------------------------------------------------------------- access log


_NULL = b"null"
_FRAGMENTS_MAX = 1024  # (method, path, model, deployment) combinations kept pre-rendered


def _json_int(value: object) -> bytes:
    if value is None:
        return _NULL
    if value.__class__ is int:
        return b"%d" % value
    return orjson.dumps(value, default=str)


def _access_fields(
    request_id: str, method: str, path: str, model: str | None, deployment: str | None, status: int,
    duration_ms: float, ttft_ms: float | None, prompt_tokens: int | None, completion_tokens: int | None,
    retries: int, stream: bool, error: str | None, key: str | None = None, cache: str | None = None,
) -> dict[str, Any]:
    fields = {
        "request_id": request_id, "method": method, "path": path, "model": model,
        "deployment": deployment, "key": key, "status": status, "duration_ms": _ms(duration_ms), "ttft_ms": _ms(ttft_ms),
        "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
        "retries": retries, "stream": stream, "error": error,
    }
    if cache is not None:  # only with the response cache on: hit, miss, bypass
        fields["cache"] = cache
    return fields


def _ms(value: object) -> object:
    return round(value, 3) if isinstance(value, float) else value  # anything else is the formatter's problem


class AccessLog:
    """One INFO line per request on ``llmproxy.access``, fields in ``record.fields``.

    Used from the event loop's thread only. When the line would reach only
    our own handler (the CLI's set-up: one redacting JSON handler on the
    root logger), no ``LogRecord`` is built: the fields are queued on the
    handler and rendered straight to bytes with the rest of the loop
    iteration's lines (``LineHandler.write_deferred``), the strings masked
    by that handler's redactor. The parts that repeat (method, path, model,
    deployment) are rendered once per combination. Otherwise (other handlers, text
    format, pytest's capture) a record goes through ``logging`` as usual;
    ``LogRecord()`` spends about 3 µs on caller, thread and process facts
    that are the same for every access line, so one real record is made per
    process and each line is a copy with its own time and fields.
    """

    __slots__ = ("_body_logger", "_fragments", "_fragments_for", "_fragments_gen", "_logger", "_pid", "_template",
                 "enabled", "log_bodies")

    def __init__(self, *, enabled: bool = True, log_bodies: bool = False) -> None:
        self.enabled = enabled
        self.log_bodies = log_bodies
        self._logger = logging.getLogger("llmproxy.access")
        self._body_logger = logging.getLogger("llmproxy.body")
        self._template: tuple[type[logging.LogRecord], dict[str, Any], float] | None = None
        self._pid = -1
        self._fragments: dict[tuple[str, str, str | None, str | None, str | None], bytes] = {}
        self._fragments_for: Redactor | None = None  # the redactor that masked them,
        self._fragments_gen = -1  # at this generation of its secrets

    def _record(self, now: float) -> logging.LogRecord:
        if self._template is None or self._pid != os.getpid():
            first = logging.getLogRecordFactory()(self._logger.name, logging.INFO, "", 0, "request", None, None)
            attrs = dict(first.__dict__)
            attrs.pop("taskName", None)  # 3.12+: the task that happened to log first
            self._template = (type(first), attrs, first.created - first.relativeCreated / 1000.0)
            self._pid = os.getpid()
        cls, attrs, start = self._template
        record = cls.__new__(cls)
        record.__dict__.update(attrs)
        record.created = now
        record.msecs = (now - int(now)) * 1000.0
        record.relativeCreated = (now - start) * 1000.0
        return record

    def active(self) -> bool:
        """Would ``log`` write anything? (Callers skip gathering its arguments.)"""
        return self.enabled and self._logger.isEnabledFor(logging.INFO)

    def log(
        self,
        *,
        request_id: str,
        method: str,
        path: str,
        model: str | None,
        deployment: str | None,
        status: int,
        duration_ms: float,
        ttft_ms: float | None,
        prompt_tokens: int | None,
        completion_tokens: int | None,
        retries: int,
        stream: bool,
        error: str | None = None,
        key: str | None = None, cache: str | None = None,
    ) -> None:
        self.write(request_id, method, path, model, deployment, status, duration_ms, ttft_ms, prompt_tokens,
                   completion_tokens, retries, stream, error, key, cache)

    def write(
        self, request_id: str, method: str, path: str, model: str | None, deployment: str | None, status: int,
        duration_ms: float, ttft_ms: float | None, prompt_tokens: int | None, completion_tokens: int | None,
        retries: int, stream: bool, error: str | None, key: str | None = None, cache: str | None = None,
    ) -> None:
        """``log`` with positional arguments (the per-request call); ``key``: the caller's key name."""
        logger = self._logger
        if not self.enabled or not logger.isEnabledFor(logging.INFO):
            return
        direct = _direct_handler(logger)
        if direct is not None:
            # Only our handler would see the record: no record, the line is
            # rendered with the rest of this loop iteration's lines.
            direct.write_deferred(self._render, (
                direct, time.time(), request_id, method, path, model, deployment, status, duration_ms, ttft_ms,
                prompt_tokens, completion_tokens, retries, stream, error, key, cache))
            return
        record = self._record(time.time())
        record.fields = _access_fields(request_id, method, path, model, deployment, status, duration_ms, ttft_ms,
                                       prompt_tokens, completion_tokens, retries, stream, error, key, cache)
        logger.handle(record)

    def _render(
        self, handler: LineHandler, now: float, request_id: str, method: str, path: str, model: str | None,
        deployment: str | None, status: int, duration_ms: float, ttft_ms: float | None,
        prompt_tokens: int | None, completion_tokens: int | None, retries: int, stream: bool, error: str | None,
        key: str | None = None, cache: str | None = None,
    ) -> bytes:
        """The JSON line the record path would write (same keys, same order, same masking)."""
        redactor: Redactor = handler.filters[0].redactor  # type: ignore[union-attr]
        fmt: JSONFormatter = handler.formatter  # type: ignore[assignment]
        try:
            return self._line(redactor, fmt, now, request_id, method, path, model, deployment, status,
                              duration_ms, ttft_ms, prompt_tokens, completion_tokens, retries, stream, error, key, cache)
        except (TypeError, ValueError, OverflowError):  # an argument of an unexpected type
            record = self._record(now)
            record.fields = _access_fields(request_id, method, path, model, deployment, status, duration_ms,
                                           ttft_ms, prompt_tokens, completion_tokens, retries, stream, error, key, cache)
            handler.filters[0].filter(record)  # type: ignore[union-attr]  # the RedactingFilter (_direct_handler checked)
            return fmt.format_bytes(record)

    def _line(
        self, redactor: Redactor, fmt: JSONFormatter, now: float, request_id: str, method: str, path: str,
        model: str | None, deployment: str | None, status: int, duration_ms: float, ttft_ms: float | None,
        prompt_tokens: int | None, completion_tokens: int | None, retries: int, stream: bool, error: str | None,
        key_name: str | None = None, cache: str | None = None,
    ) -> bytes:
        redact = redactor.redact
        key = (method, path, model, deployment, key_name)
        middle = self._fragments.get(key)
        if middle is None or redactor is not self._fragments_for or redactor.generation != self._fragments_gen:
            middle = self._fragment(redactor, key)
        sec = int(now)
        if sec != fmt._second:
            fmt._ts(now)  # a new second: its prefix
        return b'{"ts":"%b%03dZ","level":"info","logger":"llmproxy.access","msg":"request","request_id":%b,%b' \
               b'"status":%d,"duration_ms":%.3f,"ttft_ms":%b,"prompt_tokens":%b,"completion_tokens":%b,' \
               b'"retries":%d,"stream":%b,"error":%b%b}' % (
                   fmt._prefix_bytes, int((now - sec) * 1000), orjson.dumps(redact(request_id)), middle, status,
                   duration_ms, _NULL if ttft_ms is None else b"%.3f" % ttft_ms,
                   b"%d" % prompt_tokens if prompt_tokens.__class__ is int else _json_int(prompt_tokens),
                   b"%d" % completion_tokens if completion_tokens.__class__ is int else _json_int(completion_tokens),
                   retries, b"true" if stream else b"false",
                   _NULL if error is None else orjson.dumps(redact(error)),
                   b"" if cache is None else b',"cache":"' + cache.encode() + b'"',  # one of keying.RESULTS
               )

    def _fragment(self, redactor: Redactor, key: tuple[str, str, str | None, str | None, str | None]) -> bytes:
        if (redactor is not self._fragments_for or redactor.generation != self._fragments_gen
                or len(self._fragments) >= _FRAGMENTS_MAX):
            self._fragments.clear()  # new secrets to mask, or a client inventing paths: start over
            self._fragments_for, self._fragments_gen = redactor, redactor.generation
        method, path, model, deployment, key_name = (None if v is None else redactor.redact(v) for v in key)
        frag = b'"method":%b,"path":%b,"model":%b,"deployment":%b,"key":%b,' % (
            orjson.dumps(method), orjson.dumps(path), orjson.dumps(model), orjson.dumps(deployment),
            orjson.dumps(key_name))
        self._fragments[key] = frag
        return frag

    def log_body(self, request_id: str, kind: str, text: str) -> None:
        """A prompt or completion (``kind``): logged only with ``log_bodies`` on."""
        logger = self._body_logger
        if not self.log_bodies or not logger.isEnabledFor(logging.INFO):
            return
        record = logging.getLogRecordFactory()(logger.name, logging.INFO, "", 0, "body", None, None)
        record.fields = {"request_id": request_id, "kind": kind, "body": text}
        logger.handle(record)


ACCESS_LOG = web.AppKey("llmproxy.access_log", AccessLog)
REDACTOR = web.AppKey("llmproxy.redactor", Redactor)
