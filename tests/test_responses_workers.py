"""Stored Responses in a real ``serve --workers 2`` group without Redis: a
follow-up, a GET or a DELETE that the kernel hands to the other worker
finds the response (the workers ask each other over their private sockets)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import orjson
import pytest

from llmproxy.config.tree import ResponsesConfig
from llmproxy.server.response_store import MemoryStore, StoreUnavailable
from llmproxy.server.response_store_group import GroupStore
from llmproxy.server.siblings import Siblings
from llmproxy.server.workers import WorkerInfo

from .fakes import Reply, openai_completion
from .processes import Group


async def call(g: Group, method: str, path: str, body: Any = None) -> tuple[int, str | None, dict[str, Any]]:
    async with g.session.request(method, g.url + path, data=orjson.dumps(body) if body is not None else None,
                                 headers={"Content-Type": "application/json"}) as resp:
        return resp.status, resp.headers.get("x-llmproxy-worker"), orjson.loads(await resp.read())


async def test_a_response_made_on_one_worker_is_continued_fetched_and_deleted_on_the_other(
        tmp_path: Path, fake_upstream) -> None:
    fake = await fake_upstream()
    fake.script(Reply(json=openai_completion("Paris.")), Reply(json=openai_completion("About 2.1 million.")))
    cfg = tmp_path / "llmproxy.yaml"
    cfg.write_text(textwrap.dedent(f"""
    providers:
      up: {{type: openai, base_url: "{fake.url}/v1", api_key: sk-upstream-secret, responses: translate}}
    models:
      m: {{deployments: [{{provider: up, model: served-model}}], retry: {{retries: 0}}}}
    logging: {{level: warning}}
    """))
    g = Group(cfg, tmp_path / "proxy.log")
    try:
        await g.start()
        status, maker, first = await call(g, "POST", "/v1/responses", {"model": "m", "input": "Capital of France?"})
        assert status == 200 and maker in ("0", "1")
        other = {"0": "1", "1": "0"}[maker]
        # Every connection is new (force_close): the kernel spreads them over both workers.
        workers = set()
        for _ in range(200):
            status, worker, got = await call(g, "GET", f"/v1/responses/{first['id']}")
            assert status == 200 and got["id"] == first["id"], got
            workers.add(worker)
            if other in workers:
                break
        assert workers >= {other}
        for _ in range(200):
            status, worker, second = await call(g, "POST", "/v1/responses", {
                "model": "m", "input": "Population?", "previous_response_id": first["id"]})
            assert status == 200, second
            if worker == other:
                break
        assert worker == other
        assert fake.seen[-1].json["messages"] == [{"role": "user", "content": "Capital of France?"},
                                                  {"role": "assistant", "content": "Paris."},
                                                  {"role": "user", "content": "Population?"}]
        for _ in range(100):  # until a DELETE lands on the worker that did not make its response
            status, maker, made = await call(g, "POST", "/v1/responses", {"model": "m", "input": "x"})
            status, worker, doc = await call(g, "DELETE", f"/v1/responses/{made['id']}")
            assert status == 200 and doc == {"id": made["id"], "object": "response", "deleted": True}
            if worker != maker:
                break
        assert worker != maker
        status, _, doc = await call(g, "DELETE", f"/v1/responses/{first['id']}")
        assert status == 200 and doc["deleted"] is True
        gone = set()
        for _ in range(200):
            status, worker, doc = await call(g, "GET", f"/v1/responses/{first['id']}")
            assert status == 404 and doc["error"]["code"] == "not_found"
            gone.add(worker)
            if len(gone) == 2:
                break
        assert gone == {"0", "1"}
    finally:
        await g.stop()


async def test_a_sibling_that_does_not_answer_is_a_503_not_a_miss(tmp_path: Path) -> None:
    """Worker 1's socket is not there (restarting): worker 0 cannot say the response does not exist."""
    store = GroupStore(MemoryStore(lambda: 0.0, ResponsesConfig), Siblings(WorkerInfo(0, 2, tmp_path)))
    with pytest.raises(StoreUnavailable) as info:
        await store.get("resp_elsewhere")
    assert info.value.status == 503 and "did not answer" in info.value.message
    with pytest.raises(StoreUnavailable):
        await store.delete("resp_elsewhere")
    await store.siblings.close()
