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

import base64
import json
import re
import string
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote

import orjson

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
# The auth schemes a value may start with; a scheme alone ("Authorization:
# Bearer <admin.token>" in our own messages) is not a credential.
_SCHEMES = frozenset(("bearer", "basic", "digest", "token", "aws4-hmac-sha256"))
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


def _forms(value: str) -> set[str]:
    """The ways ``value`` appears in text: as is, URL-encoded, JSON-escaped."""
    forms = {value, quote(value, safe=""), json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]}
    if "/" in value:  # JSON encoders that escape the solidus (PHP, some Java)
        forms.add(json.dumps(value, ensure_ascii=False)[1:-1].replace("/", "\\/"))
    return forms


# Characters that no form of ``_forms`` escapes: a run of them is in every form.
_UNESCAPED_RUN = re.compile(r"[A-Za-z0-9_.~-]+")
_ERROR_EVENT = b'"error"'
_SCREENS_MAX = 1024


class RelayScreen:
    """What every byte relayed from one upstream to a client passes.

    The usual piece (no error event, none of the upstream's credentials) is
    handed back as the same object after one C substring search per
    credential plus one for ``"error"``: each credential is looked for by
    its longest run of characters that no encoding escapes, which every form
    of it (raw, URL-encoded, JSON-escaped) contains. A hit, or an error event
    (upstreams quote keys in errors: "Incorrect API key provided: ..."), is
    masked by the redactor with everything it knows, as the non-stream path
    masks an error's message.
    """

    __slots__ = ("_redactor", "_anchors")

    def __init__(self, redactor: Redactor, secrets: Iterable[str]) -> None:
        self._redactor = redactor
        anchors: set[bytes] = set()
        for s in secrets:
            if not s or len(s) < MIN_SECRET_LEN:
                continue  # the redactor does not mask these either
            longest = max(_UNESCAPED_RUN.findall(s), key=len, default="")
            if len(longest) >= MIN_SECRET_LEN:
                anchors.add(longest.encode())
            else:  # mostly escaped characters: look for every form
                anchors.update(f.encode() for f in _forms(s))
        self._anchors = tuple(sorted(anchors, key=len))

    def hit(self, data: bytes) -> bool:
        """Could ``data`` hold one of the credentials?"""
        for a in self._anchors:
            if a in data:
                return True
        return False

    def _needs(self, event: bytes) -> bool:
        return _ERROR_EVENT in event or self.hit(event)

    def events(self, data: bytes) -> bytes:
        """Whole SSE events on their way to a client; ``data`` itself when none needed masking."""
        # ``hit`` inlined: this runs on every relayed piece of every stream.
        if _ERROR_EVENT in data:
            return self._redactor.mask_events(data, self._needs)
        for a in self._anchors:
            if a in data:
                return self._redactor.mask_events(data, self._needs)
        return data

    def body(self, data: bytes) -> bytes:
        """A (JSON) answer body on its way to a client; ``data`` itself when clean."""
        for a in self._anchors:
            if a in data:
                return self._redactor.mask_json(data)
        return data


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
        self._screens: dict[int, tuple[object, RelayScreen]] = {}
        self.generation = 0  # bumped whenever what is masked changes (callers' own memos)
        self.set_secrets(secrets)

    def set_secrets(self, values: Iterable[str]) -> None:
        """Exact values to mask wherever they appear (also URL- and JSON-escaped)."""
        out: set[str] = set()
        for v in values:
            if v and len(v) >= MIN_SECRET_LEN:
                out.update(_forms(v))
        self._secrets = tuple(sorted(out, key=len, reverse=True))
        self._cache = {}
        self._screens = {}
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

    def screen(self, secrets: Iterable[str]) -> RelayScreen:
        """The check for bytes relayed from an upstream that was sent ``secrets``."""
        return RelayScreen(self, secrets)

    def screen_for(self, provider: Any) -> RelayScreen:
        """``screen`` for a ``ProviderConfig``'s credentials (memoised per provider object).

        An upstream can only echo what it was sent, so the relay of one
        deployment looks for its own provider's credentials: usually one
        substring search a piece, whatever else the config holds."""
        hit = self._screens.get(id(provider))
        if hit is not None and hit[0] is provider:
            return hit[1]
        if len(self._screens) >= _SCREENS_MAX:
            self._screens = {}
        screen = self._screens[id(provider)] = (provider, RelayScreen(self, provider_secrets(provider)))
        return screen[1]

    def mask_events(self, data: bytes, needs: Callable[[bytes], bool]) -> bytes:
        """SSE events with every event for which ``needs`` is true masked as JSON (``mask_json``)."""
        events = data.split(b"\n\n")
        for i, event in enumerate(events):
            if event and needs(event):
                events[i] = b"\n".join(self._event_line(line) for line in event.split(b"\n"))
        return b"\n\n".join(events)

    def _event_line(self, line: bytes) -> bytes:
        if line.startswith(b"data:"):
            payload = line[5:]
            head = b"data: " if payload.startswith(b" ") else b"data:"
            return head + self.mask_json(payload.lstrip(b" "))
        return self.redact(line.decode("utf-8", "replace")).encode()

    def mask_json(self, data: bytes) -> bytes:
        """A JSON document with every string in it (keys too) through ``redact``,
        so it stays valid JSON; ``data`` itself when nothing was masked. Text
        that is not JSON is redacted as text."""
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            return self.redact(data.decode("utf-8", "replace")).encode()
        try:
            masked = self.redact_doc(doc)
        except RecursionError:  # absurdly deep: mask it as text
            return self.redact(data.decode("utf-8", "replace")).encode()
        return data if masked == doc else orjson.dumps(masked)

    def redact_doc(self, doc: Any) -> Any:
        """A copy of plain JSON-like data with every string (keys too) redacted."""
        if isinstance(doc, str):
            return self.redact(doc)
        if isinstance(doc, dict):
            return {(self.redact(k) if isinstance(k, str) else k): self.redact_doc(v) for k, v in doc.items()}
        if isinstance(doc, (list, tuple)):
            return [self.redact_doc(v) for v in doc]
        return doc

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
                            if group == "bare" and m.group(group).lower() in _SCHEMES:
                                pass  # a scheme with no token after it: ours, "Bearer <admin.token>"
                            elif group and m.end(group) > m.start(group):
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


