"""/ui in a real headless Chromium (Debian's ``chromium``, installed by .ci/run),
driven over the DevTools protocol with aiohttp's websocket client.

It loads the page, sees the test config's deployments, sees a breaker open
within seconds of the upstream going down (health probes, no client
traffic), presses the reload button, and saves a screenshot
(``$LLMPROXY_UI_SCREENSHOT``, else the test's tmp dir) for a person to look at.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from .fakes import Reply, Seen, openai_completion

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                                reason="chromium is not installed (.ci/run installs it)")


class Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        mid = next(self.ids)
        await self.ws.send_str(orjson.dumps({"id": mid, "method": method, "params": params}).decode())
        while True:
            msg = await asyncio.wait_for(self.ws.receive(), 30)
            doc = orjson.loads(msg.data)
            if doc.get("id") == mid:
                assert "error" not in doc, doc
                return doc["result"]

    async def js(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result["result"].get("value")

    async def until(self, expression: str, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = await self.js(expression)
            if value:
                return value
            assert time.monotonic() < deadline, f"page never satisfied: {expression}"
            await asyncio.sleep(0.1)


async def start_chromium(profile: Path) -> tuple[asyncio.subprocess.Process, str]:
    assert CHROMIUM is not None
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--remote-debugging-port=0", f"--user-data-dir={profile}",
        "--window-size=1280,1000", "about:blank",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while not port_file.exists() or not port_file.read_text().strip():
        assert time.monotonic() < deadline, "chromium did not start"
        await asyncio.sleep(0.1)
    port = port_file.read_text().split()[0]
    return proc, f"http://127.0.0.1:{port}"


UI_KEY = "sk-llmp-ui-team-0123456789abcdef"


def config(url: str) -> str:
    return f"""
    reload: {{enabled: false, poll_interval: 3600}}
    providers:
      flaky: {{type: openai, base_url: "{url}", api_key: sk-ui-secret-value}}
      local: {{type: mock}}
    defaults:
      breaker: {{failures: 2, cooldown: 60}}
    models:
      gpt-4o:
        deployments:
          - {{provider: flaky, model: gpt-4o, id: flaky-4o, health_check: {{enabled: true, interval: 0.05}}}}
      local:
        deployments: [{{provider: local, model: echo}}]
    keys: [{{name: ui-team, key: {UI_KEY}, budget: {{usd: 10, period: 1d}}}}]
    state: {{path: null}}
    """


async def test_the_page_shows_deployments_a_breaker_opening_and_reloads(start_proxy, fake_upstream, tmp_path):
    fake = await fake_upstream()
    up = {"ok": True}

    def respond(seen: Seen) -> Reply:
        if up["ok"]:
            return Reply(json={"object": "list", "data": []} if seen.method == "GET" else openai_completion())
        return Reply(status=503, json={"error": {"message": "unavailable"}})

    fake.responder = respond
    path = tmp_path / "llmproxy.yaml"
    path.write_text(config(fake.url))
    proxy = await start_proxy.from_file(str(path))
    async with aiohttp.ClientSession() as s:  # one request for the log panel
        async with s.post(proxy.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {UI_KEY}"},
                          json={"model": "local", "messages": [{"role": "user", "content": "hello page"}]}) as r:
            assert r.status == 200
    profile = tmp_path / "profile"
    profile.mkdir()
    chromium, devtools = await start_chromium(profile)
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(devtools + "/json/list") as r:
                targets = await r.json()
            ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            async with s.ws_connect(ws_url, max_msg_size=64 << 20) as ws:
                page = Page(ws)
                await page.call("Page.enable")
                await page.call("Page.navigate", url=proxy.url + "/ui")
                await page.until("document.body && document.body.dataset.loaded === '1'")
                ids = await page.until("""(() => { const r = [...document.querySelectorAll('#deployments tbody tr')]
                                         .map(tr => tr.dataset.deployment); return r.length >= 2 && r; })()""")
                assert set(ids) == {"flaky-4o", "local/echo"}
                assert await page.until("document.querySelector('#requests tbody').textContent.includes('local')")
                keys = await page.until("""(() => { const t = document.getElementById('keys').textContent;
                                          return t.includes('ui-team') && t; })()""")
                assert "$10.00 / 1d" in keys  # the key's budget and period, from /admin/keys
                text = await page.js("document.body.innerText")
                assert "sk-ui-secret-value" not in text and UI_KEY not in text

                up["ok"] = False  # the upstream goes down; probes open the breaker, the page shows it
                await page.until("document.querySelector('td[data-deployment=\"flaky-4o\"]')"
                                 ".textContent === 'open'")
                assert await page.js("document.getElementById('ready').textContent") in ("ready", "no usable deployment")

                before = proxy.app[__import__("llmproxy.server.reload", fromlist=["RELOADER"]).RELOADER].status.reloads
                await page.js("document.getElementById('reload').click()")
                status = await page.until("document.getElementById('reload-result').dataset.status")
                assert status == "200", await page.js("document.getElementById('reload-result').textContent")
                assert proxy.app[__import__("llmproxy.server.reload",
                                            fromlist=["RELOADER"]).RELOADER].status.reloads == before + 1
                await page.until("document.querySelectorAll('#history tbody tr').length >= 2")
                await page.js("document.querySelector('#history button') && "
                              "document.querySelector('#history button').click()")
                await page.until("!document.getElementById('diff').hidden")
                shot = await page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
                out = Path(os.environ.get("LLMPROXY_UI_SCREENSHOT") or tmp_path / "ui.png")
                out.write_bytes(base64.b64decode(shot["data"]))
                print(f"screenshot: {out}")
    finally:
        chromium.terminate()
        await chromium.wait()
