"""Retries, fallbacks, breakers, limits and cooling through the real proxy."""

from __future__ import annotations

import asyncio
import random
import resource
import socket

import aiohttp
import orjson
import pytest

from .fakes import Reply, Seen, openai_completion, openai_stream

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


async def post(session: aiohttp.ClientSession, url: str, body: dict | None = None,
               headers: dict[str, str] | None = None) -> tuple[int, str, dict]:
    async with session.post(url + "/v1/chat/completions", data=orjson.dumps(body or CHAT),
                            headers=headers or {}) as r:
        raw = await r.read()
        doc = orjson.loads(raw) if r.content_type == "application/json" else {"raw": raw}
        return r.status, r.headers.get("x-llmproxy-deployment", ""), doc


def providers(**urls: str) -> str:
    return "\n".join(f'  {name}: {{type: openai, base_url: "{url}/v1", api_key: k}}' for name, url in urls.items())


async def test_every_kind_of_upstream_failure_is_routed_around(start_proxy, fake_upstream):
    hang, five, limited, garbage, good = [await fake_upstream() for _ in range(5)]
    hang.script(Reply(hang=True))
    five.script(Reply(status=500, json={"error": {"message": "boom"}}))
    limited.script(Reply(status=429, json={"error": {"message": "slow down"}}, headers={"Retry-After": "60"}))
    garbage.script(Reply(body=b"\x00\x01 not json", content_type="application/json"))
    proxy = await start_proxy(f"""
providers:
{providers(refused=dead_url(), hang=hang.url, five=five.url, limited=limited.url, garbage=garbage.url,
           good=good.url)}
models:
  gpt-4o:
    strategy: round_robin
    retry: {{retries: 6, backoff: 0, budget_min: 100}}
    deployments:
      - {{provider: refused, model: m}}
      - {{provider: hang, model: m, timeouts: {{first_byte: 0.2}}}}
      - {{provider: five, model: m}}
      - {{provider: limited, model: m}}
      - {{provider: garbage, model: m}}
      - {{provider: good, model: m}}
""")
    async with aiohttp.ClientSession() as s:
        for _ in range(6):
            status, dep, doc = await post(s, proxy.url)
            assert (status, dep) == (200, "good/m"), doc
    states = proxy.proxy.runtime.router.states
    assert all(st.in_flight == 0 for st in states.values())
    assert states["limited/m"].cooling_for() > 50  # Retry-After honoured
    assert len(limited.seen) == 1  # ...so it was not asked again
    assert "cannot connect" in (states["refused/m"].last_error or "")


async def test_stream_fails_over_before_the_first_byte(start_proxy, fake_upstream):
    broken, good = await fake_upstream(), await fake_upstream()
    broken.script(Reply(stream=openai_stream(["x"]), drop_after=0))  # headers, then the connection drops
    good.script(Reply(stream=openai_stream(["fine"])))
    proxy = await start_proxy(f"""
providers:
{providers(broken=broken.url, good=good.url)}
models:
  gpt-4o:
    strategy: round_robin
    deployments: [{{provider: broken, model: m}}, {{provider: good, model: m}}]
""")
    async with aiohttp.ClientSession() as s:
        status, dep, doc = await post(s, proxy.url, {**CHAT, "stream": True})
    assert (status, dep) == (200, "good/m")
    assert b'"fine"' in doc["raw"] and doc["raw"].endswith(b"data: [DONE]\n\n")
    assert len(broken.seen) == 1


async def test_no_request_reaches_a_deployment_whose_breaker_is_open(start_proxy, fake_upstream):
    bad, good = await fake_upstream(), await fake_upstream()
    bad.script(Reply(status=503, json={"error": {"message": "down"}}))
    proxy = await start_proxy(f"""
providers:
{providers(bad=bad.url, good=good.url)}
defaults:
  breaker: {{failures: 3, cooldown: 3600}}
models:
  gpt-4o:
    strategy: round_robin
    deployments: [{{provider: bad, model: m}}, {{provider: good, model: m}}]
""")
    async with aiohttp.ClientSession() as s:
        results = [await post(s, proxy.url) for _ in range(30)]
        assert all(status == 200 for status, _, _ in results)
        assert len(bad.seen) == 3  # three failures opened it; none after
        async with s.get(proxy.url + "/admin/deployments") as r:
            deployments = {d["id"]: d for d in (await r.json())["deployments"]}
        async with s.get(proxy.url + "/admin/models") as r:
            models = (await r.json())["models"]
    assert deployments["bad/m"]["breaker"] == "open"
    assert deployments["bad/m"]["usable"] is False
    assert deployments["bad/m"]["failures"] == 3 and deployments["bad/m"]["last_error"] == "down"
    assert deployments["good/m"]["breaker"] == "closed" and deployments["good/m"]["requests"] == 30
    assert models[0]["model"] == "gpt-4o" and models[0]["strategy"] == "round_robin"
    assert [d["breaker"] for d in models[0]["deployments"]] == ["open", "closed"]


