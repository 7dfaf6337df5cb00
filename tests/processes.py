"""Real ``python -m llmproxy serve`` processes for tests that need processes.

``Group`` runs the CLI as an operator does: ``--workers N`` (a supervisor
and N workers sharing one port with SO_REUSEPORT) or one plain process
(``workers=1``). Which worker answered comes from the ``x-llmproxy-worker``
header. Every wait polls a condition with a deadline; nothing sleeps a
fixed time. Used by tests/test_workers.py and tests/test_keys_redis.py.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
CHAT = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(condition: Callable[[], Awaitable[Any]], what: str, timeout: float = 60.0) -> Any:
    """Poll ``condition`` until it returns something truthy (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await condition()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class Group:
    def __init__(self, config: Path, log: Path, workers: int = 2) -> None:
        self.config, self.log = config, log
        self.workers = workers
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None
        # A new connection per request: the kernel spreads them over the workers.
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, workers: str | None = None) -> Group:
        with self.log.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "llmproxy", "serve", "--config", str(self.config), "--port", str(self.port),
                "--workers", workers or str(self.workers), cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=err,
            )
        await until(self.both_answer, "every worker to answer")
        return self

    async def get(self, path: str, headers: Mapping[str, str] | None = None) -> tuple[int, str | None, bytes]:
        try:
            async with self.session.get(self.url + path, headers=headers) as resp:
                return resp.status, resp.headers.get("x-llmproxy-worker"), await resp.read()
        except aiohttp.ClientError:
            return 0, None, b""

    async def both_answer(self) -> bool:
        """Every worker answers /readyz (a plain process: it answers)."""
        if self.workers == 1:
            return (await self.get("/readyz"))[0] == 200
        seen = set()
        for _ in range(40):  # new connections: the kernel spreads them
            status, worker, _ = await self.get("/readyz")
            if status == 200 and worker is not None:
                seen.add(worker)
            if len(seen) == self.workers:
                return True
        return False

    async def chat(self, headers: Mapping[str, str] | None = None) -> tuple[int, str | None]:
        async with self.session.post(self.url + "/v1/chat/completions", data=CHAT,
                                     headers={"Content-Type": "application/json", **(headers or {})}) as resp:
            await resp.read()
            return resp.status, resp.headers.get("x-llmproxy-worker")

    async def metrics(self) -> str:
        status, _, body = await self.get("/metrics")
        assert status == 200
        return body.decode()

    def children(self) -> list[int]:
        assert self.proc is not None
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(p) for p in path.read_text().split()]

    async def stop(self) -> int:
        await self.session.close()
        if self.proc is None or self.proc.returncode is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), 60)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$", line)
        if not m or m[1] != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m[3] or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m[4])
    return total
