"""The exact-match response cache through the real proxy: real SDK clients,
fake upstreams that are real HTTP servers, a real redis-server."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import anthropic
import pytest

from llmproxy.cache.forms import Entry, as_stream, as_unary, finished
from llmproxy.cache.keying import CHAT, MESSAGES, cache_key, directives
from llmproxy.config.tree import ConfigError, parse_config

from .conftest import RunningProxy
from .fakes import (
    Reply,
    openai_completion,
    openai_response,
    openai_stream,
    responses_stream,
)
from .fakes_anthropic import message, stream_events


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cfg(url: str, cache: str = "{enabled: true}", extra: str = "", model_extra: str = "",
        kind: str = "openai") -> str:
    return f"""
    cache: {cache}
    providers:
      up: {{type: {kind}, base_url: '{url}', api_key: sk-upstream-1}}
    models:
      m:
        deployments: [{{provider: up, model: real-model}}]
        retry: {{retries: 0}}
        {model_extra}
    {extra}
    """


def chat_calls(fake: Any) -> int:
    return sum(1 for s in fake.seen if s.path.endswith("/chat/completions"))


async def post(proxy: RunningProxy, body: dict[str, Any], headers: dict[str, str] | None = None,
               path: str = "/v1/chat/completions") -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as s, s.post(proxy.url + path, json=body, headers=headers or {}) as r:
        return r.status, dict(r.headers), await r.read()


HELLO = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}


# --------------------------------------------------------------------------- pure parts


def test_key_ignores_order_whitespace_and_delivery_fields():
    a = cache_key(CHAT, "m", "", {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 0})
    b = cache_key(CHAT, "m", "", {"temperature": 0, "stream": True, "user": "u1", "metadata": {"a": 1},
                                  "stream_options": {"include_usage": True},
                                  "messages": [{"content": "x", "role": "user"}], "model": "m"})
    assert a == b
    assert a != cache_key(CHAT, "m", "", {"model": "m", "messages": [{"role": "user", "content": "y"}],
                                          "temperature": 0})
    assert a != cache_key(MESSAGES, "m", "", {"model": "m", "messages": [{"role": "user", "content": "x"}],
                                              "temperature": 0})
    assert a != cache_key(CHAT, "m", "k:team-a", {"model": "m", "messages": [{"role": "user", "content": "x"}],
                                                  "temperature": 0})


def test_directives():
    assert directives({}) == (True, True)
    assert directives({"Cache-Control": "no-cache"}) == (False, True)
    assert directives({"x-llmproxy-cache": "bypass"}) == (False, True)
    assert directives({"Cache-Control": "max-age=0, no-store"}) == (False, False)


def test_only_normally_finished_answers_count():
    import orjson

    ok = Entry("m", False, (orjson.dumps(openai_completion()),))
    assert finished(CHAT, ok)
    filtered = openai_completion()
    filtered["choices"][0]["finish_reason"] = "content_filter"
    assert not finished(CHAT, Entry("m", False, (orjson.dumps(filtered),)))
    assert finished(CHAT, Entry("m", True, tuple(openai_stream(["a", "b"]))))
    assert not finished(CHAT, Entry("m", True, tuple(openai_stream(["a", "b"])[:-1])))  # no [DONE]
    err = [openai_stream(["a"])[0], b'data: {"error": {"message": "overloaded"}}\n\n', b"data: [DONE]\n\n"]
    assert not finished(CHAT, Entry("m", True, tuple(err)))
    msg = message([{"type": "text", "text": "hi"}])
    assert finished(MESSAGES, Entry("m", True, tuple(stream_events(msg))))
    assert not finished(MESSAGES, Entry("m", True, tuple(stream_events(msg)[:-1])))


def test_chat_streams_are_judged_on_their_bytes():
    """CHAT streams are checked without parsing their events: every form the
    relay can write is read, and anything it cannot read is not stored."""
    def stream(finish: bytes, content: str = "hi") -> Entry:
        pieces = openai_stream([content])
        pieces[-2] = pieces[-2].replace(b'"finish_reason":"stop"', finish)
        return Entry("m", True, tuple(pieces))

    assert finished(CHAT, stream(b'"finish_reason":"stop"'))
    assert finished(CHAT, stream(b'"finish_reason": "length"'))  # one space, as json.dumps writes it
    assert finished(CHAT, stream(b'"finish_reason":"tool_calls"'))
    assert not finished(CHAT, stream(b'"finish_reason":"content_filter"'))
    assert not finished(CHAT, stream(b'"finish_reason":null'))  # never finished
    assert not finished(CHAT, stream(b'"finish_reason":  "stop"'))  # a form not read: not stored
    assert not finished(CHAT, stream(b'"finish_reason":7'))
    # Quotes inside content are escaped: what the model wrote never passes for a key.
    assert finished(CHAT, stream(b'"finish_reason":"stop"', content='say "finish_reason":"content_filter"'))
    assert finished(CHAT, stream(b'"finish_reason":"stop"', content='an "error" occurred'))
    # Content ending in a quoted word reads as '"error"' in the bytes: not stored, the safe side.
    assert not finished(CHAT, stream(b'"finish_reason":"stop"', content='the word "error'))
    pieces = openai_stream(["a"])
    assert not finished(CHAT, Entry("m", True, (*pieces[:-1], b'data: {"type":"error"}\n\n', pieces[-1])))
    assert not finished(CHAT, Entry("m", True, ()))


def test_chat_and_messages_convert_both_ways():
    import orjson

    stream = Entry("m", True, tuple(openai_stream(["Hel", "lo"], usage=True)))
    doc = orjson.loads(as_unary(CHAT, stream) or b"")
    assert doc["choices"][0]["message"]["content"] == "Hello" and doc["choices"][0]["finish_reason"] == "stop"
    assert doc["usage"]["completion_tokens"] == 2
    back = as_stream(CHAT, Entry("m", False, (orjson.dumps(doc),)))
    assert back is not None and finished(CHAT, Entry("m", True, tuple(back)))
    msg = message([{"type": "text", "text": "Hi there"}])
    unary = as_unary(MESSAGES, Entry("m", True, tuple(stream_events(msg))))
    assert unary is not None and orjson.loads(unary)["content"][0]["text"] == "Hi there"
    events = as_stream(MESSAGES, Entry("m", False, (orjson.dumps(msg),)))
    assert events is not None and finished(MESSAGES, Entry("m", True, tuple(events)))


def test_entry_round_trips_compressed_and_refuses_garbage():
    e = Entry("m", True, (b"data: a\n\n", b"data: [DONE]\n\n"))
    assert Entry.decode(e.encode(), 1 << 20) == e
    assert Entry.decode(b"not zlib", 1 << 20) is None


def test_config_errors_are_path_qualified():
    base = """
    providers: {up: {type: openai, api_key: k}}
    models:
      m:
        deployments: [{provider: up, model: x}]
        cache: %s
    cache: {enabled: true, backend: %s}
    """
    with pytest.raises(ConfigError) as e:
        parse_config(base % ("{ttl: 60}", "redis"))
    assert "cache.backend: redis needs state.redis" in str(e.value)
    with pytest.raises(ConfigError) as e:
        parse_config(base % ("[1]", "memory"))
    assert "models.m.cache: must be false or a mapping" in str(e.value)
    with pytest.raises(ConfigError) as e:
        parse_config(base % ("{ttl: -1}", "memory"))
    assert "models.m.cache.ttl: must be a positive number" in str(e.value)
    with pytest.raises(ConfigError) as e:
        parse_config(base % ("{tll: 5}", "memory"))
    assert "models.m.cache" in str(e.value) and "tll" in str(e.value)
    c = parse_config(base % ("false", "memory"))
    assert not c.models["m"].cache.enabled
    assert parse_config(base % ("{ttl: 60}", "memory")).models["m"].cache.ttl == 60.0


# --------------------------------------------------------------------------- through the proxy


async def test_unary_hit_and_miss_with_the_openai_sdk(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    proxy = await start_proxy(cfg(fake.url))
    client = openai_client(proxy)
    first = await client.chat.completions.with_raw_response.create(model="m", messages=HELLO["messages"])
    second = await client.chat.completions.with_raw_response.create(
        model="m", messages=[{"content": "hello", "role": "user"}], user="someone-else")
    assert first.headers["x-llmproxy-cache"] == "miss" and second.headers["x-llmproxy-cache"] == "hit"
    assert first.parse().choices[0].message.content == second.parse().choices[0].message.content == "hi"
    assert chat_calls(fake) == 1
    other = await client.chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "something else"}])
    assert other.headers["x-llmproxy-cache"] == "miss" and chat_calls(fake) == 2


async def test_stream_replays_the_same_pieces_and_serves_unary_and_back(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    fake.script(Reply(stream=openai_stream(["Hel", "lo", " world"])))
    proxy = await start_proxy(cfg(fake.url))
    body = {**HELLO, "stream": True}
    status, h1, raw1 = await post(proxy, body)
    status2, h2, raw2 = await post(proxy, body)
    assert (status, status2) == (200, 200) and h1["x-llmproxy-cache"] == "miss" and h2["x-llmproxy-cache"] == "hit"
    assert raw1 == raw2 and raw2.endswith(b"data: [DONE]\n\n")
    client = openai_client(proxy)
    stream = await client.chat.completions.create(model="m", messages=HELLO["messages"], stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "Hello world"
    unary = await client.chat.completions.with_raw_response.create(model="m", messages=HELLO["messages"])
    assert unary.headers["x-llmproxy-cache"] == "hit" and unary.parse().choices[0].message.content == "Hello world"
    assert chat_calls(fake) == 1
    # The other way round: a non-stream answer serves a stream.
    q = [{"role": "user", "content": "unary first"}]
    fake.script(Reply(json=openai_completion("from unary")))
    await client.chat.completions.create(model="m", messages=q)
    stream = await client.chat.completions.create(model="m", messages=q, stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == "from unary"
    assert chat_calls(fake) == 2


async def test_stream_pieces_keep_their_boundaries(start_proxy, fake_upstream):
    fake = await fake_upstream()
    pieces = openai_stream(["a", "b", "c"])
    fake.script(Reply(stream=pieces))
    proxy = await start_proxy(cfg(fake.url))
    slot = proxy.app[__import__("llmproxy.cache.response_cache", fromlist=["RESPONSE_CACHE"]).RESPONSE_CACHE]
    _, _, raw = await post(proxy, {**HELLO, "stream": True})
    backend = slot.cache.backend
    (entry, _), = backend._entries.values()
    # What is kept is what the client got, write by write (the upstream's reads may coalesce).
    assert entry.stream and b"".join(entry.chunks) == raw == b"".join(pieces)


async def test_embeddings_hit(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    fake.script(Reply(json={"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 1.0]}],
                            "model": "real-model", "usage": {"prompt_tokens": 1, "total_tokens": 1}}))
    proxy = await start_proxy(cfg(fake.url))
    client = openai_client(proxy)
    a = await client.embeddings.with_raw_response.create(model="m", input="x", encoding_format="float")
    b = await client.embeddings.with_raw_response.create(model="m", input="x", encoding_format="float")
    assert a.headers["x-llmproxy-cache"] == "miss" and b.headers["x-llmproxy-cache"] == "hit"
    assert b.parse().data[0].embedding == [0.5, 1.0]
    assert len([s for s in fake.seen if s.path.endswith("/embeddings")]) == 1


async def test_anthropic_sdk_hit_unary_and_stream(start_proxy, fake_upstream):
    fake = await fake_upstream()
    msg = message([{"type": "text", "text": "Hi from Claude"}])
    fake.script(Reply(stream=stream_events(msg)))
    proxy = await start_proxy(cfg(fake.url, kind="anthropic"))
    client = anthropic.AsyncAnthropic(base_url=proxy.url, api_key="x", max_retries=0)
    try:
        kw: dict[str, Any] = {"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
        async with client.messages.stream(**kw) as s:
            first = await s.get_final_message()
        async with client.messages.stream(**kw) as s:
            second = await s.get_final_message()
        assert first.content[0].text == second.content[0].text == "Hi from Claude"
        raw = await client.messages.with_raw_response.create(**kw)
        assert raw.headers["x-llmproxy-cache"] == "hit" and (await raw.parse()).content[0].text == "Hi from Claude"
        assert len(fake.seen) == 1
    finally:
        await client.close()


async def test_responses_cached_only_without_state(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    fake.script(Reply(json=openai_response("native hi")))
    proxy = await start_proxy(cfg(fake.url))
    client = openai_client(proxy)
    a = await client.responses.with_raw_response.create(model="m", input="hi", store=False)
    b = await client.responses.with_raw_response.create(model="m", input="hi", store=False)
    assert a.headers["x-llmproxy-cache"] == "miss" and b.headers["x-llmproxy-cache"] == "hit"
    assert b.parse().output_text == "native hi"
    stored = await client.responses.with_raw_response.create(model="m", input="hi")  # store defaults to true
    assert stored.headers["x-llmproxy-cache"] == "bypass"
    assert len(fake.seen) == 2
    # A streamed Response serves the non-stream request of the same body.
    fake.script(Reply(stream=responses_stream("streamed hi")))
    s = await client.responses.create(model="m", input="again", store=False, stream=True)
    [e async for e in s]
    c = await client.responses.with_raw_response.create(model="m", input="again", store=False)
    assert c.headers["x-llmproxy-cache"] == "hit" and c.parse().output_text == "streamed hi"
    assert len(fake.seen) == 3


async def test_n_concurrent_identical_requests_call_upstream_once(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    hold = asyncio.Event()
    fake.script(Reply(json=openai_completion("once"), hold=hold))
    proxy = await start_proxy(cfg(fake.url))
    client = openai_client(proxy)
    tasks = [asyncio.create_task(client.chat.completions.with_raw_response.create(
        model="m", messages=HELLO["messages"])) for _ in range(8)]
    await fake.received.wait()
    slot = proxy.app[__import__("llmproxy.cache.response_cache", fromlist=["RESPONSE_CACHE"]).RESPONSE_CACHE]
    cache = slot.cache
    while cache.counts["hit"] + cache.counts["miss"] < 1 or len(cache._flights) < 1:
        await asyncio.sleep(0)
    hold.set()
    done = await asyncio.gather(*tasks)
    assert {r.parse().choices[0].message.content for r in done} == {"once"}
    assert chat_calls(fake) == 1
    assert sorted(r.headers["x-llmproxy-cache"] for r in done) == ["hit"] * 7 + ["miss"]
    for _ in range(3):  # and N sequential ones
        await client.chat.completions.create(model="m", messages=HELLO["messages"])
    assert chat_calls(fake) == 1


async def test_a_waiter_goes_upstream_itself_when_the_leader_fails(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    hold = asyncio.Event()
    fake.script(Reply(status=500, json={"error": {"message": "boom"}}, hold=hold), Reply(json=openai_completion("ok")))
    proxy = await start_proxy(cfg(fake.url))
    client = openai_client(proxy)
    leader = asyncio.create_task(post(proxy, HELLO))
    await fake.received.wait()
    waiter = asyncio.create_task(post(proxy, HELLO))
    slot = proxy.app[__import__("llmproxy.cache.response_cache", fromlist=["RESPONSE_CACHE"]).RESPONSE_CACHE]
    (flight,) = slot.cache._flights.values()  # the leader's
    while not flight._callbacks:  # until the waiter waits on it
        await asyncio.sleep(0)
    hold.set()
    (s1, h1, _), (s2, _, body2) = await asyncio.gather(leader, waiter)
    assert s1 == 500 and h1["x-llmproxy-cache"] == "miss"
    assert s2 == 200 and b"ok" in body2
    assert chat_calls(fake) == 2
    await client.chat.completions.create(model="m", messages=HELLO["messages"])
    assert chat_calls(fake) == 2  # the waiter's answer was stored


async def test_ttl_expiry_on_the_injected_clock_and_per_model_ttl(start_proxy, fake_upstream):
    fake = await fake_upstream()
    clock = Clock()
    proxy = await start_proxy(cfg(fake.url, cache="{enabled: true, ttl: 60}", model_extra="cache: {ttl: 10}"),
                              clock=clock)
    await post(proxy, HELLO)
    clock.now += 9
    assert (await post(proxy, HELLO))[1]["x-llmproxy-cache"] == "hit"
    clock.now += 2
    assert (await post(proxy, HELLO))[1]["x-llmproxy-cache"] == "miss"
    assert chat_calls(fake) == 2


async def test_model_cache_false_bypasses(start_proxy, fake_upstream):
    fake = await fake_upstream()
    proxy = await start_proxy(cfg(fake.url, model_extra="cache: false"))
    for _ in range(2):
        assert (await post(proxy, HELLO))[1]["x-llmproxy-cache"] == "bypass"
    assert chat_calls(fake) == 2


async def test_bypass_refreshes_and_no_store_stores_nothing(start_proxy, fake_upstream):
    fake = await fake_upstream()
    fake.script(Reply(json=openai_completion("v1")), Reply(json=openai_completion("v2")),
                Reply(json=openai_completion("v3")))
    proxy = await start_proxy(cfg(fake.url))
    await post(proxy, HELLO)
    _, h, body = await post(proxy, HELLO, {"Cache-Control": "no-cache"})
    assert h["x-llmproxy-cache"] == "bypass" and b"v2" in body
    _, h, body = await post(proxy, HELLO)
    assert h["x-llmproxy-cache"] == "hit" and b"v2" in body  # refreshed
    _, h, body = await post(proxy, HELLO, {"x-llmproxy-cache": "bypass"})
    assert b"v3" in body
    q = {"model": "m", "messages": [{"role": "user", "content": "private"}]}
    _, h, _ = await post(proxy, q, {"Cache-Control": "no-store"})
    assert h["x-llmproxy-cache"] == "bypass"
    _, h, _ = await post(proxy, q)
    assert h["x-llmproxy-cache"] == "miss"


async def test_scope_key_separates_api_keys_and_global_shares(start_proxy, fake_upstream):
    fake = await fake_upstream()
    keys = "server: {api_keys: [key-a, key-b]}"
    proxy = await start_proxy(cfg(fake.url, extra=keys))
    a = {"Authorization": "Bearer key-a"}
    b = {"Authorization": "Bearer key-b"}
    assert (await post(proxy, HELLO, a))[1]["x-llmproxy-cache"] == "miss"
    assert (await post(proxy, HELLO, b))[1]["x-llmproxy-cache"] == "miss"
    assert (await post(proxy, HELLO, a))[1]["x-llmproxy-cache"] == "hit"
    assert chat_calls(fake) == 2
    shared = await start_proxy(cfg(fake.url, cache="{enabled: true, scope: global}", extra=keys))
    assert (await post(shared, HELLO, a))[1]["x-llmproxy-cache"] == "miss"
    assert (await post(shared, HELLO, b))[1]["x-llmproxy-cache"] == "hit"


async def test_errors_and_interrupted_streams_are_never_cached(start_proxy, fake_upstream):
    fake = await fake_upstream()
    fake.script(Reply(status=400, json={"error": {"message": "bad", "type": "invalid_request_error"}}),
                Reply(json=openai_completion("fine")))
    proxy = await start_proxy(cfg(fake.url))
    s, h, _ = await post(proxy, HELLO)
    assert s == 400 and h["x-llmproxy-cache"] == "miss"
    s, h, _ = await post(proxy, HELLO)
    assert s == 200 and h["x-llmproxy-cache"] == "miss"
    q = {**HELLO, "messages": [{"role": "user", "content": "cut"}], "stream": True}
    fake.script(Reply(stream=openai_stream(["a", "b", "c"]), drop_after=2), Reply(stream=openai_stream(["ok"])))
    s, h, raw = await post(proxy, q)
    assert h["x-llmproxy-cache"] == "miss" and not raw.endswith(b"data: [DONE]\n\n")
    s, h, raw = await post(proxy, q)
    assert h["x-llmproxy-cache"] == "miss" and raw.endswith(b"data: [DONE]\n\n")
    s, h, raw = await post(proxy, q)
    assert h["x-llmproxy-cache"] == "hit"
    # An error relayed inside a 200 stream is not a finished answer either.
    q2 = {**q, "messages": [{"role": "user", "content": "err"}]}
    fake.script(Reply(stream=[openai_stream(["a"])[0], b'data: {"error": {"message": "overloaded"}}\n\n',
                              b"data: [DONE]\n\n"]))
    await post(proxy, q2)
    assert (await post(proxy, q2))[1]["x-llmproxy-cache"] == "miss"


async def test_lru_eviction_by_bytes_and_entry_bound(start_proxy, fake_upstream):
    fake = await fake_upstream()
    fake.script(Reply(json=openai_completion("x" * 300)))
    # Each entry is ~790 bytes with its overhead: three fit in 2500, four do not.
    proxy = await start_proxy(cfg(fake.url, cache="{enabled: true, max_bytes: 2500, max_entry_bytes: 1000}"))
    bodies = [{"model": "m", "messages": [{"role": "user", "content": f"q{i}"}]} for i in range(4)]
    for b in bodies[:3]:
        await post(proxy, b)
    assert (await post(proxy, bodies[0]))[1]["x-llmproxy-cache"] == "hit"  # q0 is now the most recent
    await post(proxy, bodies[3])  # evicts q1, the least recently used
    assert (await post(proxy, bodies[0]))[1]["x-llmproxy-cache"] == "hit"
    assert (await post(proxy, bodies[1]))[1]["x-llmproxy-cache"] == "miss"
    async with aiohttp.ClientSession() as s, s.get(proxy.url + "/metrics") as r:
        text = await r.text()
    assert "llmproxy_cache_evictions_total" in text and 'llmproxy_cache_requests_total{result="hit"} 2.0' in text
    fake.script(Reply(json=openai_completion("y" * 2000)))
    big = {"model": "m", "messages": [{"role": "user", "content": "big"}]}
    await post(proxy, big)
    assert (await post(proxy, big))[1]["x-llmproxy-cache"] == "miss"  # past max_entry_bytes: never stored


async def test_admin_cache_view_and_flush(start_proxy, fake_upstream):
    fake = await fake_upstream()
    proxy = await start_proxy(cfg(fake.url, extra="admin: {token: adm-1}"))
    await post(proxy, HELLO)
    await post(proxy, HELLO)
    auth = {"Authorization": "Bearer adm-1"}
    async with aiohttp.ClientSession() as s:
        async with s.get(proxy.url + "/admin/cache") as r:
            assert r.status == 401
        async with s.get(proxy.url + "/admin/cache", headers=auth) as r:
            view = await r.json()
        assert view["entries"] == 1 and view["hits"] == 1 and view["misses"] == 1 and view["hit_ratio"] == 0.5
        async with s.delete(proxy.url + "/admin/cache?model=nope", headers=auth) as r:
            assert r.status == 404
        async with s.delete(proxy.url + "/admin/cache?model=m", headers=auth) as r:
            assert (await r.json())["flushed"] == 1
    assert (await post(proxy, HELLO))[1]["x-llmproxy-cache"] == "miss"


async def test_access_line_says_cache_hit(start_proxy, fake_upstream, caplog):
    import logging

    fake = await fake_upstream()
    proxy = await start_proxy(cfg(fake.url))
    with caplog.at_level(logging.INFO, logger="llmproxy.access"):
        await post(proxy, HELLO)
        await post(proxy, HELLO)
    lines = [r.fields for r in caplog.records if r.name == "llmproxy.access"]
    assert [f["cache"] for f in lines] == ["miss", "hit"]
    assert lines[1]["deployment"] is None and lines[1]["model"] == "m"


async def test_cache_off_adds_no_header(start_proxy, fake_upstream):
    fake = await fake_upstream()
    proxy = await start_proxy(cfg(fake.url, cache="{enabled: false}"))
    _, h, _ = await post(proxy, HELLO)
    assert "x-llmproxy-cache" not in h


# --------------------------------------------------------------------------- Redis


async def test_redis_backend_serves_a_second_proxy(start_proxy, fake_upstream, redis_url):
    fake = await fake_upstream()
    fake.script(Reply(stream=openai_stream(["shared", " answer"])))
    text = cfg(fake.url, cache="{enabled: true, backend: redis}", extra=f"state: {{redis: '{redis_url}'}}")
    one = await start_proxy(text)
    two = await start_proxy(text)
    assert (await post(one, {**HELLO, "stream": True}))[1]["x-llmproxy-cache"] == "miss"
    _, h, raw = await post(two, {**HELLO, "stream": True})
    assert h["x-llmproxy-cache"] == "hit" and raw.endswith(b"data: [DONE]\n\n")
    _, h, body = await post(two, HELLO)
    assert h["x-llmproxy-cache"] == "hit" and b"shared answer" in body
    assert chat_calls(fake) == 1
    async with aiohttp.ClientSession() as s:
        async with s.get(one.url + "/admin/cache") as r:
            view = await r.json()
        assert view["backend"] == "redis" and view["entries"] == 1 and view["bytes"] > 0
        async with s.delete(one.url + "/admin/cache?model=m") as r:
            assert (await r.json())["flushed"] == 1
    assert (await post(two, HELLO))[1]["x-llmproxy-cache"] == "miss"


async def test_redis_stopped_mid_run_serves_from_upstream(start_proxy, fake_upstream, redis_factory, caplog):
    import logging

    fake = await fake_upstream()
    server = redis_factory()
    proxy = await start_proxy(cfg(fake.url, cache="{enabled: true, backend: redis}",
                                  extra=f"state: {{redis: '{server.url}'}}"))
    await post(proxy, HELLO)
    assert (await post(proxy, HELLO))[1]["x-llmproxy-cache"] == "hit"
    server.stop()
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            s, h, body = await asyncio.wait_for(post(proxy, HELLO), 10)
            assert s == 200 and h["x-llmproxy-cache"] == "miss" and b"hi" in body
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "unreachable" in r.getMessage()]
    assert len(warnings) == 1
    assert chat_calls(fake) == 4
    async with aiohttp.ClientSession() as s, s.get(proxy.url + "/metrics") as r:
        text = await r.text()
    assert "llmproxy_cache_backend_errors_total" in text and "llmproxy_redis_up 0.0" in text


async def test_a_stored_response_serves_a_stream_the_sdk_accumulates(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    fake.script(Reply(json=openai_response("unary first")))
    proxy = await start_proxy(cfg(fake.url))
    client = openai_client(proxy)
    await client.responses.create(model="m", input="q", store=False)
    async with client.responses.stream(model="m", input="q", store=False) as s:
        final = await s.get_final_response()
    assert final.output_text == "unary first"
    assert len(fake.seen) == 1


async def test_reload_keeps_entries_and_flushes_changed_models(tmp_path, start_proxy, fake_upstream):
    fake = await fake_upstream()
    other = await fake_upstream()
    path = tmp_path / "llmproxy.yaml"

    def write(url: str, model_cache: str = "") -> None:
        path.write_text(f"""
