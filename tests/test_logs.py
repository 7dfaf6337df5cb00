"""The redactor on realistic secrets; the filter, formatters, setup and access line."""

from __future__ import annotations

import asyncio
import io
import logging
import sys
from collections.abc import Iterator

import orjson
import pytest

from llmproxy.config.tree import parse_config
from llmproxy.observe.logs import (
    MASK,
    AccessLog,
    JSONFormatter,
    RedactingFilter,
    Redactor,
    TextFormatter,
    config_secrets,
    setup_logging,
)

# Realistic shapes (made-up values).
OPENAI_LEGACY = "sk-4fQ9zT1bXkLm2NpQ7rStT3BlbkFJuVwXyZa1b2C3d4E5f6G7h8"
OPENAI_PROJECT = "sk-proj-Xy7_kLm9-Qw2ErTy8UiOp3AsDfGh4JkL5ZxCvBn6Mq0WeRtYuIoPaSdFgHjKlZxCvBnMqWeRtY_uIoP-aSdFgH1T3BlbkFJ"
OPENAI_SVCACCT = "sk-svcacct-Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78St90"
ANTHROPIC = "sk-ant-api03-" + "Zq8xW3vN5mK2pL9oJ7iH4gF1dS6aQ0wE3rT8yU5iO2pA7sD4fG1hJ9kL6zX3cV0bN8mQ5wE2rT9yU6iO3pA0sD7fG4hJ1kL" + "-AA"
GOOGLE = "AIzaSyD4x9Kq2LmN8pQrStUvWxYz012345678_9"
AWS_ID = "AKIAIOSFODNN7EXAMPLE"
AWS_TEMP_ID = "ASIAY34FZKBOKMUTVV7A"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_SESSION = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJGMEQCIFake0Session0Token0Value"
AZURE = "3f2a9c0d4b5e6f708192a3b4c5d6e7f8"  # 32 hex: no shape, caught by name or by value
JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJ1c2VyLTEyMyIsImV4cCI6MTcwMDAwMDAwMH0.c2lnbmF0dXJlLXBhcnQtb2YtdGhlLWp3dA"
GROQ = "gsk_Wq3Er5Ty7Ui9Op1As3Df5Gh7Jk9Lz1Xc3Vb5Nm7Qw9"
BEDROCK_KEY = "ABSKQmVkcm9ja0FQSUtleS1leGFtcGxlLWF0LTEyMzQ1Njc4OTA="
UNSHAPED = "c0h3re-Xq93kLmW2pZ8vB7nT4yR1sU6"  # e.g. a Cohere key: no known prefix

