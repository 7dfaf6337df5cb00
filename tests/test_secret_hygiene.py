"""No credential of the config leaves, whatever an upstream echoes; text logs are one line a record.

Fake upstreams echo the credentials they were sent (in an error body, a 200
answer, a stream data event, a stream error event); the client's bytes, the
captured log output, ``/metrics`` and ``/admin/*`` must not hold any of them.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import aiohttp
import orjson
import pytest

from llmproxy.observe.logs import REDACTOR, setup_logging
from llmproxy.observe.redact import (
    MASK,
    Redactor,
    secrets_in_raw_config,
    url_credentials,
    url_without_userinfo,
)

from .fakes import FakeUpstream, Reply, Seen, openai_completion, openai_stream, sse
from .test_bedrock import exception as bedrock_exception
from .test_bedrock import text_stream as bedrock_text_stream

# Unshaped on purpose: only the redactor's knowledge of the config can mask them.
K_API = "unshaped-api-key-0a1b2c3d4e"
K_HDR = "unshaped-header-val-5f6g7h"
K_FILE = "unshaped-file-key-8i9j0k1l"
K_PASS = "unshaped-pass-2m3n4o5p"
K_USER = "svc-user"
K_BASIC = base64.b64encode(f"{K_USER}:{K_PASS}".encode()).decode()
AWS_ID = "AKIDUNSHAPED12345678"
AWS_SECRET = "unshaped/aws+secret-6q7r8s9t0u"
AWS_TOKEN = "unshaped-aws-session-1v2w3x4y"
ADMIN = "unshaped-admin-token-5z6a7b"
CLIENT = "unshaped-client-key-8c9d0e"
ALL_SECRETS = (K_API, K_HDR, K_FILE, K_PASS, K_BASIC, f"{K_USER}:{K_PASS}", AWS_ID, AWS_SECRET, AWS_TOKEN,
               ADMIN, CLIENT)
UPSTREAM_KEY = "sk-proj-upstreamkey0123456789abcdefXYZ"


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quiet = logging.getLogger("watchfiles").level
    stream = io.StringIO()
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("watchfiles").setLevel(quiet)


def log_text(stream: io.StringIO) -> str:
    for h in logging.getLogger().handlers:
        h.flush()
    return stream.getvalue()


def hostport(url: str) -> str:
    return url.split("://", 1)[1]


# --------------------------------------------------------------------------- the broad rule


def echo(seen: Seen) -> str:
    return "you sent " + orjson.dumps({str(k): v for k, v in seen.headers.items()}).decode()


def echo_responder(seen: Seen) -> Reply:
    """Every request header echoed back: mode a (error), b (200), c (stream data), d (stream error)."""
    mode = re.search(rb"mode-(\w)", seen.body)
    assert mode is not None
    m, text = mode.group(1), echo(seen)
    if "/model/" in seen.path:  # Bedrock's wire format
        if m == b"a":
            return Reply(status=403, json={"message": text},
                         headers={"x-amzn-ErrorType": "UnrecognizedClientException"})
        if m == b"b":
            return Reply(json={"output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                               "stopReason": "end_turn",
                               "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}})
        stream = bedrock_text_stream(text) if m == b"c" else [
            *bedrock_text_stream("partial")[:2], bedrock_exception("ValidationException", text)]
        return Reply(stream=stream, content_type="application/vnd.amazon.eventstream")
    if m == b"a":
        return Reply(status=401, json={"error": {"message": f"Incorrect API key provided: {text}",
                                                 "type": "invalid_request_error", "code": "invalid_api_key"}})
    if m == b"b":
        return Reply(json=openai_completion(text))
    if m == b"c":
        return Reply(stream=openai_stream([text]))
    return Reply(stream=[*openai_stream(["partial"])[:2],
                         sse({"error": {"message": f"Incorrect API key provided: {text}",
                                        "type": "invalid_request_error", "code": "invalid_api_key"}})])


def everywhere_yaml(url: str, key_file: Path, log_format: str) -> str:
    user_url = url.replace("://", f"://{K_USER}:{K_PASS}@", 1)
    return f"""
    server: {{api_keys: [{CLIENT}]}}
    admin: {{token: {ADMIN}}}
    logging: {{level: debug, format: {log_format}}}
    reload: {{enabled: false}}
    providers:
      keyed: {{type: openai, base_url: "{url}/v1", api_key: {K_API},
               headers: {{X-Api-Token: {K_HDR}, X-Trace: visible}}}}
      filed: {{type: openai, base_url: "{url}/v1", api_key_file: "{key_file}"}}
      userinfo: {{type: openai, base_url: "{user_url}/v1"}}
      aws: {{type: bedrock, region: us-east-1, base_url: "{url}", aws_access_key_id: {AWS_ID},
             aws_secret_access_key: "{AWS_SECRET}", aws_session_token: {AWS_TOKEN}}}
    models:
      m-keyed: {{retry: {{retries: 0}}, deployments: [{{provider: keyed, model: gpt-4o}}]}}
      m-filed: {{retry: {{retries: 0}}, deployments: [{{provider: filed, model: gpt-4o}}]}}
      m-userinfo: {{retry: {{retries: 0}}, deployments: [{{provider: userinfo, model: gpt-4o}}]}}
      m-aws: {{retry: {{retries: 0}}, deployments: [{{provider: aws, model: "anthropic.claude-3-haiku-20240307-v1:0"}}]}}
    """


@pytest.mark.parametrize("log_format", ["json", "text"])
async def test_no_credential_of_the_config_reaches_clients_logs_metrics_or_admin(
    start_proxy, fake_upstream, captured_logs, caplog, tmp_path, log_format
):
    caplog.set_level(logging.DEBUG)
    fake = await fake_upstream()
    fake.responder = echo_responder
    key_file = tmp_path / "key.txt"
    key_file.write_text(K_FILE + "\n")
    proxy = await start_proxy(everywhere_yaml(fake.url, key_file, log_format))
    setup_logging("debug", log_format, proxy.app[REDACTOR], stream=captured_logs)
    client_bytes: list[bytes] = []
    auth = {"Authorization": f"Bearer {CLIENT}"}
    async with aiohttp.ClientSession() as s:
        for model in ("m-keyed", "m-filed", "m-userinfo", "m-aws"):
            for mode in "abcd":
                body = {"model": model, "messages": [{"role": "user", "content": f"mode-{mode}"}],
                        "stream": mode in "cd", "max_tokens": 10}
                async with s.post(proxy.v1 + "/chat/completions", json=body, headers=auth) as r:
                    client_bytes.append(await r.read())
                    assert r.status == (200 if mode != "a" else r.status), (model, mode, client_bytes[-1])
        admin = {"Authorization": f"Bearer {ADMIN}"}
        for path in ("/admin/config", "/admin/deployments", "/admin/models"):
            async with s.get(proxy.url + path, headers=admin) as r:
                assert r.status == 200
                client_bytes.append(await r.read())
        async with s.get(proxy.url + "/metrics") as r:
            client_bytes.append(await r.read())

    # The upstream really got every credential (or there would be nothing to leak) ...
    sent = " ".join(echo(seen) for seen in fake.seen)
    for secret in (K_API, K_HDR, K_FILE, K_BASIC, AWS_ID, AWS_TOKEN):
        assert secret in sent, secret
    # ... echoed it every way, and none came back out.
    assert len(fake.seen) == 16
    everything = b"\n".join(client_bytes).decode()
    logs = log_text(captured_logs)
    assert "you sent" in everything and MASK in everything
    assert "llmproxy.access" in logs
    for secret in ALL_SECRETS:
        assert secret not in everything, secret
        assert secret not in logs, secret
        assert secret not in caplog.text, secret
    # Masking kept every answer well-formed: 200 bodies are JSON, streams are SSE of JSON.
    for raw in client_bytes[:16]:
        if raw.startswith(b"data: "):
            for event in raw.split(b"\n\n"):
                if event and event != b"data: [DONE]":
                    assert event.startswith(b"data: ")
                    orjson.loads(event[6:])
        else:
            orjson.loads(raw)


# --------------------------------------------------------------------------- stream error events


@pytest.mark.parametrize("key", [UPSTREAM_KEY, K_API], ids=["shaped", "unshaped"])
async def test_openai_stream_error_event_quoting_the_key_is_masked(start_proxy, fake_upstream, key):
    fake = await fake_upstream()
    fake.script(Reply(stream=[
        *openai_stream(["hello"])[:2],
        sse({"error": {"message": f"Incorrect API key provided: Bearer {key}. You can find your API key at "
                                  "https://platform.openai.com/account/api-keys.",
                       "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}),
    ]))
    proxy = await start_proxy(f"""
    providers:
      up: {{type: openai, base_url: "{fake.url}/v1", api_key: "{key}"}}
    models:
      gpt-4o: {{deployments: [{{provider: up, model: gpt-4o}}]}}
    """)
    async with aiohttp.ClientSession() as s:
        async with s.post(proxy.v1 + "/chat/completions",
                          json={"model": "gpt-4o", "stream": True, "messages": [{"role": "user", "content": "x"}]}) as r:
            assert r.status == 200
            raw = await r.read()
    assert key.encode() not in raw
    events = [orjson.loads(e[6:]) for e in raw.split(b"\n\n") if e]
    assert events[1]["choices"][0]["delta"]["content"] == "hello"
    assert events[-1]["error"] == {"message": f"Incorrect API key provided: Bearer {MASK}. You can find your API "
                                              "key at https://platform.openai.com/account/api-keys.",
                                   "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}


async def test_a_200_answer_echoing_the_key_is_masked_and_stays_json(start_proxy, fake_upstream):
    fake = await fake_upstream()
    fake.script(Reply(json=openai_completion(f"your key is {K_API}")))
    proxy = await start_proxy(f"""
    providers:
      up: {{type: openai, base_url: "{fake.url}/v1", api_key: {K_API}}}
    models:
      gpt-4o: {{deployments: [{{provider: up, model: gpt-4o}}]}}
    """)
    async with aiohttp.ClientSession() as s:
        async with s.post(proxy.v1 + "/chat/completions",
                          json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}) as r:
            doc = await r.json()
    assert doc["choices"][0]["message"]["content"] == f"your key is {MASK}"


# --------------------------------------------------------------------------- last_error


async def test_admin_deployments_last_error_is_masked_and_stays_masked_after_the_key_rotates(
    start_proxy, fake_upstream, tmp_path
):
    fake = await fake_upstream()
    fake.script(Reply(status=401, json={"error": {"message": f"Incorrect API key provided: {K_API}",
                                                  "code": "invalid_api_key"}}))
    path = tmp_path / "llmproxy.yaml"
    yaml_text = textwrap.dedent(f"""
    reload: {{enabled: false}}
    providers:
      up: {{type: openai, base_url: "{fake.url}/v1", api_key: {K_API}}}
    models:
      gpt-4o: {{deployments: [{{provider: up, model: gpt-4o, id: up/gpt-4o}}]}}
    """)
    path.write_text(yaml_text)
    proxy = await start_proxy.from_file(str(path))
    async with aiohttp.ClientSession() as s:
        async with s.post(proxy.v1 + "/chat/completions",
                          json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}) as r:
            assert r.status == 401
        async with s.get(proxy.url + "/admin/deployments") as r:
            raw = await r.text()
        (dep,) = orjson.loads(raw)["deployments"]
        assert K_API not in raw
        assert dep["last_error"] == f"Incorrect API key provided: {MASK}"
        # A rotated key: the redactor forgets the old one, the state (same id) is kept.
        path.write_text(yaml_text.replace(K_API, "unshaped-new-key-99887766"))
        async with s.post(proxy.url + "/admin/reload") as r:
            assert r.status == 200
        async with s.get(proxy.url + "/admin/deployments") as r:
            raw = await r.text()
    assert K_API not in raw
    assert orjson.loads(raw)["deployments"][0]["last_error"] == f"Incorrect API key provided: {MASK}"


# --------------------------------------------------------------------------- base_url userinfo


def echo_authorization(seen: Seen) -> Reply:
    got = seen.headers.get("Authorization", "none")
    if b"mode-error" in seen.body:
        return Reply(status=401, body=f"denied for Authorization: {got} ({got.split()[-1]})".encode(),
                     content_type="text/plain")
    if b"mode-stream" in seen.body:
        return Reply(stream=[*openai_stream(["x"])[:2],
                             sse({"error": {"message": f"bad credentials {got.split()[-1]}", "type": "auth"}})])
    return Reply(json=openai_completion(f"you are {got.split()[-1]}"))


async def test_base_url_userinfo_keeps_working_and_is_masked_everywhere(
    start_proxy, fake_upstream, captured_logs, caplog
):
    caplog.set_level(logging.DEBUG)
    fake = await fake_upstream()
    fake.responder = echo_authorization
    user_url = fake.url.replace("://", f"://{K_USER}:{K_PASS}@", 1) + "/v1"
    proxy = await start_proxy(f"""
    providers:
      up: {{type: openai, base_url: "{user_url}"}}
    models:
      gpt-4o: {{retry: {{retries: 0}}, deployments: [{{provider: up, model: gpt-4o}}]}}
    """)
    setup_logging("debug", "json", proxy.app[REDACTOR], stream=captured_logs)
    seen: list[bytes] = []
    async with aiohttp.ClientSession() as s:
        for mode, stream in (("ok", False), ("error", False), ("stream", True)):
            body = {"model": "gpt-4o", "stream": stream, "messages": [{"role": "user", "content": f"mode-{mode}"}]}
            async with s.post(proxy.v1 + "/chat/completions", json=body) as r:
                seen.append(await r.read())
        async with s.get(proxy.url + "/admin/config") as r:
            config_view = await r.json()
        async with s.get(proxy.url + "/admin/deployments") as r:
            seen.append(await r.read())
    # It kept working: the upstream got the Basic credential aiohttp makes of userinfo.
    assert fake.seen[0].headers["Authorization"] == f"Basic {K_BASIC}"
    assert orjson.loads(seen[0])["choices"][0]["message"]["content"] == f"you are {MASK}"
    assert config_view["config"]["providers"]["up"]["base_url"] == f"http://{MASK}@{hostport(fake.url)}/v1"
    text = b"\n".join(seen).decode() + orjson.dumps(config_view).decode() + log_text(captured_logs) + caplog.text
    for secret in (K_PASS, K_BASIC, f"{K_USER}:{K_PASS}"):
        assert secret not in text, secret


def test_url_credentials_and_the_shown_url() -> None:
    url = "https://svc:p%40ss%2Fword99@api.example.com:8443/v1"
    assert url_without_userinfo(url) == f"https://{MASK}@api.example.com:8443/v1"
    assert url_without_userinfo("https://api.example.com/v1?x=a@b") == "https://api.example.com/v1?x=a@b"
    found = url_credentials(url)
    assert {"p%40ss%2Fword99", "p@ss/word99", "svc:p@ss/word99",
            base64.b64encode(b"svc:p@ss/word99").decode()} <= set(found)
    assert url_credentials("https://api.example.com/v1") == []


def test_a_rejected_base_url_is_quoted_without_its_userinfo() -> None:
    from llmproxy.config.tree import ConfigError, parse_config

    with pytest.raises(ConfigError) as err:
        parse_config(f"""
        providers:
          up: {{type: openai, base_url: "ftp://{K_USER}:{K_PASS}@h/v1"}}
        models:
          m: {{deployments: [{{provider: up, model: x}}]}}
        """, env={})
    assert K_PASS not in str(err.value) and f"ftp://{MASK}@h/v1" in str(err.value)


@pytest.mark.parametrize("provider, ok", [
    ("{type: openai, base_url: 'http://u:pw123456@h/v1'}", True),
    ("{type: azure, base_url: 'http://u:pw123456@h', api_key: k, api_version: '2024-10-21'}", True),
    ("{type: anthropic, base_url: 'http://u:pw123456@h', api_key: k}", True),
    ("{type: openai, base_url: 'http://u:pw123456@h/v1', api_key: k}", False),
    ("{type: openai, base_url: 'http://u:pw123456@h/v1', headers: {authorization: Bearer x}}", False),
    ("{type: cohere, base_url: 'http://u:pw123456@h', api_key: k}", False),
    ("{type: bedrock, region: r, base_url: 'http://u:pw123456@h', aws_access_key_id: AKIDX1234567,"
     " aws_secret_access_key: s}", False),
])
def test_userinfo_with_an_authorization_of_its_own_is_a_config_error(provider: str, ok: bool) -> None:
    """aiohttp refuses to add userinfo's Basic credential to an Authorization
    header (every request was a 500): said at load, naming the key."""
    from llmproxy.config.tree import ConfigError, parse_config

    text = f"providers: {{p: {provider}}}\nmodels: {{m: {{deployments: [{{provider: p, model: x}}]}}}}"
    if ok:
        parse_config(text, env={})
        return
    with pytest.raises(ConfigError) as err:
        parse_config(text, env={})
    (problem,) = err.value.problems
    assert problem.startswith("providers.p.base_url: has user:password@") and "pw123456" not in problem


# --------------------------------------------------------------------------- the redactor's API


def test_relaying_events_without_a_secret_hands_back_the_same_bytes() -> None:
    screen = Redactor(secrets=[K_API, K_HDR]).screen([K_API, K_HDR])
    data = b"".join(openai_stream(["a", "b", "c"]))
    assert screen.events(data) is data
    assert screen.body(data) is data


def test_relaying_events_masks_only_the_events_that_need_it() -> None:
    r = Redactor(secrets=[K_API])
    ok = sse({"choices": [{"delta": {"content": "sk-lookalike-but-content-0123456789"}}]})
    leak = sse({"choices": [{"delta": {"content": f"{K_API}"}}]})
    err = sse({"error": {"message": "Incorrect API key provided: sk-abcdefghijklmnopqrstuvwxyz", "code": None}})
    out = r.screen([K_API]).events(ok + leak + err + b"data: [DONE]\n\n")
    events = out.split(b"\n\n")
    assert events[0] + b"\n\n" == ok  # not an error, no known secret: untouched, shapes and all
    assert orjson.loads(events[1][6:])["choices"][0]["delta"]["content"] == MASK
    assert orjson.loads(events[2][6:])["error"] == {"message": f"Incorrect API key provided: {MASK}", "code": None}
    assert events[3] == b"data: [DONE]" and out.endswith(b"\n\n")


@pytest.mark.parametrize("secret", [AWS_SECRET, "a/b+c/d=e/f+g/h=", "pässwörd-ünïcode"])
def test_secrets_are_found_and_masked_in_their_escaped_forms(secret: str) -> None:
    r = Redactor(secrets=[secret])
    screen = r.screen([secret])
    forms = {secret, secret.replace("/", "\\/"), quote(secret, safe=""), orjson.dumps(secret).decode()[1:-1],
             json.dumps(secret)[1:-1]}
    for form in forms:
        body = f'{{"m": "said {form}"}}'.encode()
        assert screen.hit(body), form
        assert secret not in orjson.loads(screen.body(body))["m"], form
        assert form not in r.redact(f"said {form}")


def test_secrets_in_raw_config_walks_a_rejected_document() -> None:
    import yaml

    doc = yaml.safe_load(textwrap.dedent(f"""
    server: {{api_keys: [{CLIENT}, 12345678901]}}
    admin: {{token: "${{ADMIN_TOKEN}}"}}
    tracing: {{headers: {{Authorization: "Bearer trace-secret-0001", X-Plain: plain-value}}}}
    providers:
      a: {{type: openai, api_key: {K_API}, api_key_file: /run/secrets/key, headers: {{X-Api-Token: {K_HDR}}},
           base_url: "https://{K_USER}:{K_PASS}@h/v1"}}
      b: {{type: bedrock, aws_access_key_id: {AWS_ID}, aws_secret_access_key: [{AWS_SECRET}],
           aws_session_token: {AWS_TOKEN}}}
      c: {{type: made-up, my_password: hunter2-hunter2}}
    models:
      m: {{strategy: sticky, sticky: {{session_key: user}}, deployments: [{{provider: a, model: x}}]}}
    """))
    found = secrets_in_raw_config(doc, env={"ADMIN_TOKEN": ADMIN})
    assert {CLIENT, "12345678901", ADMIN, "Bearer trace-secret-0001", K_API, K_HDR, K_PASS, K_BASIC, AWS_ID,
            AWS_SECRET, AWS_TOKEN, "hunter2-hunter2"} <= found
    assert not {"plain-value", "/run/secrets/key", "user", "x", "sticky", "openai"} & found
    assert secrets_in_raw_config(None) == set() and secrets_in_raw_config([[[]]]) == set()
    # What a caller does with a rejected document: mask its values next to the active ones.
    r = Redactor(secrets=[*found])
    assert r.redact(f"providers.a.api_key must be a string, got {K_API!r}") == \
        f"providers.a.api_key must be a string, got '{MASK}'"


@pytest.mark.parametrize("text", [
    "Authorization: Bearer sk-abcdefgh", "Authorization: Bearer abcdefgh12345678",
    "authorization: basic dXNlcjpwYXNzd29yZA==", '{"Authorization": "Bearer zzzzzzzzzzzz"}',
    "Authorization: Token zzzzzzzzzzzz",
])
def test_a_real_token_after_a_scheme_is_still_masked(text: str) -> None:
    out = Redactor().redact(text)
    assert MASK in out and out.rsplit(MASK, 1)[1] in ("", '"}')


async def test_admin_401_names_the_scheme_unmangled(start_proxy):
    proxy = await start_proxy(f"""
    admin: {{token: {ADMIN}}}
    providers: {{m: {{type: mock}}}}
    models: {{x: {{deployments: [{{provider: m, model: x}}]}}}}
    """)
    async with aiohttp.ClientSession() as s:
        async with s.get(proxy.url + "/admin/config", headers={"Authorization": "Bearer wrong-token-123"}) as r:
            assert r.status == 401
            doc = await r.json()
    assert doc["error"]["message"] == "admin endpoints need 'Authorization: Bearer <admin.token>'"


# --------------------------------------------------------------------------- log forging


FORGED = "2030-01-01 00:00:00,000 WARNING llmproxy: forged admin login ok"


async def raw_get(url: str, target: str) -> bytes:
    host, port = hostport(url).split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    return data


@pytest.mark.parametrize("target", [
    "/v1/models/x%0A%0D" + FORGED.replace(" ", "%09"),  # tabs: no space that would get the value quoted
    "/nowhere%0D%0A" + FORGED.replace(" ", "%20") + "%1b[2J%E2%80%A8",
])
async def test_a_percent_encoded_newline_in_the_path_cannot_forge_a_text_log_line(
    start_proxy, captured_logs, target
):
    proxy = await start_proxy("""
    logging: {format: text}
    providers: {m: {type: mock}}
    models: {x: {deployments: [{provider: m, model: x}]}}
    """)
    setup_logging("debug", "text", proxy.app[REDACTOR], stream=captured_logs)
    answer = await raw_get(proxy.url, target)
    assert answer.startswith(b"HTTP/1.1 404")
    # (aiohttp.access: the test server's own access log, still percent-encoded; serve() turns it off)
    lines = [line for line in log_text(captured_logs).split("\n") if "aiohttp.access" not in line]
    mentions = [line for line in lines if "forged" in line]
    assert mentions, lines
    for line in mentions:
        assert "llmproxy.access" in line  # the one access line carries it, escaped
        assert "\\n" in line or "\\r" in line
    assert not any(line.startswith(("2030-01-01", "\r")) for line in lines)
    assert not any(c in "".join(lines) for c in "\r\t\x1b\u2028")


def test_a_rejected_document_with_a_cyclic_alias_is_walked_once() -> None:
    # ``&a [*a]`` loads as a list that contains itself: the walker of a
    # rejected document must not loop on it (the reload would hang).
    from llmproxy.config.tree import ConfigError, parse_config

    text = f"providers: {{p: {{type: openai, api_key: [{K_API}], extra: &a [*a]}}}}\nmodels: {{}}\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text, env={})
    assert K_API not in str(err.value)
    cyclic: list[object] = []
    cyclic.append(cyclic)
    assert secrets_in_raw_config({"api_key": K_API, "x": cyclic}) == {K_API}