reload: {{enabled: false}}
cache: {{enabled: true}}
providers:
  up: {{type: openai, base_url: '{url}', api_key: sk-upstream-1}}
models:
  m:
    deployments: [{{provider: up, model: real-model}}]
    {model_cache}
  keep:
    deployments: [{{provider: up, model: real-model}}]
""")

    write(fake.url)
    proxy = await start_proxy.from_file(str(path))
    keep = {"model": "keep", "messages": [{"role": "user", "content": "hello"}]}
    await post(proxy, HELLO)
    await post(proxy, keep)

    async def reload() -> None:
        async with aiohttp.ClientSession() as s, s.post(proxy.url + "/admin/reload") as r:
            assert r.status == 200, await r.text()
        slot = proxy.app[__import__("llmproxy.cache.response_cache", fromlist=["RESPONSE_CACHE"]).RESPONSE_CACHE]
        await asyncio.gather(*slot._tasks)

    write(fake.url, "retry: {retries: 1}")  # same deployments: entries kept
    await reload()
    assert (await post(proxy, HELLO))[1]["x-llmproxy-cache"] == "hit"
    write(fake.url, "cache: false")
    await reload()
    assert (await post(proxy, HELLO))[1]["x-llmproxy-cache"] == "bypass"
    write(fake.url)
    await reload()
    assert (await post(proxy, HELLO))[1]["x-llmproxy-cache"] == "miss"  # flushed when it was turned off
    assert (await post(proxy, keep))[1]["x-llmproxy-cache"] == "hit"
    path.write_text(path.read_text().replace(fake.url, other.url, 1))  # both models move: both flushed
    await reload()
    assert (await post(proxy, keep))[1]["x-llmproxy-cache"] == "miss"
    assert len(other.seen) == 1


async def test_observability_off_still_caches(start_proxy, fake_upstream):
    fake = await fake_upstream()
    proxy = await start_proxy(cfg(fake.url, extra="metrics: {enabled: false}\n    logging: {access_log: false}"))
    await post(proxy, HELLO)
    assert (await post(proxy, HELLO))[1]["x-llmproxy-cache"] == "hit"
    assert chat_calls(fake) == 1


async def test_redis_values_are_compressed_with_a_ttl_and_bounded(start_proxy, fake_upstream, redis_url):
    import redis.asyncio as aioredis

    fake = await fake_upstream()
    fake.script(Reply(json=openai_completion("z" * 5000)))
    proxy = await start_proxy(cfg(fake.url, cache="{enabled: true, backend: redis, ttl: 120, max_entry_bytes: 8KiB}",
                                  extra=f"state: {{redis: '{redis_url}'}}"))
    await post(proxy, HELLO)
    r = aioredis.from_url(redis_url)
    try:
        (k,) = await r.keys("llmproxy:cache:*")
        value = await r.get(k)
        assert len(value) < 1000  # 5 KB of answer, compressed
        assert 0 < await r.ttl(k) <= 120
        fake.script(Reply(json=openai_completion("w" * 9000)))
        big = {"model": "m", "messages": [{"role": "user", "content": "big"}]}
        await post(proxy, big)
        assert len(await r.keys("llmproxy:cache:*")) == 1  # past max_entry_bytes: not stored
    finally:
        await r.aclose()


async def test_usage_chunk_only_for_clients_that_ask(start_proxy, fake_upstream, openai_client):
    fake = await fake_upstream()
    fake.script(Reply(stream=openai_stream(["a", "b"], usage=True)))
    proxy = await start_proxy(cfg(fake.url))
    client = openai_client(proxy)
    q = [{"role": "user", "content": "usage?"}]
    asked = await client.chat.completions.create(model="m", messages=q, stream=True,
                                                 stream_options={"include_usage": True})
    assert [c.usage.completion_tokens async for c in asked if c.usage] == [2]
    _, h, raw = await post(proxy, {"model": "m", "messages": q, "stream": True})
    assert h["x-llmproxy-cache"] == "hit" and b'"usage":{' not in raw and raw.endswith(b"data: [DONE]\n\n")
    again = await client.chat.completions.create(model="m", messages=q, stream=True,
                                                 stream_options={"include_usage": True})
    assert [c.usage.completion_tokens async for c in again if c.usage] == [2]
    # A stored non-stream answer as a stream: the usage chunk only when asked.
    q2 = [{"role": "user", "content": "unary usage"}]
    fake.script(Reply(json=openai_completion("u")))
    await client.chat.completions.create(model="m", messages=q2)
    _, _, raw = await post(proxy, {"model": "m", "messages": q2, "stream": True})
    assert b'"usage":{' not in raw
    s = await client.chat.completions.create(model="m", messages=q2, stream=True,
                                             stream_options={"include_usage": True})
    assert [c.usage.total_tokens async for c in s if c.usage] == [7]
    assert chat_calls(fake) == 2
