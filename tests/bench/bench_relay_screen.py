"""What the redactor's screen costs a relayed stream: µs per 50-chunk stream.

    PYTHONPATH=. python tests/bench/bench_relay_screen.py

Every relayed stream piece passes its deployment's ``RelayScreen.events``
(forward.py): one substring search for an error event and one per
credential that upstream was sent. "before" is the bare relay (no screen);
the other rows screen the same stream of ordinary OpenAI chunks, which hold
no secret, for an upstream sent 0, 1 (the usual api_key) and 4 credentials,
in a config holding 16. The last row is a stream whose last event is an
error quoting the key (masked).
"""

from __future__ import annotations

import timeit

import orjson

from llmproxy.observe.redact import Redactor


def chunks(n: int = 50) -> list[bytes]:
    out = []
    for i in range(n):
        doc = {"id": "chatcmpl-9xYz0123456789abcdef", "object": "chat.completion.chunk", "created": 1700000000,
               "model": "gpt-4o-2024-08-06", "system_fingerprint": "fp_0123456789",
               "choices": [{"index": 0, "delta": {"content": f" token{i} of the answer"}, "logprobs": None,
                            "finish_reason": None}]}
        out.append(b"data: " + orjson.dumps(doc) + b"\n\n")
    return out


def main() -> None:
    stream = chunks()
    secrets = [f"unshaped-secret-{i:04d}-abcdefgh/+" for i in range(16)]
    leak = [*stream[:-1], b'data: {"error":{"message":"Incorrect API key provided: ' + secrets[0].encode() + b'"}}\n\n']

    def bare() -> None:
        for c in stream:
            c  # noqa: B018 - the relay as it was: the piece itself

    rows = [("before: no screen", bare)]
    r = Redactor(secrets=secrets)  # a config with 16 credentials
    for n in (0, 1, 4):
        rows.append((f"after: upstream sent {n} credentials",
                     lambda relay=r.screen(secrets[:n]).events: [relay(c) for c in stream]))
    relay = r.screen(secrets[:1]).events
    rows.append(("after: 1 credential, error event quoting it", lambda: [relay(c) for c in leak]))
    for name, fn in rows:
        n, total = 2000, min(timeit.repeat(fn, number=2000, repeat=5))
        print(f"{name:48s} {total / n * 1e6:8.2f} µs per 50-chunk stream")


if __name__ == "__main__":
    main()
