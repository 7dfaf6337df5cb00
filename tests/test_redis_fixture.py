"""The real redis-server the Redis-backed features are tested against."""

from __future__ import annotations

from collections.abc import Callable

from .redis_server import RedisServer


def test_shared_server_is_emptied_per_test(redis_url: str, _shared_redis: RedisServer) -> None:
    assert redis_url.startswith("redis://127.0.0.1:")
    assert _shared_redis.command("SET", "k", "v") == b"+OK"
    assert _shared_redis.command("DBSIZE") == b":1"


def test_a_server_of_its_own_stops_and_restarts(redis_factory: Callable[[], RedisServer]) -> None:
    server = redis_factory()
    assert server.command("PING") == b"+PONG"
    server.stop()
    assert server.command("PING") is None
    server.start()
    assert server.command("PING") == b"+PONG"
