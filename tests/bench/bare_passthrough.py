"""The floor of this stack: a bare aiohttp pass-through with no features.

Run by bench.py with ``--floor`` in place of llmproxy (same command line), so
the table shows what aiohttp + uvloop + orjson cost on this machine before
any routing, validation, metrics or logging. Not part of the product.
"""

from __future__ import annotations

import argparse
import asyncio

import aiohttp
import orjson
import uvloop
import yaml
from aiohttp import web


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--log-level")
    ap.add_argument("cmd")
    ap.add_argument("--config")
    ap.add_argument("--host")
    ap.add_argument("--port", type=int)
    args = ap.parse_args()
    conf = yaml.safe_load(open(args.config))
    routes = {
        name: conf["providers"][m["deployments"][0]["provider"]]["base_url"] + "/chat/completions"
        for name, m in conf["models"].items()
    }

    async def chat(request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        url = routes[body["model"]]
        session: aiohttp.ClientSession = request.app["session"]
        async with session.post(url, data=orjson.dumps(body), headers={"Content-Type": "application/json"}) as up:
            if not body.get("stream"):
                return web.Response(body=await up.read(), content_type="application/json")
            out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await out.prepare(request)
            async for chunk in up.content.iter_any():
                await out.write(chunk)
            await out.write_eof()
            return out

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        app["session"] = aiohttp.ClientSession()
        yield
        await app["session"].close()

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/healthz", healthz)
    uvloop.install()
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
