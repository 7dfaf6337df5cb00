"""Our SigV4 signer against botocore's (test-only dependency) and AWS's own example."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import botocore.auth
import botocore.session
import pytest
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.credentials import Credentials

from llmproxy.config.tree import parse_config
from llmproxy.providers.bedrock import BedrockAdapter, model_url
from llmproxy.providers.sigv4 import canonical_uri, sign

NOW = datetime(2024, 5, 1, 12, 34, 56, tzinfo=timezone.utc)
AK, SK = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def botocore_sign(
    method: str, url: str, headers: dict[str, str], body: bytes, *, region: str, service: str,
    token: str | None = None, now: datetime = NOW,
) -> dict[str, str]:
    """botocore's SigV4Auth on the same request at the same instant."""
    req = AWSRequest(method, url, headers=dict(headers), data=body)
    auth = botocore.auth.SigV4Auth(Credentials(AK, SK, token), service, region)
    naive = now.astimezone(timezone.utc).replace(tzinfo=None)
    original = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda *a, **k: naive  # the clock botocore reads
    try:
        auth.add_auth(req)
    finally:
        botocore.auth.get_current_datetime = original
    return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in req.headers.items()}


def ours(method: str, url: str, headers: dict[str, str], body: bytes, *, region: str, service: str,
         token: str | None = None, now: datetime = NOW) -> dict[str, str]:
    return sign(method, url, headers, body, access_key=AK, secret_key=SK, session_token=token,
                region=region, service=service, now=now)


def test_aws_documentation_example() -> None:
    # "Examples of the complete Signature Version 4 signing process" (IAM ListUsers).
    got = ours(
        "GET", "https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08",
        {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}, b"",
        region="us-east-1", service="iam", now=datetime(2015, 8, 30, 12, 36, tzinfo=timezone.utc),
    )
    assert got["X-Amz-Date"] == "20150830T123600Z"
    assert got["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date, "
        "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
    )


CASES: list[tuple[str, str, dict[str, str], bytes, str | None]] = [
    ("POST", "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
     {"Content-Type": "application/json", "Accept": "application/json"}, b'{"messages":[]}', None),
    ("POST", "https://bedrock-runtime.eu-west-3.amazonaws.com/model/arn%3Aaws%3Abedrock%3Aeu-west-3%3A123456789012"
             "%3Ainference-profile%2Feu.anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream",
     {"Content-Type": "application/json"}, "{\"t\":\"ünïcode ✓\"}".encode(), "session/token+=="),
    ("POST", "http://127.0.0.1:8123/model/m%3A1/converse",
     {"Content-Type": "application/json", "User-Agent": "llmproxy", "X-Custom": "  a   b  ",
      "x-amzn-trace-id": "Root=1"}, b"{}", None),
    ("GET", "https://example.amazonaws.com/a/./b/../c//d/?b=2&a=1&a=0", {}, b"", "tok"),
    ("POST", "https://bedrock-runtime.us-east-1.amazonaws.com/model/amazon.titan-embed-text-v2%3A0/invoke",
     {"Content-Type": "application/json", "X-Amz-Date": "19990101T000000Z"}, b'{"inputText":"x"}', None),
]


@pytest.mark.parametrize("method, url, headers, body, token", CASES)
def test_signature_equals_botocore(method: str, url: str, headers: dict[str, str], body: bytes,
                                   token: str | None) -> None:
    region = url.split(".")[1] if "amazonaws" in url else "us-east-1"
    expected = botocore_sign(method, url, headers, body, region=region, service="bedrock", token=token)
    got = ours(method, url, headers, body, region=region, service="bedrock", token=token)
    assert got["Authorization"] == expected["Authorization"]
    assert got["X-Amz-Date"] == expected["X-Amz-Date"]
    assert got.get("X-Amz-Security-Token") == expected.get("X-Amz-Security-Token")


def test_clock_is_the_argument_and_aware_times_are_converted_to_utc() -> None:
    url = "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse"
    cest = NOW.astimezone(timezone(timedelta(hours=2)))
    a = ours("POST", url, {}, b"{}", region="us-east-1", service="bedrock", now=NOW)
    b = ours("POST", url, {}, b"{}", region="us-east-1", service="bedrock", now=cest)
    c = ours("POST", url, {}, b"{}", region="us-east-1", service="bedrock", now=NOW + timedelta(seconds=1))
    assert a == b
    assert a["Authorization"] != c["Authorization"]


def test_canonical_uri_double_encodes_the_wire_path() -> None:
    assert canonical_uri("/model/a%3A0/converse") == "/model/a%253A0/converse"
    assert canonical_uri("") == "/"
    assert canonical_uri("/a/./b/../c//") == "/a/c/"


@pytest.fixture
def botocore_converse() -> Iterator[dict[str, Any]]:
    """A real botocore bedrock-runtime client whose send is intercepted (no network)."""
    session = botocore.session.get_session()
    client = session.create_client(
        "bedrock-runtime", region_name="us-west-2", aws_access_key_id=AK,
        aws_secret_access_key=SK, aws_session_token="tok",
    )
    seen: dict[str, Any] = {}

    class Raw:
        def stream(self, **_: Any) -> Iterator[bytes]:
            yield (b'{"output":{"message":{"role":"assistant","content":[{"text":"ok"}]}},'
                   b'"stopReason":"end_turn","usage":{"inputTokens":1,"outputTokens":1,"totalTokens":2},'
                   b'"metrics":{"latencyMs":1}}')

    def before_send(request: Any, **_: Any) -> AWSResponse:
        seen["request"] = request
        return AWSResponse(request.url, 200, {"content-type": "application/json"}, Raw())

    client.meta.events.register("before-send", before_send)
    seen["client"] = client
    yield seen
    client.close()


def test_bedrock_request_signed_like_the_botocore_client(botocore_converse: dict[str, Any]) -> None:
    """Same URL (model id encoded the same way) and same signature as boto3's converse()."""
    model = "anthropic.claude-3-haiku-20240307-v1:0"
    original = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda *a, **k: NOW.replace(tzinfo=None)
    try:
        botocore_converse["client"].converse(modelId=model, messages=[{"role": "user", "content": [{"text": "hi"}]}])
    finally:
        botocore.auth.get_current_datetime = original
    sent = botocore_converse["request"]
    headers = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in sent.headers.items()}

    config = parse_config(f"""
    providers:
      aws: {{type: bedrock, region: us-west-2, aws_access_key_id: {AK}, aws_secret_access_key: "{SK}",
             aws_session_token: tok}}
    models:
      m: {{deployments: [{{provider: aws, model: "{model}"}}]}}
    """, env={})
    dep = config.models["m"].deployments[0]
    assert model_url(dep, "converse") == sent.url
    req = BedrockAdapter().chat_request(dep, {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                                        stream=False)
    assert req.url == sent.url and req.aws_sigv4 is not None
    # Sign botocore's exact body and content type with ours: the signature must match.
    got = req.aws_sigv4.sign("POST", sent.url, {"Content-Type": headers["Content-Type"]}, sent.body, NOW)
    assert got["Authorization"] == headers["Authorization"]
    assert got["X-Amz-Security-Token"] == headers["X-Amz-Security-Token"] == "tok"
