"""Stored Responses on state.redis: two real proxies sharing one real
redis-server, driven by the openai SDK's Responses API, against a fake
OpenAI-compatible upstream (``responses: translate``, so the proxy keeps the
responses)."""

from __future__ import annotations

import asyncio
import logging
import textwrap
import zlib

import aiohttp
import openai
import orjson
import pytest
import redis.asyncio as aioredis

from llmproxy.config.tree import ConfigError, parse_config
from llmproxy.server.response_store import RESPONSE_STORE, NotKept, Stored
from llmproxy.state.redis import SHARED_REDIS
from llmproxy.state.response_store_redis import OFF_LOOP_BYTES, compress, decode, encode

from .conftest import RunningProxy
from .fakes import Reply, openai_completion, openai_stream


def config(url: str, redis: str | None, responses: str = "") -> str:
    state = f"\n    state: {{redis: '{redis}'}}" if redis else ""
    extra = f"\n    responses: {{{responses}}}" if responses else ""
    return f"""
    providers:
      up: {{type: openai, base_url: '{url}/v1', api_key: sk-upstream-secret, responses: translate}}
    models:
      m:
        deployments: [{{provider: up, model: served-model}}]
        retry: {{retries: 0}}{state}{extra}
    """


async def raw(proxy: RunningProxy, method: str, path: str, body: object = None) -> tuple[int, dict, dict]:
    async with aiohttp.ClientSession() as s, s.request(method, proxy.url + path, json=body) as r:
        return r.status, dict(r.headers), await r.json()


# --------------------------------------------------------------------------- pure parts


def _stored(text: str = "hello") -> Stored:
    output = [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
               "content": [{"type": "output_text", "text": text, "annotations": []}]}]
    response = {"id": "resp_1", "object": "response", "status": "completed", "output": output}
    earlier = [{"id": "in_0", "role": "user", "content": "hi"}]
    return Stored(response, earlier + output)


def test_entry_round_trips_compressed_without_the_output_twice():
    stored = _stored("x" * 4000)
    raw_entry, fits = encode(stored, 1 << 20)
    assert fits and raw_entry.count(b"x" * 4000) == 1  # the output is in the response only
    data = compress(raw_entry)
    assert data[:1] == b"Z" and len(data) < 400
    assert decode(data, 1 << 20) == stored


def test_entry_over_the_bound_is_a_marker_a_follow_up_reads():
    marker, fits = encode(_stored("x" * 4000), 1000)
    assert not fits and marker.startswith(b"L")
    found = decode(marker, 1000)
    assert isinstance(found, NotKept) and "store_max_entry_bytes" in found.why


@pytest.mark.parametrize("data", [b"", b"Z", b"Znot zlib", b"L{", b"?" + zlib.compress(b"{}"),
                                  b"Z" + zlib.compress(b'{"r": {}}')])
def test_garbage_is_not_kept_never_an_exception(data):
    assert isinstance(decode(data, 1 << 20), NotKept)


def test_inflation_stops_at_the_bound():
    bomb = b"Z" + zlib.compress(orjson.dumps({"r": {"output": []}, "c": ["a" * 10_000_000]}), 9)
    assert len(bomb) < OFF_LOOP_BYTES
    found = decode(bomb, 1 << 20)
    assert isinstance(found, NotKept) and "unreadable" in found.why


def test_config_choices():
    with pytest.raises(ConfigError) as info:
        parse_config(config("http://u", None, "store_backend: redis"))
    assert "responses.store_backend" in str(info.value) and "state.redis" in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_config(config("http://u", None, "store_backend: disk"))
    assert "responses.store_backend" in str(info.value)
    assert parse_config(config("http://u", None)).responses.store_backend == "auto"


async def test_backend_follows_state_redis(start_proxy, fake_upstream, redis_url):
    fake = await fake_upstream()
    assert (await start_proxy(config(fake.url, None))).app[RESPONSE_STORE].kind == "memory"
    assert (await start_proxy(config(fake.url, redis_url))).app[RESPONSE_STORE].kind == "redis"
    pinned = await start_proxy(config(fake.url, redis_url, "store_backend: memory"))
    assert pinned.app[RESPONSE_STORE].kind == "memory"


# --------------------------------------------------------------------------- two proxies, one Redis