async def test_all_breakers_open_is_503(start_proxy, fake_upstream):
    bad = await fake_upstream()
    bad.script(Reply(status=500, json={"error": {"message": "down"}}))
    proxy = await start_proxy(f"""
providers:
{providers(bad=bad.url)}
defaults:
  breaker: {{failures: 1, cooldown: 3600, when_all_open: fail_fast}}
models:
  gpt-4o:
    retry: {{retries: 0}}
    deployments: [{{provider: bad, model: m}}]
""")
    async with aiohttp.ClientSession() as s:
        assert (await post(s, proxy.url))[0] == 500
        status, _, doc = await post(s, proxy.url)
        assert status == 503 and "circuit breakers open" in doc["error"]["message"]
        async with s.get(proxy.url + "/readyz") as r:
            assert r.status == 503
    assert len(bad.seen) == 1


async def test_when_everything_cools_the_request_waits_for_the_first_back(start_proxy, fake_upstream):
    only = await fake_upstream()
    only.script(
        Reply(status=429, json={"error": {"message": "rate limited"}}, headers={"retry-after-ms": "150"}),
        Reply(json=openai_completion("after the wait")),
    )
    proxy = await start_proxy(f"""
providers:
{providers(only=only.url)}
models:
  gpt-4o:
    deployments: [{{provider: only, model: m, queue_timeout: 5}}]
""")
    async with aiohttp.ClientSession() as s:
        status, _, doc = await post(s, proxy.url)
    assert status == 200 and doc["choices"][0]["message"]["content"] == "after the wait"
    assert len(only.seen) == 2


async def test_concurrency_limit_queues_then_moves_on_or_429s(start_proxy, fake_upstream):
    slow, other = await fake_upstream(), await fake_upstream()
    hold = asyncio.Event()
    slow.script(Reply(json=openai_completion("slow"), hold=hold))
    proxy = await start_proxy(f"""
providers:
{providers(slow=slow.url, other=other.url)}
models:
  solo:
    deployments: [{{provider: slow, model: m, max_concurrency: 1, queue_timeout: 0.2}}]
  pair:
    strategy: round_robin
    deployments:
      - {{provider: slow, model: m, max_concurrency: 1, queue_timeout: 0.2}}
      - {{provider: other, model: m}}
  patient:
    deployments: [{{provider: slow, model: m, max_concurrency: 1, queue_timeout: 30, id: slow-patient}}]
""")
    async with aiohttp.ClientSession() as s:
        first = asyncio.ensure_future(post(s, proxy.url, {**CHAT, "model": "solo"}))
        await asyncio.wait_for(slow.received.wait(), 5)
        # The only deployment is full: after queue_timeout, 429.
        status, _, doc = await post(s, proxy.url, {**CHAT, "model": "solo"})
        assert status == 429 and doc["error"]["code"] == "no_capacity"
        # With a second deployment, the request moves on at once.
        status, dep, _ = await post(s, proxy.url, {**CHAT, "model": "pair"})
        assert (status, dep) == (200, "other/m")
        # A patient queue gets the slot when it frees up.
        slow.received.clear()
        waiting = asyncio.ensure_future(post(s, proxy.url, {**CHAT, "model": "patient"}))
        other_state = proxy.proxy.runtime.router.states["slow-patient"]
        assert other_state.gate.held == 0
        hold.set()
        assert (await first)[0] == 200
        assert (await waiting)[0] == 200
    states = proxy.proxy.runtime.router.states
    assert states["slow/m"].gate.held == 0 and states["slow/m"].in_flight == 0


async def test_rpm_limit_moves_traffic_then_429s(start_proxy, fake_upstream):
    a, b = await fake_upstream(), await fake_upstream()
    proxy = await start_proxy(f"""
providers:
{providers(a=a.url, b=b.url)}
models:
  gpt-4o:
    deployments:
      - {{provider: a, model: m, rpm: 2, queue_timeout: 0.1}}
      - {{provider: b, model: m, rpm: 1, queue_timeout: 0.1, priority: 1}}
""")
    async with aiohttp.ClientSession() as s:
        results = [await post(s, proxy.url) for _ in range(4)]
    assert [r[1] for r in results[:3]] == ["a/m", "a/m", "b/m"]
    assert results[3][0] == 429
    assert (len(a.seen), len(b.seen)) == (2, 1)
    async with aiohttp.ClientSession() as s:
        async with s.get(proxy.url + "/metrics") as r:
            text = await r.text()
    limited = [line for line in text.splitlines() if line.startswith("llmproxy_rate_limited_total{")]
    assert any('deployment="a/m"' in line and 'kind="rpm"' in line and line.endswith(" 1.0")
               for line in limited), limited
    assert any('deployment="b/m"' in line and 'kind="rpm"' in line for line in limited), limited


