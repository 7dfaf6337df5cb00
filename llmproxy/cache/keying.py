"""What a cache entry is keyed by, and what a request asks of the cache.

The key is a SHA-256 over the request body in a canonical form (keys sorted
at every level, no whitespace; ``orjson.OPT_SORT_KEYS``) without the fields
that change how an answer is delivered or attributed but not what it says
(``stream``, ``stream_options``, ``user``, ``metadata``), plus the ingress
format, the public model and the scope (whose cache it is). Two requests
with the same key get the same answer.

The header names and values live here, once.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from ..config.tree import ServerConfig
from ..keys.caller import CALLER

# The response header on every answer of a cacheable endpoint, and the request
# header that asks for a bypass (as ``Cache-Control: no-cache`` does).
CACHE_HEADER = "x-llmproxy-cache"
HIT, MISS, BYPASS = "hit", "miss", "bypass"
RESULTS = (HIT, MISS, BYPASS)

# Fields that do not change what the answer says (how it is delivered, whom it is billed to).
_UNKEYED = frozenset({"stream", "stream_options", "user", "metadata"})

# The ingress formats (what a stored answer's bytes are written in).
CHAT, MESSAGES, RESPONSES, EMBEDDINGS = "chat", "messages", "responses", "embeddings"


def cache_key(fmt: str, model: str, scope: str, body: Mapping[str, Any]) -> str:
    """The entry's key: the model's tag (a shared store flushes one model by
    it), then the hex SHA-256 of format, model, scope and the canonical body."""
    kept = body if _UNKEYED.isdisjoint(body) else {k: v for k, v in body.items() if k not in _UNKEYED}
    canonical = orjson.dumps(kept, option=orjson.OPT_SORT_KEYS)
    return model_tag(model) + ":" + hashlib.sha256(_key_prefix(fmt, model, scope) + canonical).hexdigest()


@functools.lru_cache(maxsize=4096)
def _key_prefix(fmt: str, model: str, scope: str) -> bytes:
    return b"%b\0%b\0%b\0" % (fmt.encode(), model.encode(), scope.encode())


@functools.lru_cache(maxsize=1024)
def model_tag(model: str) -> str:
    """A public model name as a fixed-size key part (names may hold ':' or '*')."""
    return hashlib.sha256(model.encode()).hexdigest()[:16]


def directives(headers: Mapping[str, str]) -> tuple[bool, bool]:
    """(look up, store) as the request asks: ``Cache-Control: no-cache`` or
    ``x-llmproxy-cache: bypass`` skip the lookup (the answer refreshes the
    entry); ``no-store`` skips both."""
    lookup = store = True
    cc = headers.get("Cache-Control")
    if cc is not None:
        for part in cc.lower().split(","):
            d = part.strip()
            if d == "no-store":
                return False, False
            if d == "no-cache":
                lookup = False
    if lookup and headers.get(CACHE_HEADER, "").strip().lower() == BYPASS:
        lookup = False
    return lookup, store


def caller_scope(request: web.Request) -> str:
    """Whose cache a ``scope: key`` request reads: the caller's key name (a
    ``keys:`` entry, or ``api-key-<sha256 prefix>`` for a plain
    ``server.api_keys`` entry), so two keys never share entries; "" when the
    proxy tells no callers apart (no keys configured)."""
    caller = request.get(CALLER)
    if caller is not None and caller.name:
        return "k:" + str(caller.name)
    return ""
