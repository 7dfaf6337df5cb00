"""Reading and checking a client's JSON body (parsed once, with orjson)."""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web

from ..errors import InvalidRequest, ModelNotFound, PayloadTooLarge
from ..providers.base import CallContext
from ..router import ModelGroup
from ..runtime import REQUEST_ID, Runtime


def json_response(doc: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(doc), status=status, content_type="application/json")


async def read_json(request: web.Request, limit: int) -> dict[str, Any]:
    length = request.content_length
    if length is not None:
        if length > limit:
            raise PayloadTooLarge(
                f"request body is {length} bytes; the limit is {limit} bytes (server.max_body_size)"
            )
        raw = await request.read()
    else:  # chunked upload: count as it arrives
        buf = bytearray()
        async for piece in request.content.iter_any():
            buf += piece
            if len(buf) > limit:
                raise PayloadTooLarge(
                    f"request body exceeds the limit of {limit} bytes (server.max_body_size)"
                )
        raw = bytes(buf)
    if not raw:
        raise InvalidRequest("request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object")
    return body


def resolve_model(runtime: Runtime, body: dict[str, Any]) -> ModelGroup:
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("'model' is required and must be a non-empty string", param="model")
    group = runtime.router.group(name)
    if group is None:
        names = ", ".join(sorted(runtime.config.models)) or "none"
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