async def test_created_on_one_proxy_continued_fetched_and_deleted_on_another(start_proxy, fake_upstream,
                                                                            redis_url, openai_client):
    fake = await fake_upstream()
    fake.script(Reply(json=openai_completion("Paris.")), Reply(json=openai_completion("About 2.1 million.")))
    a = await start_proxy(config(fake.url, redis_url))
    b = await start_proxy(config(fake.url, redis_url))
    first = await openai_client(a).responses.create(model="m", instructions="Be brief.", input="Capital of France?")
    client_b = openai_client(b)
    second = await client_b.responses.create(model="m", previous_response_id=first.id, input="Population?")
    assert second.output_text == "About 2.1 million."
    assert fake.seen[1].json["messages"] == [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "Population?"},
    ]
    got = await client_b.responses.retrieve(first.id)
    assert got.id == first.id and got.output_text == "Paris."
    await client_b.responses.delete(first.id)
    for client in (openai_client(a), client_b):
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(first.id)
    with pytest.raises(openai.BadRequestError) as info:
        await openai_client(a).responses.create(model="m", previous_response_id=first.id, input="again")
    assert info.value.code == "previous_response_not_found"
    # The third turn continues the second (stored by b) on a: the whole chain.
    fake.script(Reply(json=openai_completion("Yes.")))
    await openai_client(a).responses.create(model="m", previous_response_id=second.id, input="Sure?")
    assert [m["content"] for m in fake.seen[-1].json["messages"]] == [
        "Capital of France?", "Paris.", "Population?", "About 2.1 million.", "Sure?"]


async def test_a_streamed_response_is_found_by_the_other_proxy_at_once(start_proxy, fake_upstream, redis_url,
                                                                      openai_client):
    fake = await fake_upstream()
    a = await start_proxy(config(fake.url, redis_url))
    b = await start_proxy(config(fake.url, redis_url))
    for i in range(5):
        fake.script(Reply(stream=openai_stream(["turn", f" {i}"])), Reply(json=openai_completion("ok")))
        async with openai_client(a).responses.stream(model="m", input=f"q{i}") as stream:
            first = await stream.get_final_response()
        # No wait of any kind: the put began before response.completed was written.
        second = await openai_client(b).responses.create(model="m", previous_response_id=first.id, input="next")
        assert second.output_text == "ok"
        assert fake.seen[-1].json["messages"][1] == {"role": "assistant", "content": f"turn {i}"}


async def test_values_are_compressed_expire_by_redis_ttl(start_proxy, fake_upstream, redis_url, openai_client):
    fake = await fake_upstream()
    fake.script(Reply(json=openai_completion("z" * 5000)))
    proxy = await start_proxy(config(fake.url, redis_url, "store_ttl: 120"))
    resp = await openai_client(proxy).responses.create(model="m", input="q")
    r = aioredis.from_url(redis_url)
    try:
        value = await r.get(f"llmproxy:responses:{resp.id}")
        assert value[:1] == b"Z" and len(value) < 1000
        assert 0 < await r.pttl(f"llmproxy:responses:{resp.id}") <= 120_000
    finally:
        await r.aclose()


async def test_an_expired_response_is_not_found(start_proxy, fake_upstream, redis_url, openai_client):
    fake = await fake_upstream()
    a = await start_proxy(config(fake.url, redis_url, "store_ttl: 0.2"))
    b = await start_proxy(config(fake.url, redis_url, "store_ttl: 0.2"))
    resp = await openai_client(a).responses.create(model="m", input="q")
    r = aioredis.from_url(redis_url)
    try:
        # Redis' own expiry, on Redis' clock: wait until the key is gone.
        async with asyncio.timeout(30):
            while await r.exists(f"llmproxy:responses:{resp.id}"):
                await asyncio.sleep(0.05)
    finally:
        await r.aclose()
    with pytest.raises(openai.NotFoundError):
        await openai_client(b).responses.retrieve(resp.id)
    with pytest.raises(openai.BadRequestError) as info:
        await openai_client(b).responses.create(model="m", previous_response_id=resp.id, input="x")
    assert info.value.code == "previous_response_not_found" and info.value.param == "previous_response_id"


async def test_a_response_over_the_entry_bound_says_so(start_proxy, fake_upstream, redis_url, openai_client):
    fake = await fake_upstream()
    fake.script(Reply(json=openai_completion("w" * 3000)))
    proxy = await start_proxy(config(fake.url, redis_url, "store_max_entry_bytes: 2KiB"))
    client = openai_client(proxy)
    resp = await client.responses.create(model="m", input="q")
    assert resp.output_text == "w" * 3000  # the answer reaches the client all the same
    with pytest.raises(openai.BadRequestError) as info:
        await client.responses.create(model="m", previous_response_id=resp.id, input="x")
    assert info.value.code == "previous_response_not_found"
    assert "was not stored" in info.value.message and "store_max_entry_bytes" in info.value.message
    status, _, doc = await raw(proxy, "GET", f"/v1/responses/{resp.id}")
    assert status == 404 and "store_max_entry_bytes" in doc["error"]["message"]