CORPUS: list[tuple[str, str]] = [
    # headers, as text, dict reprs, aiohttp multidicts and raw tuples
    (f"Authorization: Bearer {OPENAI_PROJECT}", OPENAI_PROJECT),
    (f"authorization: Bearer {UNSHAPED}", UNSHAPED),
    (f"{{'Authorization': 'Bearer {OPENAI_LEGACY}', 'Content-Type': 'application/json'}}", OPENAI_LEGACY),
    ((f"<CIMultiDictProxy('Host': 'api.anthropic.com', 'x-api-key': '{ANTHROPIC}', "
      f"'anthropic-version': '2023-06-01')>"), ANTHROPIC),
    (f"api-key: {AZURE}", AZURE),
    (f"{{'api-key': '{AZURE}', 'Content-Type': 'application/json'}}", AZURE),
    (f"x-goog-api-key: {GOOGLE}", GOOGLE),
    (f"[(b'Authorization', b'Bearer {UNSHAPED}'), (b'Host', b'api.cohere.com')]", UNSHAPED),
    ("Proxy-Authorization: Basic dXNlcjpwYXNzd29yZDEyMw==", "dXNlcjpwYXNzd29yZDEyMw=="),
    (f"X-Amz-Security-Token: {AWS_SESSION}", AWS_SESSION),
    ((f"Authorization: AWS4-HMAC-SHA256 Credential={AWS_ID}/20240101/us-east-1/bedrock/aws4_request, "
      "SignedHeaders=host;x-amz-date, Signature=0a1b2c"), AWS_ID),
    (f"Authorization: Bearer {BEDROCK_KEY}", BEDROCK_KEY),
    (f"cookie: session={UNSHAPED}", UNSHAPED),
    # URLs
    ((f"POST https://generativelanguage.googleapis.com/v1beta/models/gemini-1.5-pro:streamGenerateContent"
      f"?alt=sse&key={GOOGLE}"), GOOGLE),
    (f"GET https://example.test/v1/models?key={UNSHAPED}&page=2", UNSHAPED),
    (f"https://example.test/x?api_key={UNSHAPED}", UNSHAPED),
    (f"https://example.test/x?access_token={JWT}", JWT),
    (f"wss://example.test/socket?token={UNSHAPED}", UNSHAPED),
    (f"redis://default:{UNSHAPED}@cache.internal:6379/0", UNSHAPED),
    (f"https://bucket.s3.amazonaws.com/o?X-Amz-Credential={AWS_ID}%2F20240101&X-Amz-Signature=9f8e7d6c5b4a",
     AWS_ID),
    # JSON and YAML bodies, env dumps, CLI args
    (f'{{"model": "gpt-4o", "api_key": "{UNSHAPED}", "max_tokens": 100}}', UNSHAPED),
    ((f'{{"Credentials": {{"AccessKeyId": "{AWS_TEMP_ID}", "SecretAccessKey": "{AWS_SECRET}", '
      f'"SessionToken": "{AWS_SESSION}"}}}}'), AWS_SECRET),
    (f'{{"Credentials": {{"AccessKeyId": "{AWS_TEMP_ID}"}}}}', AWS_TEMP_ID),
    (f'{{"SessionToken": "{AWS_SESSION}"}}', AWS_SESSION),
    (f"aws_access_key_id = {AWS_ID}\naws_secret_access_key = {AWS_SECRET}\n", AWS_SECRET),
    (f"aws_access_key_id = {AWS_ID}\n", AWS_ID),
    (f"export AWS_SECRET_ACCESS_KEY={AWS_SECRET}", AWS_SECRET),
    (f"aws configure set --aws-secret-access-key {AWS_SECRET}", AWS_SECRET),
    (f"    api_key: {UNSHAPED}\n    base_url: https://api.cohere.com", UNSHAPED),
    (f'{{"client_secret": "{UNSHAPED}", "grant_type": "client_credentials"}}', UNSHAPED),
    (f'{{"password": "hunter2-{UNSHAPED}"}}', UNSHAPED),
    (f'{{"id_token": "{JWT}"}}', JWT),
    (f"GROQ_API_KEY={GROQ}", GROQ),
    (f"using key {GROQ} for llama", GROQ),
    (f"-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA{UNSHAPED}\n-----END RSA PRIVATE KEY-----",
     UNSHAPED),
    # bare keys in prose and exception messages
    ((f"Incorrect API key provided: {OPENAI_LEGACY}. You can find your API key at "
      "https://platform.openai.com/account/api-keys."), OPENAI_LEGACY),
    (f"anthropic.AuthenticationError: invalid x-api-key {ANTHROPIC}", ANTHROPIC),
    (f"400 API key not valid: {GOOGLE}", GOOGLE),
    (f"service account {OPENAI_SVCACCT} disabled", OPENAI_SVCACCT),
    (f"The security token included in the request is invalid ({AWS_TEMP_ID})", AWS_TEMP_ID),
    (f"token {JWT} expired", JWT),
]


@pytest.mark.parametrize(("text", "secret"), CORPUS)
def test_redactor_masks_the_corpus(text: str, secret: str) -> None:
    out = Redactor().redact(text)
    assert secret not in out
    assert MASK in out


def test_corpus_values_are_masked_even_embedded_in_one_big_text() -> None:
    big = "\n".join(t for t, _ in CORPUS) * 3
    out = Redactor().redact(big)
    for _, secret in CORPUS:
        assert secret not in out


