"""Reading and checking a client's JSON body (parsed once, with orjson)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp import web

from ...keys.caller import CALLER
from ...keys.service import TICKET
from ...errors import InvalidRequest, ModelNotFound, PayloadTooLarge, RequestTimeout
from ...observe.observation import OBSERVATION
from ...providers.base import CallContext
from ...router import ModelGroup
from ..runtime import PROXY, REQUEST_ID, Runtime


def json_response(doc: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(doc), status=status, content_type="application/json")


# Deeper JSON is refused at the door: orjson decodes 1024 levels but encodes
# only 255, and nothing an API client sends nests past a few dozen.
MAX_DEPTH = 128


async def read_json(request: web.Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object: at most ``limit`` bytes, no gap longer than
    ``server.body_timeout``, nested at most ``MAX_DEPTH`` levels."""
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(
            f"request body is {length} bytes; the limit is {limit} bytes (server.max_body_size)"
        )
    try:
        if request.content.is_eof():  # the whole body came with the head: the common case
            raw = await request.read()
            if len(raw) > limit:  # chunked, so no Content-Length was checked
                raise PayloadTooLarge(
                    f"request body exceeds the limit of {limit} bytes (server.max_body_size)"
                )
        else:
            raw = await _read_slowly(request, limit)
    except web.RequestPayloadError as exc:  # bad chunked framing, a body cut short
        raise InvalidRequest(f"request body is malformed: {exc}") from None
    if not raw:
        raise InvalidRequest("request body is empty; expected a JSON object")
    obs = request.get(OBSERVATION)
    if obs is not None and obs.body is not None:  # admin.request_log_bodies is on
        obs.body = raw
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):
            raise _too_deep() from None
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    # Only a body with that many brackets can nest that deep: the walk is
    # skipped for almost every request.
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH and _depth_exceeds(body, MAX_DEPTH):
        raise _too_deep()
    return body


async def _read_slowly(request: web.Request, limit: int) -> bytes:
    """A body still arriving: counted as it comes, each gap bounded."""
    gap = request.app[PROXY].runtime.config.server.body_timeout
    buf = bytearray()
    content = request.content
    while True:
        try:
            async with asyncio.timeout(gap):
                piece = await content.readany()
        except TimeoutError:
            raise RequestTimeout(
                f"request body stalled: no bytes for {gap:g}s (server.body_timeout)"
            ) from None
        if not piece:
            return bytes(buf)
        buf += piece
        if len(buf) > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes (server.max_body_size)")


def _depth_exceeds(doc: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def _too_deep() -> InvalidRequest:
    return InvalidRequest(f"request body nests deeper than {MAX_DEPTH} levels", code="json_too_deep")


async def resolve_model(request: web.Request, runtime: Runtime, body: dict[str, Any]) -> ModelGroup:
    """The model group the body names, once the caller's key may use it and
    is within its limits (every model route passes here: the one check)."""
    group = _group(runtime, body)
    caller = request.get(CALLER)
    if caller is not None and caller.policy is not None:
        request[TICKET] = await request.app[PROXY].keys.admit(caller.policy, group.name, body)
    return group


def _group(runtime: Runtime, body: dict[str, Any]) -> ModelGroup:
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("'model' is required and must be a non-empty string", param="model")
    group = runtime.router.group(name)
    if group is None:
        router = runtime.router
        names = ", ".join(sorted([*router.groups, *router.aliases, *router.patterns])) or "none"
        raise ModelNotFound(
            f"model {name!r} does not exist on this proxy; available models: {names}",
            param="model",
        )
    return group


def call_context(request: web.Request, body: dict[str, Any]) -> CallContext:
    opts = body.get("stream_options")
    return CallContext(
        public_model=body["model"],
        request_id=request.get(REQUEST_ID, ""),
        created=int(time.time()),
        include_usage=isinstance(opts, dict) and opts.get("include_usage") is True,
        encoding_format="base64" if body.get("encoding_format") == "base64" else "float",
    )