async def test_tpm_limit_counts_estimated_then_real_tokens(start_proxy, fake_upstream):
    a = await fake_upstream()
    small = openai_completion()
    big = {**small, "usage": {"prompt_tokens": 100, "completion_tokens": 800, "total_tokens": 900}}
    a.script(Reply(json=small), Reply(json=big), Reply(json=small))
    proxy = await start_proxy(f"""
providers:
{providers(a=a.url)}
models:
  gpt-4o:
    deployments: [{{provider: a, model: m, tpm: 1000, queue_timeout: 0}}]
""")
    async with aiohttp.ClientSession() as s:
        # ~601 estimated, corrected to the 7 really used: the next one fits.
        assert (await post(s, proxy.url, {**CHAT, "max_tokens": 600}))[0] == 200
        # ~601 estimated, corrected up to 900 used.
        assert (await post(s, proxy.url, {**CHAT, "max_tokens": 600}))[0] == 200
        # 907 used in this minute: another ~601 does not fit.
        status, _, doc = await post(s, proxy.url, {**CHAT, "max_tokens": 600})
    assert status == 429 and doc["error"]["code"] == "no_capacity"
    assert len(a.seen) == 2


async def test_client_errors_are_not_retried_and_do_not_trip_the_breaker(start_proxy, fake_upstream):
    a, b = await fake_upstream(), await fake_upstream()
    a.script(Reply(status=400, json={"error": {"message": "bad tool schema", "type": "invalid_request_error"}}))
    b.script(Reply(status=400, json={"error": {"message": "bad tool schema", "type": "invalid_request_error"}}))
    proxy = await start_proxy(f"""
providers:
{providers(a=a.url, b=b.url)}
defaults:
  breaker: {{failures: 1}}
models:
  gpt-4o:
    strategy: round_robin
    deployments: [{{provider: a, model: m}}, {{provider: b, model: m}}]
""")
    async with aiohttp.ClientSession() as s:
        for _ in range(4):
            status, _, doc = await post(s, proxy.url)
            assert status == 400 and doc["error"]["message"] == "bad tool schema"
    assert (len(a.seen), len(b.seen)) == (2, 2)
    assert all(st.breaker.state == "closed" for st in proxy.proxy.runtime.router.states.values())


async def test_fallback_to_another_model_group(start_proxy, fake_upstream):
    down, backup = await fake_upstream(), await fake_upstream()
    down.script(Reply(status=500, json={"error": {"message": "down"}}))
    backup.script(Reply(json=openai_completion("from the fallback")))
    proxy = await start_proxy(f"""
providers:
{providers(down=down.url, backup=backup.url)}
models:
  gpt-4o:
    retry: {{retries: 1, backoff: 0}}
    fallbacks: [gpt-4o-mini]
    deployments: [{{provider: down, model: big}}]
  gpt-4o-mini:
    deployments: [{{provider: backup, model: small}}]
""")
    async with aiohttp.ClientSession() as s:
        status, dep, doc = await post(s, proxy.url)
    assert (status, dep) == (200, "backup/small")
    assert doc["choices"][0]["message"]["content"] == "from the fallback"
    assert len(down.seen) == 2  # the first try and one retry
    assert backup.seen[0].json["model"] == "small"


async def test_retry_budget_stops_retries(start_proxy, fake_upstream):
    a, b = await fake_upstream(), await fake_upstream()
    a.script(Reply(status=500, json={"error": {"message": "down"}}))
    proxy = await start_proxy(f"""
providers:
{providers(a=a.url, b=b.url)}
models:
  gpt-4o:
    strategy: round_robin
    retry: {{retries: 3, budget_ratio: 0, budget_min: 1}}
    deployments: [{{provider: a, model: m}}, {{provider: b, model: m}}]
""")
    async with aiohttp.ClientSession() as s:
        first = await post(s, proxy.url)  # a fails, the one budgeted retry goes to b
        assert first[:2] == (200, "b/m")
        second = await post(s, proxy.url)  # round robin: b
        assert second[:2] == (200, "b/m")
        third = await post(s, proxy.url)  # a fails again, and the budget is spent
        assert third[0] == 500
    assert len(a.seen) == 2