_SECRETISH = re.compile(r"(secret|token|password|key|auth|credential)", re.IGNORECASE)
# userinfo: everything between the scheme and the last "@" of the authority
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<info>[^/?#]*)@")


def url_without_userinfo(url: str) -> str:
    """``url`` with any ``user:password@`` shown as ``[REDACTED]@`` (admin output, errors)."""
    # match(), not sub(): a search would retry the scheme at every offset,
    # quadratic in a long non-URL value (a config error quotes it).
    m = _USERINFO.match(url)
    return url if m is None else f"{m['scheme']}{MASK}@{url[m.end():]}"


def url_credentials(url: str) -> list[str]:
    """The secrets a ``user:password@`` in ``url`` puts on the wire and in text.

    aiohttp turns userinfo into ``Authorization: Basic base64(user:password)``
    (percent-decoded, latin-1 like ``aiohttp.BasicAuth``), so the base64 form
    is as much a credential as the password, raw or percent-encoded."""
    m = _USERINFO.match(url)
    if m is None:
        return []
    info = m["info"]
    user, _, password = info.partition(":")
    plain = f"{unquote(user)}:{unquote(password)}"
    try:
        raw = plain.encode("latin-1")
    except UnicodeEncodeError:
        raw = plain.encode()
    found = [info, plain, base64.b64encode(raw).decode()]
    if password:
        found += [password, unquote(password)]
    return found


def provider_secrets(provider: Any) -> list[str]:
    """Every credential a ``ProviderConfig`` sends or signs with: its key,
    secret-looking headers and options, ``base_url`` userinfo."""
    found: list[str] = []
    if provider.api_key:
        found.append(provider.api_key)
    for k, v in provider.headers.items():
        if _SECRETISH.search(k) and isinstance(v, str):
            found.append(v)
    for k, v in provider.options.items():
        if _SECRETISH.search(k) and isinstance(v, str):
            found.append(v)
    found.extend(url_credentials(provider.base_url))
    return found


def config_secrets(config: Any) -> list[str]:
    """Every credential in a ``Config``: provider keys, secret-looking options
    and headers, ``base_url`` userinfo, client keys, the admin token (feed to
    ``Redactor.set_secrets``)."""
    found: list[str] = []
    for p in config.providers.values():
        found.extend(provider_secrets(p))
    found.extend(config.server.api_keys)
    if config.admin.token:
        found.append(config.admin.token)
    tracing = getattr(config, "tracing", None)  # the proposed ``tracing:`` section
    if tracing is not None:
        found.extend(v for k, v in tracing.headers.items() if _SECRETISH.search(k))
    state = getattr(config, "state", None)
    if state is not None and state.redis:
        found.extend(url_credentials(state.redis))
    jwt = getattr(getattr(config, "auth", None), "jwt", None)
    if jwt is not None and jwt.jwks_url:
        found.extend(url_credentials(jwt.jwks_url))
    return found


# Keys whose value is a credential wherever they appear in a config file.
_RAW_SECRET_KEYS = frozenset(("api_key", "api_keys", "token", "aws_access_key_id", "aws_secret_access_key",
                              "aws_session_token", "key", "key_sha256"))
_RAW_SECRET_WORDS = re.compile(r"secret|password|passwd|credential", re.IGNORECASE)
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def secrets_in_raw_config(doc: Any, env: Mapping[str, str] | None = None) -> set[str]:
    """Every credential in a parsed but not (or not successfully) validated
    config document, as ``config_secrets`` finds them in a ``Config``.

    For a rejected reload, whose new values the redactor must mask too:
    values of secret keys (``api_key``, ``api_keys``, ``token``, the AWS
    keys, any ``*secret*`` / ``*password*`` / ``*credential*`` key), header
    values under secret-looking header names, ``base_url`` userinfo, at any
    depth. Values of any type are taken as text; ``${VAR}`` references are
    expanded from ``env`` when given (the value that would have been used).
    Pass the result to ``Redactor.set_secrets`` together with the active
    config's ``config_secrets``.
    """
    found: set[str] = set()

    def text(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            return None
        s = str(value)
        if env is not None and s.startswith("os.environ/"):  # LiteLLM's form of ${VAR}
            s = env.get(s[len("os.environ/"):], s)
        if env is not None and "${" in s:
            s = _ENV_REF.sub(lambda m: env.get(m[1], m[2] or ""), s)
        return s

    def add(value: Any) -> None:
        for v in value if isinstance(value, list) else [value]:
            s = text(v)
            if s:
                found.add(s)

    stack = [doc]
    seen: set[int] = set()
    # Iterative (a document can nest deeper than the recursion limit) and by
    # identity: YAML aliases make a document a DAG, or a cycle (``&a [*a]``).
    while stack:
        node = stack.pop()
        if not isinstance(node, (dict, list)) or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, list):
            stack.extend(node)
            continue
        for k, v in node.items():
            key = str(k)
            if key in _RAW_SECRET_KEYS or _RAW_SECRET_WORDS.search(key):
                add(v)
            elif key == "headers" and isinstance(v, dict):
                add([hv for hk, hv in v.items() if _SECRETISH.search(str(hk))])
            elif key in ("base_url", "redis", "jwks_url") and (url := text(v)):
                found.update(url_credentials(url))
            if isinstance(v, (dict, list)):
                stack.append(v)
    return found


# --------------------------------------------------------------------------- records
