"""The OpenAI stream relay: the byte fast path and the event path agree."""

from __future__ import annotations

import orjson
import pytest

from llmproxy.errors import UpstreamProtocolError
from llmproxy.providers.openai import OpenAIStreamRelay

from .fakes import openai_stream


def relay_in_pieces(data: bytes, cuts: list[int], **kw: bool) -> tuple[bytes, OpenAIStreamRelay]:
    relay = OpenAIStreamRelay(**kw)
    out = b""
    start = 0
    for cut in [*cuts, len(data)]:
        out += relay.feed(data[start:cut])
        start = cut
    out += relay.finish()
    return out, relay


STREAM = b"".join(openai_stream(["Hel", "lo, ", "data: {not an event}", "!"], usage=True))


def test_whole_stream_is_relayed_byte_for_byte_with_usage():
    out, relay = relay_in_pieces(STREAM, [])
    assert out == STREAM
    assert relay.done and relay.usage == {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}


def test_split_at_every_offset_gives_the_same_bytes():
    for i in range(len(STREAM) + 1):
        out, relay = relay_in_pieces(STREAM, [i])
        assert out == STREAM, i
        assert relay.usage is not None and relay.usage["total_tokens"] == 9


def test_event_aligned_chunks_take_the_fast_path_untouched():
    events = openai_stream(["a", "b", "c"])
    relay = OpenAIStreamRelay()
    outs = [relay.feed(e) for e in events]
    assert all(o is e for o, e in zip(outs, events))  # the same object: no copy
    assert relay.done


def test_crlf_comments_and_multiline_data_are_reframed():
    raw = (b": keep-alive\r\n\r\n"
           b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\r\n\r\n'
           b'data: {"choices":[{"index":0,\ndata: "delta":{}}]}\n\n'
           b"data: [DONE]\r\n\r\n")
    out, relay = relay_in_pieces(raw, [7, 40])
    assert out == (b'data: {"choices":[{"index":0,"delta":{"content":"x"}}]}\n\n'
                   b'data: {"choices":[{"index":0,\n"delta":{}}]}\n\n'
                   b"data: [DONE]\n\n")
    assert relay.done


def test_azure_empty_choices_chunk_is_dropped_but_usage_chunk_kept():
    filter_chunk = b'data: {"choices":[],"prompt_filter_results":[]}\n\n'
    usage_chunk = b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\n'
    body = filter_chunk + b"".join(openai_stream(["x"])[:-1]) + usage_chunk + b"data: [DONE]\n\n"
    out, relay = relay_in_pieces(body, [], drop_empty_choices=True)
    assert filter_chunk not in out and usage_chunk in out
    assert relay.usage == {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}


def test_error_event_is_forwarded_and_ends_the_stream():
    err = b'data: {"error":{"message":"overloaded","type":"server_error"}}\n\n'
    out, relay = relay_in_pieces(openai_stream(["a"])[0] + err, [])
    assert out.endswith(err) and relay.error == {"message": "overloaded", "type": "server_error"}


@pytest.mark.parametrize("raw", [
    b"".join(openai_stream(["a"])[:-1]),  # no [DONE]
    b"".join(openai_stream(["a"])[:2]) + b'data: {"choices":[{"ind',  # cut mid-event
])
def test_stream_cut_before_done_is_an_error(raw):
    relay = OpenAIStreamRelay()
    relay.feed(raw)
    with pytest.raises(UpstreamProtocolError):
        relay.finish()


def test_non_json_event_is_an_error():
    with pytest.raises(UpstreamProtocolError):
        OpenAIStreamRelay().feed(b"data: <html>\n\n")


def test_events_after_done_are_not_relayed():
    raw = b"".join(openai_stream(["a"])) + b'data: {"late":true}\n\n'
    out, _ = relay_in_pieces(raw, [])
    assert b"late" not in out
    assert orjson.loads(out.split(b"\n\n")[1][6:])["choices"][0]["delta"] == {"content": "a"}