async def test_sticky_sessions_through_the_proxy(start_proxy, fake_upstream):
    ups = [await fake_upstream() for _ in range(3)]
    proxy = await start_proxy(f"""
providers:
{providers(u0=ups[0].url, u1=ups[1].url, u2=ups[2].url)}
models:
  gpt-4o:
    strategy: sticky
    deployments: [{{provider: u0, model: m}}, {{provider: u1, model: m}}, {{provider: u2, model: m}}]
""")
    async with aiohttp.ClientSession() as s:
        by_header = {(await post(s, proxy.url, headers={"x-session-id": "abc"}))[1] for _ in range(5)}
        by_user = {(await post(s, proxy.url, {**CHAT, "user": "u-42"}))[1] for _ in range(5)}
        no_session = {(await post(s, proxy.url))[1] for _ in range(6)}
    assert len(by_header) == 1 and len(by_user) == 1
    assert len(no_session) == 3  # without a key: by weight, all three


@pytest.mark.slow
async def test_storm_of_faults_and_disconnects_leaves_nothing_held(start_proxy, fake_upstream):
    """2,000 concurrent requests, random upstream faults, random client
    disconnects: afterwards every in-flight count, gate and probe is free.

    Deterministic on a slow machine: the faults that only a timeout ends (a
    hang, a stalled stream) come from f0 and f2, which have short timeouts;
    f1 answers at once, right or wrong, under timeouts loop lag does not reach, so
    its successes can't all turn into 504s when the machine is busy. Clients
    that stay wait 90 s, not a guess at the machine's speed, and the end
    state is awaited as a whole, not for a fixed number of ticks."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 16384)), hard))
    rng = random.Random(7)
    fakes = [await fake_upstream() for _ in range(3)]
    never = asyncio.Event()

    def chaos(timing_faults: bool):
        def respond(seen: Seen) -> Reply:
            stream = seen.json.get("stream") is True
            roll = rng.random()
            if roll < 0.45 or (roll >= 0.80 and not timing_faults):
                return Reply(stream=openai_stream(["a", "b"])) if stream else Reply(json=openai_completion())
            if roll < 0.55:
                return Reply(status=500, json={"error": {"message": "boom"}})
            if roll < 0.62:
                return Reply(status=429, json={"error": {"message": "slow"}}, headers={"retry-after-ms": "20"})
            if roll < 0.70:
                return Reply(body=b"garbage", content_type="application/json")
            if roll < 0.80:
                return Reply(stream=openai_stream(["a", "b", "c"]), drop_after=2)
            if roll < 0.90:
                return Reply(stream=openai_stream(["a", "b", "c"]), pause_after=1, resume=never)
            return Reply(hang=True)
        return respond

    fakes[0].responder = chaos(timing_faults=True)
    fakes[1].responder = chaos(timing_faults=False)
    fakes[2].responder = chaos(timing_faults=True)
    proxy = await start_proxy(f"""
providers:
{providers(f0=fakes[0].url, f1=fakes[1].url, f2=fakes[2].url)}
defaults:
  timeouts: {{first_byte: 0.5, idle: 0.3, total: 5}}
  breaker: {{failures: 1000, cooldown: 0.2, failure_ratio: 0.95, min_requests: 50}}
  retry: {{retries: 2, backoff: 0.01, budget_ratio: 0.5}}
models:
  gpt-4o:
    strategy: least_connections
    deployments:
      - {{provider: f0, model: m, max_concurrency: 300, queue_timeout: 0.3}}
      - {{provider: f1, model: m, rpm: 100000, tpm: 100000000, timeouts: {{first_byte: 30, idle: 30, total: 60}}}}
      - {{provider: f2, model: m, max_concurrency: 500, queue_timeout: 0.3}}
""")
    outcomes: list[str] = []

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        body = orjson.dumps({**CHAT, "stream": i % 3 == 0})
        try:
            async with asyncio.timeout(rng.choice([0.05, 0.2, 90, 90, 90])):
                async with session.post(proxy.url + "/v1/chat/completions", data=body) as r:
                    await r.read()
                    outcomes.append(str(r.status))
        except TimeoutError:
            outcomes.append("disconnected")
        except aiohttp.ClientError:
            outcomes.append("client-error")

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True)) as s:
        await asyncio.gather(*(client(i, s) for i in range(2000)))
    assert len(outcomes) == 2000
    assert "200" in outcomes and "disconnected" in outcomes
    states = list(proxy.proxy.runtime.router.states.values())

    def settled() -> bool:
        # Everything asserted below, at once: a slot handed from a finished
        # request to a queued one is held before the new lease counts in flight.
        return all(st.in_flight == 0 and st.gate.held == 0 and st.breaker._probes == 0 for st in states)

    async with asyncio.timeout(120):  # handlers of disconnected clients finish their finally blocks
        while not settled():
            await asyncio.sleep(0.01)
    for st in states:
        assert st.in_flight == 0, st.id
        assert st.gate.held == 0, st.id
        assert st.breaker._probes == 0, st.id
