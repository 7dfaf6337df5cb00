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
  enabled for INFO.

The redactor knows key shapes (OpenAI ``sk-``/``sk-proj-``, Anthropic
``sk-ant-``, Google ``AIza``, AWS ``AKIA``/``ASIA`` ids, JWTs, PEM private
keys, a few other vendors' prefixes), secret-bearing names in headers, JSON,
query strings and ``key=value`` text (``authorization``, ``x-api-key``,
``api_key``, ``*_secret``, ``*token``, ``password``...), bearer tokens and
URL passwords, and masks any exact value it is told about (the configured
provider keys), so even a key of no known shape never leaves.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import string
import sys
import time
from collections.abc import Iterable, Mapping
from typing import IO, Any
from urllib.parse import quote

import orjson
from aiohttp import web

MASK = "[REDACTED]"
MIN_SECRET_LEN = 8  # shorter exact values would mask ordinary words
_CACHE_MAX, _CACHE_LEN = 4096, 256  # memoised short strings (model names, paths, ids)

# Secret-bearing names are found by their last word (a literal search in the
# lower-cased text), then checked whole: ``max_tokens`` or ``keyboard`` are
# not secrets, ``api_key``, ``x-goog-api-key``, ``SecretAccessKey`` are.
_NAME_WORDS = ("key", "secret", "token", "passw", "credential", "auth", "cookie")
_NAME_OK = re.compile(
    r"(?:proxy-)?authorization|auth|(?:set-)?cookie"
    r"|[\w-]*(?:api[-_]?key|access[-_]?key|secret[-_]?key|private[-_]?key|subscription[-_]?key"
    r"|secrets?|token|password|passwd|credentials?)"
)
_NAME_HEAD = re.compile(r"[\w-]*")
# What follows a secret name: ``: v``, ``=v``, ``": "v"``, ``', 'v'`` (a
# tuple), ``=b'v'`` (bytes repr); the value quoted, or an optional auth scheme
# and one bare token. A bare value cannot start with "[", so an already
# masked value is left alone.
_VALUE = re.compile(
    r"""(?:["']?[ \t]*[:=][ \t]*|["'][ \t]*,[ \t]*)(?:b(?=["']))?"""
    r"""(?:"(?P<dq>(?:\\.|[^"\\\r\n])*)"|'(?P<sq>(?:\\.|[^'\\\r\n])*)'"""
    r"""|(?:(?i:bearer|basic|digest|token|aws4-hmac-sha256)[ \t]+)?(?P<bare>[^\s,;&"'<>(){}\[\]]+))"""
)
_AWS_SECRET_WS = re.compile(r"""["']?\s+["']?(?P<bare>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])""")
# On the lower-cased text (same indices).
_BEARER = re.compile(r"bearer\s+(?P<v>[a-z0-9._~+/=-]{8,})")
_QUERY = re.compile(r"""[?&;](?:key|sig|signature|x-amz-signature)=(?P<v>[^&#\s"'<>]+)""")
# Key shapes, case-sensitive, each behind a literal prefix that a plain
# substring test checks first. A match glued to a letter or digit (``task-...``)
# is not a key.
_TOKENS = tuple(
    (prefix, re.compile(re.escape(prefix) + tail))
    for prefix, tail in (
        ("sk-", r"[\w-]{12,}"),  # OpenAI sk-, sk-proj-, sk-svcacct-; Anthropic sk-ant-
        ("AIza", r"[\w-]{30,}"),  # Google API keys (35 after the prefix)
        ("AKIA", r"[0-9A-Z]{16}(?![0-9A-Z])"),  # AWS access key ids
        ("ASIA", r"[0-9A-Z]{16}(?![0-9A-Z])"),  # AWS temporary access key ids
        ("ABSK", r"[A-Za-z0-9+/=]{32,}"),  # Amazon Bedrock API keys
        ("eyJ", r"[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,}"),  # JWTs
        ("-----BEGIN", r"[A-Z ]*PRIVATE KEY-----[\s\S]*?-----END[A-Z ]*PRIVATE KEY-----"),
        ("gsk_", r"[\w-]{16,}"), ("xai-", r"[\w-]{16,}"), ("hf_", r"[\w-]{16,}"),
        ("ghp_", r"[\w-]{16,}"), ("gho_", r"[\w-]{16,}"), ("ghs_", r"[\w-]{16,}"),
        ("github_pat_", r"[\w-]{16,}"), ("glpat-", r"[\w-]{16,}"), ("sk_live_", r"[\w-]{16,}"),
        ("rk_live_", r"[\w-]{16,}"), ("xoxb-", r"[\w-]{16,}"), ("xoxp-", r"[\w-]{16,}"),
    )
)
_URL_PASSWORD = re.compile(r"://[^/\s:@]*:(?P<v>[^/\s@]+)@")
_EMAIL_LOCAL = re.compile(r"[\w.%+-]+\Z")
_EMAIL_DOMAIN = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])")
_CARD = re.compile(r"\d(?:[ -]?\d){12,18}")
# Every shape above needs one of these characters (a separator, "@", or a
# character of a key prefix); text without any skips the scanners.
_SCREEN = re.compile(r"[:=,\s@_AJ-]")  # A: AIza AKIA ASIA ABSK, J: eyJ
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)

