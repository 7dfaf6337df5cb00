"""The redactor: masks credentials in any text before it leaves the process.

It knows key shapes (OpenAI ``sk-``/``sk-proj-``, Anthropic ``sk-ant-``,
Google ``AIza``, AWS ``AKIA``/``ASIA`` ids, JWTs, PEM private keys, a few other
vendors' prefixes), secret-bearing names in headers, JSON, query strings and
``key=value`` text (``authorization``, ``x-api-key``, ``api_key``,
``*_secret``, ``*token``, ``password``...), bearer tokens and URL passwords,
and masks any exact value it is told about (the configured provider keys), so
even a key of no known shape never leaves. Used by every log record
(``logs.RedactingFilter``) and by every error body sent to a client.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

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
        self.generation = 0  # bumped whenever what is masked changes (callers' own memos)
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
        self.generation += 1

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
