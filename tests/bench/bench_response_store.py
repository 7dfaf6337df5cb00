"""What a stored Response costs on the Redis store: µs per put and per get,
through the real ``RedisStore`` and ``SharedRedis`` against a local
redis-server (one round trip each, encoding and zlib included).

Run by hand (not a pytest test; needs redis-server on PATH):

    .venv/bin/python tests/bench/bench_response_store.py

A conversation of N turns is N user messages of ~200 bytes and N assistant
messages of ~600 bytes; the entry is the response and its whole chain.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from llmproxy.config.tree import ResponsesConfig  # noqa: E402
from llmproxy.server.response_store import Stored  # noqa: E402
from llmproxy.state.redis import SharedRedis  # noqa: E402
from llmproxy.state.response_store_redis import RedisStore  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402


def conversation(turns: int) -> Stored:
    context = []
    for i in range(turns):
        context.append({"id": f"in_{i}", "role": "user", "content": f"question {i} " * 20})
        context.append({"type": "message", "id": f"msg_{i}", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": f"answer {i} " * 60, "annotations": []}]})
    response = {"id": "resp_bench", "object": "response", "status": "completed", "output": [context[-1]],
                "usage": {"input_tokens": 1, "output_tokens": 1}}
    return Stored(response, context)


async def main() -> None:
    server = RedisServer().start()
    redis = SharedRedis(server.url)
    await redis.start()
    store = RedisStore(redis, ResponsesConfig)
    try:
        for turns in (1, 20, 200):
            stored = conversation(turns)
            size = len(orjson.dumps({"r": stored.response, "c": stored.context}))
            n = 300 if turns < 200 else 100
            started = time.perf_counter()
            for _ in range(n):
                await store.put(stored)
            put = (time.perf_counter() - started) / n * 1e6
            started = time.perf_counter()
            for _ in range(n):
                got = await store.get("resp_bench")
            get = (time.perf_counter() - started) / n * 1e6
            assert isinstance(got, Stored) and got.context == stored.context
            print(f"{turns:>4} turns, {size:>7} bytes: put {put:7.0f} µs, get {get:7.0f} µs")
    finally:
        await redis.close()
        server.close()


if __name__ == "__main__":
    asyncio.run(main())