Span = tuple[int, int, str]


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _name_char(c: str) -> bool:
    return c.isalnum() or c == "_" or c == "-"


def _glued(text: str, start: int) -> bool:
    return start > 0 and text[start - 1].isalnum()


class Redactor:
    """Masks secrets in text.

    ``redact`` is pure apart from a memo of short strings; ``set_secrets``
    swaps one tuple (and drops the memo), so a reload can update it live.
    """

    def __init__(self, *, emails: bool = False, cards: bool = False, secrets: Iterable[str] = ()) -> None:
        self.emails = emails
        self.cards = cards
        self._secrets: tuple[str, ...] = ()
        self._cache: dict[str, str] = {}
        self.set_secrets(secrets)

    def set_secrets(self, values: Iterable[str]) -> None:
        """Exact values to mask wherever they appear (also URL- and JSON-escaped)."""
        out: set[str] = set()
        for v in values:
            if not v or len(v) < MIN_SECRET_LEN:
                continue
            out.add(v)
            out.add(quote(v, safe=""))
            out.add(json.dumps(v)[1:-1])
        self._secrets = tuple(sorted(out, key=len, reverse=True))
        self._cache = {}

    def redact(self, text: str) -> str:
        if len(text) > _CACHE_LEN:
            return self._redact(text)
        cache = self._cache
        out = cache.get(text)
        if out is None:
            if _SCREEN.search(text) is None and not self.cards:
                return self._exact(text)  # no shape can match (e.g. a request id): not worth a memo slot
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            out = cache[text] = self._redact(text)
        return out

    def _exact(self, text: str) -> str:
        for s in self._secrets:
            if s in text:
                text = text.replace(s, MASK)
        return text

    def _redact(self, text: str) -> str:
        text = self._exact(text)
        spans: list[Span] = []
        if _SCREEN.search(text) is not None:
            self._shapes(text, spans)
        if self.cards:
            self._card(text, spans)
        return _apply(text, spans) if spans else text

    def _shapes(self, text: str, spans: list[Span]) -> None:
        low = text.lower() if text.isascii() else text.translate(_ASCII_LOWER)
        self._named(text, low, spans)
        if "bearer" in low:
            spans.extend((m.start("v"), m.end("v"), MASK) for m in _BEARER.finditer(low))
        if "key=" in low or "sig" in low:
            spans.extend((m.start("v"), m.end("v"), MASK) for m in _QUERY.finditer(low))
        for prefix, rx in _TOKENS:
            if prefix in text:
                spans.extend((m.start(), m.end(), MASK) for m in rx.finditer(text) if not _glued(text, m.start()))
        if "://" in text:
            spans.extend((m.start("v"), m.end("v"), MASK) for m in _URL_PASSWORD.finditer(text))
        if self.emails and "@" in text:
            self._email(text, spans)

    @staticmethod
    def _named(text: str, low: str, spans: list[Span]) -> None:
        seen: set[int] = set()
        for word in _NAME_WORDS:
            i = low.find(word)
            while i >= 0:
                end = i + len(word)
                head = _NAME_HEAD.match(low, end)  # always matches (possibly empty)
                if head is not None:
                    end = head.end()
                start = i
                while start > 0 and i - start < 64 and _name_char(low[start - 1]):
                    start -= 1
                if start not in seen:
                    seen.add(start)
                    if _NAME_OK.fullmatch(low, start, end):
                        m = _VALUE.match(text, end)
                        if m is None and "secret" in low[start:end]:
                            m = _AWS_SECRET_WS.match(text, end)
                        if m is not None:
                            group = m.lastgroup  # dq, sq or bare
                            if group and m.end(group) > m.start(group):
                                spans.append((m.start(group), m.end(group), MASK))
                i = low.find(word, end)

    @staticmethod
    def _email(text: str, spans: list[Span]) -> None:
        at = text.find("@")
        while at >= 0:
            local = _EMAIL_LOCAL.search(text, max(0, at - 64), at)
            domain = _EMAIL_DOMAIN.match(text, at + 1)
            if local is not None and local.start() < at and domain is not None:
                spans.append((local.start(), domain.end(), MASK))
            at = text.find("@", at + 1)

    @staticmethod
    def _card(text: str, spans: list[Span]) -> None:
        for m in _CARD.finditer(text):
            s, e = m.start(), m.end()
            if (s and text[s - 1] in "0123456789-") or (e < len(text) and text[e].isdigit()):
                continue
            if _luhn(m.group().replace(" ", "").replace("-", "")):
                spans.append((s, e, MASK))