async def test_a_large_entry_is_compressed_off_the_loop_and_read_back(start_proxy, fake_upstream, redis_url,
                                                                     openai_client):
    fake = await fake_upstream()
    big = "".join(f"line {i}: the quick brown fox\n" for i in range(8000))  # > OFF_LOOP_BYTES
    fake.script(Reply(json=openai_completion(big)), Reply(json=openai_completion("ok")))
    a = await start_proxy(config(fake.url, redis_url))
    b = await start_proxy(config(fake.url, redis_url))
    first = await openai_client(a).responses.create(model="m", input="q")
    await openai_client(b).responses.create(model="m", previous_response_id=first.id, input="more")
    assert fake.seen[1].json["messages"][1]["content"] == big


# --------------------------------------------------------------------------- Redis down


async def test_redis_stopped_mid_run(start_proxy, fake_upstream, redis_factory, openai_client, caplog):
    server = redis_factory()
    fake = await fake_upstream()
    proxy = await start_proxy(config(fake.url, server.url))
    client = openai_client(proxy)
    before = await client.responses.create(model="m", input="q")
    fake.script(*[Reply(json=openai_completion("hi"))] * 3, Reply(stream=openai_stream(["streamed"])),
                Reply(json=openai_completion("hi")))
    await asyncio.to_thread(server.stop)
    with caplog.at_level(logging.WARNING, logger="llmproxy"):
        # A stored response cannot be asked for: a clear 503, never "not found".
        with pytest.raises(openai.InternalServerError) as info:
            await client.responses.create(model="m", previous_response_id=before.id, input="x")
        assert info.value.status_code == 503 and info.value.code == "response_store_unavailable"
        assert "state.redis" in info.value.message and before.id in info.value.message
        assert info.value.response.headers["retry-after"] == "1"
        for method in ("GET", "DELETE"):
            status, _, doc = await raw(proxy, method, f"/v1/responses/{before.id}")
            assert status == 503 and doc["error"]["code"] == "response_store_unavailable"
        # New responses are answered; storing them is skipped, with one WARNING.
        made = [await asyncio.wait_for(client.responses.create(model="m", input=f"n{i}"), 10) for i in range(3)]
        assert all(r.output_text == "hi" for r in made)
        async with client.responses.stream(model="m", input="streamed") as stream:
            assert (await stream.get_final_response()).status == "completed"
    skipped = [r for r in caplog.records if "not stored" in r.getMessage()]
    assert len(skipped) == 1 and skipped[0].levelno == logging.WARNING
    async with aiohttp.ClientSession() as s, s.get(proxy.url + "/metrics") as r:
        text = await r.text()
    assert 'llmproxy_response_store_errors_total{op="put"} 4.0' in text
    assert 'llmproxy_response_store_errors_total{op="get"} 2.0' in text
    assert 'llmproxy_response_store_errors_total{op="delete"} 1.0' in text
    # Redis back: storing and continuing work again, on their own.
    await asyncio.to_thread(server.start)
    redis = proxy.app[SHARED_REDIS]
    async with asyncio.timeout(30):
        while not redis.up:
            await asyncio.sleep(0.05)
    after = await client.responses.create(model="m", input="back")
    follow = await client.responses.create(model="m", previous_response_id=after.id, input="again")
    assert follow.status == "completed"


async def test_reload_keeps_the_backend_and_applies_the_limits(tmp_path, start_proxy, fake_upstream, redis_url,
                                                               openai_client, caplog):
    fake = await fake_upstream()
    cfg = tmp_path / "llmproxy.yaml"
    base = config(fake.url, redis_url) + "\n    admin: {token: adm-secret-token}\n    reload: {enabled: false}\n"
    cfg.write_text(textwrap.dedent(base))
    proxy = await start_proxy.from_file(cfg)
    cfg.write_text(textwrap.dedent(base + "    responses: {store_backend: memory, store_ttl: 5}\n"))
    with caplog.at_level(logging.WARNING, logger="llmproxy"):
        async with aiohttp.ClientSession() as s, s.post(proxy.url + "/admin/reload",
                                                        headers={"Authorization": "Bearer adm-secret-token"}) as r:
            assert r.status == 200, await r.text()
    assert any("responses.store_backend changed (redis to memory)" in r.getMessage() for r in caplog.records)
    assert proxy.app[RESPONSE_STORE].kind == "redis"  # until a restart
    resp = await openai_client(proxy).responses.create(model="m", input="q")
    r = aioredis.from_url(redis_url)
    try:
        assert 0 < await r.pttl(f"llmproxy:responses:{resp.id}") <= 5000  # the new store_ttl, live
    finally:
        await r.aclose()
