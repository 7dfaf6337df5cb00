"""Issue 13, item 4: one attempt ledger (``llmproxy/attempt.py``).

An attempt's verdict goes to the lease, the plan and the observation in one
call, and the observation's retry and fallback counts are the plan's.
Through the real proxy, against real fake upstreams.
"""

from __future__ import annotations

import aiohttp

from .fakes import Reply, openai_completion
from .test_observability_integration import CLIENT_KEY, get, scrape

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def config(bad: str, good: str) -> str:
    return f"""
    server: {{api_keys: [{CLIENT_KEY}]}}
    defaults:
      breaker: {{failures: 1, cooldown: 3600, when_all_open: fail_fast}}
    providers:
      bad: {{type: openai, base_url: "{bad}/v1", api_key: k1}}
      good: {{type: openai, base_url: "{good}/v1", api_key: k2}}
    models:
      gpt-4o:
        retry: {{retries: 0}}
        fallbacks: [backup]
        deployments: [{{provider: bad, model: m, id: bad/m}}]
      backup:
        deployments: [{{provider: good, model: m, id: good/m}}]
    """


async def test_a_fallback_taken_because_the_primary_was_benched_is_counted(start_proxy, fake_upstream):
    """The plan moves to the fallback both after a failed attempt and when the
    primary's breaker is open; the metric now reads the plan, so both count
    (the observation used to re-derive it from a failed attempt's group name
    and missed the second)."""
    bad, good = await fake_upstream(), await fake_upstream()
    bad.script(Reply(status=503, json={"error": {"message": "overloaded"}}))
    good.script(Reply(json=openai_completion("one")), Reply(json=openai_completion("two")))
    proxy = await start_proxy(config(bad.url, good.url))
    async with aiohttp.ClientSession() as s:
        for _ in range(2):
            async with s.post(proxy.v1 + "/chat/completions", json=CHAT,
                              headers={"Authorization": f"Bearer {CLIENT_KEY}"}) as r:
                assert r.status == 200 and r.headers["x-llmproxy-deployment"] == "good/m"
    assert len(bad.seen) == 1  # its breaker opened on the first request
    m = await scrape(proxy.url)
    assert get(m, "llmproxy_fallbacks_total", gen_ai_request_model="gpt-4o", fallback_model="backup") == 2
    assert get(m, "llmproxy_upstream_errors_total", gen_ai_provider_name="openai", deployment="bad/m",
               kind="status_5xx") == 1
    states = proxy.proxy.runtime.router.states
    assert states["bad/m"].breaker.state == "open"
    assert all(st.in_flight == 0 for st in states.values())  # every lease released once