def _apply(text: str, spans: list[Span]) -> str:
    """Replace spans; overlapping spans merge into one mask."""
    spans.sort()
    out: list[str] = []
    pos = 0
    for s, e, rep in spans:
        if s < pos:  # overlaps the previous span: widen it
            pos = max(pos, e)
            continue
        out.append(text[pos:s])
        out.append(rep)
        pos = e
    out.append(text[pos:])
    return "".join(out)


def config_secrets(config: Any) -> list[str]:
    """Every credential in a ``Config``: provider keys, secret-looking options
    and headers, client keys, the admin token (feed to ``Redactor.set_secrets``)."""
    found: list[str] = []
    secretish = re.compile(r"(secret|token|password|key|auth|credential)", re.IGNORECASE)
    for p in config.providers.values():
        if p.api_key:
            found.append(p.api_key)
        for k, v in p.headers.items():
            if secretish.search(k) and isinstance(v, str):
                found.append(v)
        for k, v in p.options.items():
            if secretish.search(k) and isinstance(v, str):
                found.append(v)
    found.extend(config.server.api_keys)
    if config.admin.token:
        found.append(config.admin.token)
    tracing = getattr(config, "tracing", None)  # the proposed ``tracing:`` section
    if tracing is not None:
        found.extend(v for k, v in tracing.headers.items() if secretish.search(k))
    return found


# --------------------------------------------------------------------------- records


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

    def _ts(self, created: float) -> str:
        sec = int(created)
        if sec != self._second:
            self._second = sec
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec))
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
            return orjson.dumps({str(k): v if isinstance(v, (str, float, bool)) or v is None else str(v)
                                 for k, v in doc.items()})

    def format(self, record: logging.LogRecord) -> str:
        return self.format_bytes(record).decode()


class LineHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A ``StreamHandler`` for ``JSONFormatter`` lines, written as bytes to the
    stream's binary buffer when it has one (no decode/encode round trip).

    On the event loop's thread, DEBUG and INFO lines are coalesced and written
    once per loop iteration (a write syscall per access line costs more than
    the rest of the line under load); WARNING and above, lines from other
    threads and ``flush()`` / ``close()`` write everything out at once, in order.
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__(stream)
        self._pending = bytearray()
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
        pending = self._pending
        pending += line
        pending += b"\n"
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
        if not self._pending:
            return
        data = bytes(self._pending)
        self._pending.clear()
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

    def emit_fields(self, logger: str, msg: str, fields: dict[str, Any], redact_keys: tuple[str, ...]) -> None:
        """An INFO line straight from structured fields, for ``AccessLog``'s
        direct path: the same redactor (this handler's filter) masks every
        string in ``redact_keys``; the same JSON shape as ``JSONFormatter``."""
        fmt = self.formatter
        assert isinstance(fmt, JSONFormatter)
        redactor = _handler_redactor(self)
        for key in redact_keys:
            value = fields[key]
            if value.__class__ is str:
                fields[key] = redactor.redact(value)
        doc = {"ts": fmt._ts(time.time()), "level": "info", "logger": logger, "msg": msg}
        doc.update(fields)
        line = orjson.dumps(doc, default=str)
        self.acquire()
        try:
            self.write_line(line)
        finally:
            self.release()


def _handler_redactor(handler: logging.Handler) -> Redactor:
    for f in handler.filters:
        if isinstance(f, RedactingFilter):
            return f.redactor
    raise LookupError("handler has no RedactingFilter")


def _direct_handler(logger: logging.Logger) -> LineHandler | None:
    """The handler when ``logger``'s records would reach exactly one handler,
    ours (JSON, redacting, nothing else filtering on the way); else None."""
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


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...`` for a terminal."""

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

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = record.__dict__.get("fields")
        if not fields:
            return line
        parts = [line]
        for k, v in fields.items():
            if v is None:
                continue
            if isinstance(v, bool):
                v = "true" if v else "false"
            elif isinstance(v, str) and (not v or any(c in v for c in ' "=\\')):
                v = orjson.dumps(v).decode()
            parts.append(f"{k}={v}")
        return " ".join(parts)


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


_ACCESS_STRINGS = ("request_id", "method", "path", "model", "deployment", "error")


class AccessLog:
    """One INFO record per request on ``llmproxy.access``, fields in ``record.fields``.

    Used from the event loop's thread only. ``LogRecord()`` spends about 3 µs
    on caller, thread and process facts that are the same for every access
    line, so a real record (from the current record factory) is made once per
    process and each line is a copy of it with its own time and fields.
    """

    __slots__ = ("_body_logger", "_logger", "_pid", "_template", "enabled", "log_bodies")

    def __init__(self, *, enabled: bool = True, log_bodies: bool = False) -> None:
        self.enabled = enabled
        self.log_bodies = log_bodies
        self._logger = logging.getLogger("llmproxy.access")
        self._body_logger = logging.getLogger("llmproxy.body")
        self._template: tuple[type[logging.LogRecord], dict[str, Any], float] | None = None
        self._pid = -1

    def _record(self) -> logging.LogRecord:
        if self._template is None or self._pid != os.getpid():
            first = logging.getLogRecordFactory()(self._logger.name, logging.INFO, "", 0, "request", None, None)
            attrs = dict(first.__dict__)
            attrs.pop("taskName", None)  # 3.12+: the task that happened to log first
            self._template = (type(first), attrs, first.created - first.relativeCreated / 1000.0)
            self._pid = os.getpid()
        cls, attrs, start = self._template
        record = cls.__new__(cls)
        record.__dict__.update(attrs)
        now = time.time()
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
    ) -> None:
        logger = self._logger
        if not self.enabled or not logger.isEnabledFor(logging.INFO):
            return
        fields = {
            "request_id": request_id, "method": method, "path": path, "model": model,
            "deployment": deployment, "status": status, "duration_ms": round(duration_ms, 3),
            "ttft_ms": None if ttft_ms is None else round(ttft_ms, 3),
            "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "retries": retries, "stream": stream, "error": error,
        }
        direct = _direct_handler(logger)
        if direct is not None:
            # Only our handler would see the record: skip building it (same line, same masking).
            direct.emit_fields(logger.name, "request", fields, _ACCESS_STRINGS)
            return
        record = self._record()
        record.fields = fields
        logger.handle(record)

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