@pytest.mark.parametrize(
    "text",
    [
        "model=gpt-4o deployment=up/gpt-4o status=200 max_tokens=5 prompt_tokens=10 completion_tokens=2",
        '{"usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}',
        "the token budget is 5; tokens: 7",
        "keyboard=us monkey: yes",
        "Authorization header missing",
        "api_key_file: secrets/openai.txt",
        "error code invalid_api_key from upstream",
        "task-management-service-0001 is healthy",
        "see https://api.openai.com/v1/chat/completions for details",
        "POST /v1/chat/completions 200 in 12.5ms",
        "upstream timed out: no first byte within 60s",
        "0e6c565e2f054cb190208227df2bb922",
        "timestamps 1700000000123 and 4111111111111112",
        "contact alice@example.com",  # emails only when asked
        "",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert Redactor().redact(text) == text


def test_redaction_keeps_the_structure_around_the_value() -> None:
    r = Redactor()
    assert r.redact(f"Authorization: Bearer {UNSHAPED}") == f"Authorization: Bearer {MASK}"
    assert r.redact(f'{{"api_key": "{UNSHAPED}", "n": 1}}') == f'{{"api_key": "{MASK}", "n": 1}}'
    assert r.redact(f"https://h/x?a=1&key={UNSHAPED}&b=2") == f"https://h/x?a=1&key={MASK}&b=2"
    assert r.redact(f"redis://u:{UNSHAPED}@h") == f"redis://u:{MASK}@h"
    assert r.redact(f"key {OPENAI_LEGACY}.") == f"key {MASK}."
    assert r.redact(r.redact(f"api_key={UNSHAPED}")) == f"api_key={MASK}"  # idempotent


def test_exact_values_are_masked_in_any_form() -> None:
    key = "zz-my/odd+key=value-0001"
    r = Redactor(secrets=[key, "short"])
    assert r.redact(f"note {key} here") == f"note {MASK} here"
    assert r.redact("url?q=zz-my%2Fodd%2Bkey%3Dvalue-0001") == f"url?q={MASK}"
    assert r.redact("a short word") == "a short word"  # below MIN_SECRET_LEN: not a secret
    r.set_secrets([])
    assert key in r.redact(f"note {key} here")


def test_emails_and_cards_only_when_asked() -> None:
    text = "mail bob.smith+llm@mail.example.co.uk card 4111 1111 1111 1111 or 5500-0000-0000-0004, id 4111111111111112"
    assert Redactor().redact(text) == text
    out = Redactor(emails=True, cards=True).redact(text)
    assert "bob.smith" not in out and "example.co.uk" not in out
    assert "4111 1111 1111 1111" not in out and "5500-0000-0000-0004" not in out
    assert "4111111111111112" in out  # fails the Luhn check: not a card


def test_memo_does_not_outlive_a_secrets_change() -> None:
    r = Redactor()
    assert r.redact("value zz-rotating-0001") == "value zz-rotating-0001"
    r.set_secrets(["zz-rotating-0001"])
    assert r.redact("value zz-rotating-0001") == f"value {MASK}"


# --------------------------------------------------------------------------- the filter


def record(msg: str, *args: object, **kw: object) -> logging.LogRecord:
    return logging.LogRecord("llmproxy.test", logging.WARNING, __file__, 1, msg, args or None, None, **kw)


def test_filter_formats_args_then_masks() -> None:
    rec = record("calling %s with %r", f"https://h/x?key={UNSHAPED}", {"Authorization": f"Bearer {JWT}"})
    assert RedactingFilter(Redactor()).filter(rec)
    assert rec.args is None
    assert UNSHAPED not in rec.getMessage() and JWT not in rec.getMessage()
    assert rec.getMessage().startswith("calling https://h/x?key=")


def test_filter_masks_exception_traceback_and_stack() -> None:
    def fail() -> None:
        raise ValueError(f"upstream said: Incorrect API key provided: {OPENAI_PROJECT}")

    try:
        try:
            fail()
        except ValueError as exc:
            raise RuntimeError(f"while calling with api-key: {AZURE}") from exc
    except RuntimeError:
        rec = logging.LogRecord("llmproxy.test", logging.ERROR, __file__, 1, "failed", None, sys.exc_info(),
                                sinfo=f"Stack (most recent call last):\n  token={UNSHAPED}")
    RedactingFilter(Redactor()).filter(rec)
    assert rec.exc_info is None
    assert rec.exc_text is not None and "ValueError" in rec.exc_text and "RuntimeError" in rec.exc_text
    for secret in (OPENAI_PROJECT, AZURE):
        assert secret not in rec.exc_text
    assert rec.stack_info is not None and UNSHAPED not in rec.stack_info
    line = logging.Formatter().format(rec)
    for secret in (OPENAI_PROJECT, AZURE, UNSHAPED):
        assert secret not in line


def test_filter_masks_structured_fields_without_touching_the_callers_dict() -> None:
    fields = {"request_id": f"req-{OPENAI_LEGACY}", "status": 200, "model": "gpt-4o"}
    rec = record("request")
    rec.fields = fields
    RedactingFilter(Redactor()).filter(rec)
    assert rec.fields == {"request_id": f"req-{MASK}", "status": 200, "model": "gpt-4o"}
    assert fields["request_id"] == f"req-{OPENAI_LEGACY}"


def test_filter_survives_bad_format_args() -> None:
    rec = record("two %s %s", f"token={UNSHAPED}")
    RedactingFilter(Redactor()).filter(rec)
    assert UNSHAPED not in rec.getMessage()


# --------------------------------------------------------------------------- formatters and setup


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    loggers = {n: logging.getLogger(n).level for n in ("llmproxy", "llmproxy.access", "llmproxy.body",
                                                        "watchfiles")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for n, lvl in loggers.items():
        logging.getLogger(n).setLevel(lvl)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    for h in logging.getLogger().handlers:
        h.flush()
    # split("\n"), not splitlines(): a line may hold U+2028, which JSON leaves unescaped
    return [orjson.loads(line) for line in stream.getvalue().split("\n") if line]


def test_json_formatter_writes_one_object_per_line() -> None:
    rec = record("hello %s", "world")
    rec.created = 1700000000.25
    rec.fields = {"request_id": "r1", "status": 200, "ttft_ms": None, "stream": True}
    doc = orjson.loads(JSONFormatter().format(rec))
    assert doc == {"ts": "2023-11-14T22:13:20.250Z", "level": "warning", "logger": "llmproxy.test",
                   "msg": "hello world", "request_id": "r1", "status": 200, "ttft_ms": None, "stream": True}


def test_json_formatter_includes_the_traceback() -> None:
    try:
        raise KeyError("boom")
    except KeyError:
        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed\nsecond line", None, sys.exc_info())
    out = JSONFormatter().format(rec)
    assert "\n" not in out
    doc = orjson.loads(out)
    assert doc["msg"] == "failed\nsecond line" and "KeyError: 'boom'" in doc["exc"]


def test_text_formatter_appends_fields() -> None:
    rec = record("request")
    rec.fields = {"method": "POST", "path": "/v1/chat/completions", "status": 200, "ttft_ms": None,
                  "stream": False, "model": "my model"}
    out = TextFormatter().format(rec)
    assert out.endswith('WARNING llmproxy.test: request method=POST path=/v1/chat/completions status=200 '
                        'stream=false model="my model"')


def test_setup_logging_redacts_every_logger_and_is_idempotent(root_logging: None,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    first = io.StringIO()
    setup_logging("info", "json", Redactor(), stream=first)
    stream = io.StringIO()
    handler = setup_logging("INFO", "json", Redactor(secrets=[UNSHAPED]), stream=stream)
    root = logging.getLogger()
    assert root.handlers[0] is handler and sum(getattr(h, "_llmproxy", False) for h in root.handlers) == 1

    logging.getLogger("llmproxy.forward").warning("upstream said %s", f"bad key {OPENAI_LEGACY}")
    logging.getLogger("aiohttp.server").error("headers %s", {"x-api-key": ANTHROPIC})
    logging.getLogger("llmproxy").info("plain %s", UNSHAPED)
    logging.getLogger("llmproxy").debug("hidden at info")
    try:
        raise ConnectionError(f"https://user:{UNSHAPED}@h/x?key={GOOGLE}")
    except ConnectionError:
        logging.getLogger("llmproxy").exception("upstream failed")

    assert first.getvalue() == ""
    out = stream.getvalue()
    for secret in (OPENAI_LEGACY, ANTHROPIC, UNSHAPED, GOOGLE):
        assert secret not in out
        assert secret not in caplog.text  # handlers after ours see the masked record
    docs = lines(stream)
    assert [d["logger"] for d in docs] == ["llmproxy.forward", "aiohttp.server", "llmproxy", "llmproxy"]
    assert docs[3]["level"] == "error" and "ConnectionError" in str(docs[3]["exc"])


def test_setup_logging_exclusive_replaces_every_root_handler(root_logging: None) -> None:
    stray = logging.StreamHandler(io.StringIO())
    logging.getLogger().addHandler(stray)
    handler = setup_logging("info", "text", Redactor(), stream=io.StringIO(), exclusive=True)
    assert logging.getLogger().handlers == [handler]


def test_setup_logging_levels(root_logging: None) -> None:
    stream = io.StringIO()
    setup_logging("warning", "text", Redactor(), stream=stream, levels={"llmproxy.access": "info"})
    logging.getLogger("llmproxy.x").info("dropped")
    logging.getLogger("llmproxy.access").info("kept")
    assert logging.getLogger("watchfiles").level == logging.WARNING  # chatty at INFO
    assert "dropped" not in stream.getvalue() and "kept" in stream.getvalue()
    with pytest.raises(ValueError, match="unknown log level"):
        setup_logging("loud", "json", Redactor())
    with pytest.raises(ValueError, match="unknown log format"):
        setup_logging("info", "xml", Redactor())


# --------------------------------------------------------------------------- access log


def access_kwargs(**over: object) -> dict[str, object]:
    kw: dict[str, object] = {
        "request_id": "0e6c565e2f054cb190208227df2bb922", "method": "POST", "path": "/v1/chat/completions",
        "model": "gpt-4o", "deployment": "up/gpt-4o", "status": 200, "duration_ms": 12.34567, "ttft_ms": 3.21,
        "prompt_tokens": 5, "completion_tokens": 2, "retries": 1, "stream": True,
    }
    kw.update(over)
    return kw


def test_access_line_is_one_json_object(root_logging: None) -> None:
    stream = io.StringIO()
    setup_logging("info", "json", Redactor(), stream=stream)
    AccessLog().log(**access_kwargs())  # type: ignore[arg-type]
    (doc,) = lines(stream)
    assert doc.pop("ts")
    assert doc == {
        "level": "info", "logger": "llmproxy.access", "msg": "request",
        "request_id": "0e6c565e2f054cb190208227df2bb922", "method": "POST", "path": "/v1/chat/completions",
        "model": "gpt-4o", "deployment": "up/gpt-4o", "key": None, "status": 200, "duration_ms": 12.346,
            "ttft_ms": 3.21,
        "prompt_tokens": 5, "completion_tokens": 2, "retries": 1, "stream": True, "error": None,
    }


def test_access_line_masks_client_supplied_values(root_logging: None) -> None:
    stream = io.StringIO()
    setup_logging("info", "json", Redactor(), stream=stream)
    AccessLog().log(**access_kwargs(request_id=f"id-{OPENAI_LEGACY}", path=f"/v1/x/api_key={UNSHAPED}"))  # type: ignore[arg-type]
    assert OPENAI_LEGACY not in stream.getvalue() and UNSHAPED not in stream.getvalue()


def test_access_log_returns_early_when_info_is_off(root_logging: None) -> None:
    stream = io.StringIO()
    setup_logging("warning", "json", Redactor(), stream=stream)
    made: list[str] = []
    factory = logging.getLogRecordFactory()

    def counting(*args: object, **kw: object) -> logging.LogRecord:
        made.append(str(args[0]))
        return factory(*args, **kw)

    logging.setLogRecordFactory(counting)
    try:
        AccessLog().log(**access_kwargs())  # type: ignore[arg-type]
        AccessLog(enabled=False).log(**access_kwargs())  # type: ignore[arg-type]
        logging.getLogger("llmproxy.access").setLevel(logging.INFO)
        AccessLog(enabled=False).log(**access_kwargs())  # type: ignore[arg-type]
        assert made == [] and stream.getvalue() == ""
        AccessLog().log(**access_kwargs())  # type: ignore[arg-type]
        assert made == ["llmproxy.access"]
    finally:
        logging.setLogRecordFactory(factory)


def test_bodies_are_logged_only_when_asked(root_logging: None) -> None:
    stream = io.StringIO()
    setup_logging("debug", "json", Redactor(), stream=stream)
    AccessLog().log_body("r1", "prompt", "my secret prompt")
    assert stream.getvalue() == ""
    AccessLog(log_bodies=True).log_body("r1", "prompt", f"my prompt with api_key={UNSHAPED}")
    (doc,) = lines(stream)
    assert doc["logger"] == "llmproxy.body" and doc["kind"] == "prompt"
    assert doc["body"] == f"my prompt with api_key={MASK}"


def test_config_secrets_collects_every_credential() -> None:
    config = parse_config(
        """
        server: {api_keys: [client-key-0001]}
        admin: {token: admin-token-0001}
        providers:
          oa: {type: openai, api_key: sk-config-key-0001, headers: {X-Custom-Auth: hdr-secret-0001, X-Trace: visible}}
          br: {type: bedrock, region: us-east-1, aws_access_key_id: AKIAEXAMPLE00000001,
               aws_secret_access_key: aws-secret-0001}
        models:
          m: {deployments: [{provider: oa, model: gpt-4o}]}
        """,
        env={},
    )
    found = set(config_secrets(config))
    assert {"client-key-0001", "admin-token-0001", "sk-config-key-0001", "hdr-secret-0001",
            "AKIAEXAMPLE00000001", "aws-secret-0001"} <= found
    assert "visible" not in found


@pytest.mark.parametrize("over", [
    {"request_id": f"id-{OPENAI_LEGACY}", "path": f"/v1/x/api_key={UNSHAPED}", "error": "boom"},
    {"model": None, "deployment": None, "ttft_ms": None, "prompt_tokens": None, "completion_tokens": None,
     "stream": False, "status": 499, "error": 'said "no"\n\u00e9\u2028'},
    {"request_id": 'q"\\x', "method": "GET", "path": "/v1/models/gpt-4o", "duration_ms": 300000.0004,
     "retries": 3},
    {"prompt_tokens": True, "completion_tokens": 7.5, "error": ""},  # odd values a caller might pass
    {"status": "200", "duration_ms": "slow", "retries": None, "completion_tokens": 2**70},  # the general renderer
])
def test_access_line_direct_path_writes_the_same_line(root_logging: None, over: dict[str, object]) -> None:
    """With only our handler in the chain AccessLog skips the LogRecord; the line must not change."""
    kwargs = access_kwargs(**over)
    direct = io.StringIO()
    handler = setup_logging("info", "json", Redactor(), stream=direct, exclusive=True)
    assert logging.getLogger().handlers == [handler]
    made: list[str] = []
    factory = logging.getLogRecordFactory()
    logging.setLogRecordFactory(lambda *a, **k: made.append("x") or factory(*a, **k))
    try:
        access = AccessLog()
        access.log(**kwargs)  # type: ignore[arg-type]
        access.log(**kwargs)  # type: ignore[arg-type]  # the second from the pre-rendered parts
        direct_records = len(made)
        via_record = io.StringIO()
        setup_logging("info", "json", Redactor(), stream=via_record, exclusive=True)
        logging.getLogger().addHandler(logging.NullHandler())  # a second handler: the record path
        AccessLog().log(**kwargs)  # type: ignore[arg-type]
    finally:
        logging.setLogRecordFactory(factory)
    (a, a2), (b,) = lines(direct), lines(via_record)
    for d in (a, a2, b):
        d.pop("ts")
    assert a == a2 == b and list(a) == list(b)
    # Odd types are rendered from a record (the template's one factory call), never lost.
    odd_types = over.get("status") == "200"
    assert direct_records == (1 if odd_types else 0) and len(made) == direct_records + 1
    if "error" in over and over["error"] == "boom":
        assert a["request_id"] == f"id-{MASK}" and a["path"] == f"/v1/x/api_key={MASK}"


def test_access_line_direct_path_masks_secrets_added_later(root_logging: None) -> None:
    """A reload that adds a secret (set_secrets) reaches the pre-rendered parts too."""
    stream = io.StringIO()
    redactor = Redactor()
    setup_logging("info", "json", redactor, stream=stream, exclusive=True)
    access = AccessLog()
    access.log(**access_kwargs(deployment="dep-Zq81vX0pLm"))  # type: ignore[arg-type]
    redactor.set_secrets(["dep-Zq81vX0pLm"])
    access.log(**access_kwargs(deployment="dep-Zq81vX0pLm"))  # type: ignore[arg-type]
    first, second = lines(stream)
    assert first["deployment"] == "dep-Zq81vX0pLm" and second["deployment"] == MASK


def test_access_line_direct_path_bounds_its_pre_rendered_parts(root_logging: None) -> None:
    stream = io.StringIO()
    setup_logging("info", "json", Redactor(), stream=stream, exclusive=True)
    access = AccessLog()
    for i in range(3000):  # a client inventing paths (404s are logged too)
        access.log(**access_kwargs(path=f"/v1/nope/{i}", status=404))  # type: ignore[arg-type]
    assert len(access._fragments) <= 1024
    got = lines(stream)
    assert len(got) == 3000 and got[-1]["path"] == "/v1/nope/2999"


def test_info_lines_are_written_once_per_loop_iteration_warnings_at_once(root_logging: None) -> None:
    stream = io.StringIO()
    handler = setup_logging("info", "json", Redactor(), stream=stream, exclusive=True)
    log = logging.getLogger("llmproxy.t")

    def count() -> int:
        return len(stream.getvalue().splitlines())

    async def main() -> list[int]:
        seen = []
        log.info("one")
        AccessLog().log(**access_kwargs())  # type: ignore[arg-type]
        seen.append(count())  # nothing written yet
        await asyncio.sleep(0)
        seen.append(count())  # the loop wrote both (the access line rendered then)
        log.info("three")
        log.warning("four")  # urgent: everything pending goes now, in order
        seen.append(count())
        log.info("five")
        handler.flush()
        seen.append(count())
        return seen

    assert asyncio.run(main()) == [0, 2, 4, 5]
    assert [d["msg"] for d in lines(stream)] == ["one", "request", "three", "four", "five"]
    log.info("no loop: written at once")
    assert count() == 6


def test_json_line_with_values_orjson_cannot_write_keeps_the_rest_typed(root_logging: None) -> None:
    stream = io.StringIO()
    setup_logging("info", "json", Redactor(), stream=stream, exclusive=True)
    logging.getLogger("llmproxy.t").info("odd", extra={"fields": {"big": 2**70, "n": 3, 7: "seven", "ok": True}})
    (line,) = lines(stream)
    assert line["big"] == str(2**70) and line["n"] == 3 and line["7"] == "seven" and line["ok"] is True
    assert line["msg"] == "odd"


def test_a_deferred_line_that_fails_to_render_does_not_take_the_batch_with_it(root_logging: None) -> None:
    stream = io.StringIO()
    handler = setup_logging("info", "json", Redactor(), stream=stream, exclusive=True)

    def broken() -> bytes:
        raise RuntimeError("boom")

    async def main() -> None:
        logging.getLogger("llmproxy.t").info("before")
        handler.write_deferred(broken, ())
        AccessLog().log(**access_kwargs())  # type: ignore[arg-type]
        handler.flush()

    asyncio.run(main())
    assert [(d["logger"], d["msg"]) for d in lines(stream)] == [
        ("llmproxy.t", "before"), ("llmproxy.logs", "a log line could not be rendered"),
        ("llmproxy.access", "request")]
