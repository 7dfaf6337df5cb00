"""The mock transport: ``type: mock`` deployments (``mock://`` URLs) answered
in process, behind the same ``UpstreamResponse`` interface and the same
deadlines as a socket, so the request path cannot tell them apart.

The answers themselves are the mock provider's pure builders
(``providers/mock.py``); only the timing (latency, tokens per second) and
the clock live here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any

import orjson
from multidict import CIMultiDict

from ..config.tree import DeploymentConfig
from ..providers import mock
from ..providers.base import UpstreamRequest
from ..sse import DONE, encode_data
from .deadlines import Deadline

MOCK_SCHEME = mock.MOCK_SCHEME


class MockTransport:
    """Plays a ``type: mock`` answer in process: no socket, real timing."""

    __slots__ = ("_dep", "_req", "deadline", "_body", "status", "headers")

    def __init__(self, dep: DeploymentConfig, req: UpstreamRequest, deadline: Deadline) -> None:
        self._dep = dep
        self._req = req
        self.deadline = deadline
        self.status = 200
        try:
            body = orjson.loads(req.body) if req.body else {}
        except orjson.JSONDecodeError:
            body = {}
        self._body: dict[str, Any] = body if isinstance(body, dict) else {}
        stream = self._body.get("stream") is True
        self.headers: CIMultiDict[str] = CIMultiDict(
            {"Content-Type": "text/event-stream" if stream else "application/json"}
        )

    def _answer(self) -> tuple[dict[str, Any], str, str]:
        reply = mock.reply_text(self._body, self._dep.provider.options.get("reply"))
        return self._body, reply, f"chatcmpl-mock-{time.time_ns():x}"

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with self.deadline:
            await asyncio.sleep(seconds)

    async def read(self) -> bytes:
        try:
            body, reply, cid = self._answer()
            opts = self._dep.provider.options
            await self._sleep(opts.get("latency", 0.0))
            self.deadline.touch()
            if self._req.method == "GET" and self._req.url.endswith("/models"):  # a health probe
                doc = mock.models_list(self._dep.model, int(time.time()))
            elif self._req.url.endswith("/embeddings"):
                doc = mock.embeddings(body, self._dep.model)
            else:
                tps = opts.get("tokens_per_second")
                if tps:
                    await self._sleep(mock.count_tokens(reply) / tps)
                doc = mock.completion(body, self._dep.model, reply, id=cid, created=int(time.time()))
            return orjson.dumps(doc)
        finally:
            self.deadline.cancel()

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        try:
            body, reply, cid = self._answer()
            opts = self._dep.provider.options
            tps = opts.get("tokens_per_second")
            await self._sleep(opts.get("latency", 0.0))
            chunks = mock.stream_chunks(body, self._dep.model, reply, id=cid, created=int(time.time()))
            for i, chunk in enumerate(chunks):
                if tps and 1 < i < len(chunks) - 1:
                    await self._sleep(1.0 / tps)
                self.deadline.touch()
                yield encode_data(orjson.dumps(chunk))
            yield DONE
        finally:
            self.deadline.cancel()

    def complete(self) -> bool:
        return False  # its pieces come from a generator that may still sleep

    def close(self) -> None:
        self.deadline.cancel()
