"""llmproxy against the floor (bare_passthrough.py) in one run: issue 20's targets.

    bash tests/bench/run.sh --versus-floor [--ab-rounds 4] [--ab-seconds 4] [--ab-sessions 2]
    bash tests/bench/run.sh --versus-floor --floor-features ...   # 100 keys + the cache, every request a miss

- **floor**: a 40-line aiohttp pass-through with no features (bare_passthrough.py);
- **llmproxy**: ``llmproxy serve`` as users run it: the bench's config, the
  default log level (INFO: the access line of every request is written),
  metrics on;
- with ``--floor-features``, llmproxy also has 100 virtual keys (each with
  rpm, tpm, max_parallel and a budget, the spend kept in the embedded sqlite
  store) and the response cache on; every request carries one of the keys
  and a body no earlier request had, so each one is authenticated, admitted,
  looked up in the cache, missed, stored and settled. Both variants are sent
  the same bytes.

The rounds are side_by_side.py's (both at once on one core, compared by CPU
per request). After each session's rounds, the time to first chunk is taken
on one keep-alive connection per variant, in alternating blocks. The table
ends with issue 20's targets: CPU per non-stream request <= 1.10x the
floor's, per 50-chunk stream <= 1.25x, first chunk <= the floor's + 0.1 ms.
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path
from typing import Any

import bodies
import ttfb
from ab_keys import USED, key_of, keys_config
from bench import HERE, MODEL, MODES, PROXY_PATH, ROOT, BenchError, WRK_DONE, log, write_wrk_script
from side_by_side import SideBySide

TTFB_BLOCKS = 4  # alternating blocks per session
TTFB_WARMUP = 50
TARGET_CPU = {"plain": 1.10, "stream": 1.25}  # llmproxy / floor, CPU per request
TARGET_FIRST_CHUNK_MS = 0.1  # llmproxy's first chunk at most this much after the floor's

FEATURES = keys_config() + """\
cache:
  enabled: true
  ttl: 600
"""

# Where the per-request counter goes in the user message (a cache miss each time).
MARK = "a fox and a dog."


def unique_script(tmp: Path, name: str, body: bytes, headers: dict[str, str]) -> Path:
    """A wrk script that numbers each request's user message: no two bodies alike."""
    text = body.decode()
    at = text.index(MARK) + len(MARK)
    before, after = text[:at], text[at:]
    if "]==]" in text:
        raise BenchError("request body cannot be embedded in a Lua long string")
    extra = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    lua = (
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        + extra
        + f"local before = [==[{before}]==]\nlocal after = [==[{after}]==]\n"
        # A per-thread random start: wrk's threads (and runs) never repeat a body.
        + "local n = math.random(1, 2^40)\n"
        + "request = function()\n  n = n + 1\n  return wrk.format(nil, nil, nil, before .. ' #' .. n .. after)\nend\n"
        + "init = function(args) math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16)) "
          "n = math.random(1, 2^40) end\n"
        + WRK_DONE
    )
    path = tmp / f"{name}.lua"
    path.write_text(lua)
    return path


class FloorAB(SideBySide):
    VARIANTS = ("floor", "llmproxy")
    TITLE = "llmproxy against the floor (bare aiohttp pass-through)"
    OUT_NAME = "ab-floor"

    def __init__(self, args: Any) -> None:
        self.features = bool(args.floor_features)
        if self.features:
            self.TITLE = "llmproxy with 100 keys and the cache (every request a miss) against the floor"
            self.OUT_NAME = "ab-floor-features"
            self.HEADERS = {"Authorization": f"Bearer {key_of(USED)}"}
        super().__init__(args)
        self.first_chunk: dict[str, list[float]] = {v: [] for v in self.VARIANTS}  # seconds, every session
        self.session_p50: list[dict[str, float]] = []
        self.serial = 0

    def write_scripts(self) -> None:
        for mode in MODES:
            body = bodies.request_body(MODEL[mode], stream=mode == "stream")
            if self.features:
                unique_script(self.tmp, mode, body, self.HEADERS)
            else:
                write_wrk_script(self.tmp, mode, body, self.HEADERS)

    def launch_variant(self, variant: str, name: str, port: int) -> Any:
        if variant == "floor":
            return self.launch_proxy(name, port, "WARNING",
                                     command=[sys.executable, "-W", "ignore", str(HERE / "bare_passthrough.py")])
        # The tree this script is in, at the default log level (INFO: access lines on).
        return self.launch_proxy(name, port, "INFO", FEATURES if self.features else "",
                                 command=[sys.executable, "-m", "llmproxy"],
                                 env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)

    def stream_body(self) -> bytes:
        body = bodies.request_body(MODEL["stream"], stream=True)
        if not self.features:
            return body
        self.serial += 1
        return body.replace(MARK.encode(), f"{MARK} ~{self.serial}".encode())

    def session_extra(self) -> None:
        """Time to first chunk, one connection per variant, alternating blocks."""
        n = self.args.ttfb_n
        samples: dict[str, list[float]] = {v: [] for v in self.VARIANTS}
        for b in range(TTFB_BLOCKS):
            for variant in self.order(b):
                url = f"http://127.0.0.1:{self.ports[variant]}{PROXY_PATH}"
                client = ttfb.Client(url, self.stream_body(), headers=self.HEADERS)
                try:
                    for i in range(TTFB_WARMUP + n // TTFB_BLOCKS):
                        if self.features:
                            client.set_body(self.stream_body())
                        first, _, raw = client.one()
                        if i == 0:
                            self.check_answer("stream", raw, f"first chunk ({variant})")
                        if i >= TTFB_WARMUP:
                            samples[variant].append(first)
                finally:
                    client.close()
                self.answered[variant] += TTFB_WARMUP + n // TTFB_BLOCKS
        p50 = {v: statistics.median(s) * 1000 for v, s in samples.items()}
        self.session_p50.append(p50)
        for v, s in samples.items():
            self.first_chunk[v].extend(s)
        log(f"session {self.session} first chunk p50: floor {p50['floor']:.3f} ms, llmproxy {p50['llmproxy']:.3f} ms "
            f"(+{p50['llmproxy'] - p50['floor']:.3f})")

    def verify_session(self) -> None:
        for variant, errors in self.session_log_errors().items():
            listed = "; ".join(f"{n} x {what}" for what, n in errors.items())
            self.problems.append(f"session {self.session}: {variant} logged ERROR records: {listed}")

    def extra_table(self) -> list[str]:
        summary = self.results["ab"]["summary"]
        fc = {v: ttfb.summarize(s) for v, s in self.first_chunk.items()}
        added = fc["llmproxy"]["p50_ms"] - fc["floor"]["p50_ms"]
        lines = [
            f"first chunk, 1 conn ({fc['floor']['n']} streams each): floor p50 {fc['floor']['p50_ms']:.3f} ms "
            f"p99 {fc['floor']['p99_ms']:.3f};  llmproxy p50 {fc['llmproxy']['p50_ms']:.3f} ms "
            f"p99 {fc['llmproxy']['p99_ms']:.3f};  llmproxy - floor p50 {added:+.3f} ms",
            "issue 20 targets (medians):",
        ]
        targets: dict[str, Any] = {}
        for mode in MODES:
            ratio = 1 / summary[mode]["paired_cpu_ratio_floor_llmproxy_median"]
            ok = ratio <= TARGET_CPU[mode]
            targets[mode] = {"cpu_ratio": ratio, "target": TARGET_CPU[mode], "verdict": "pass" if ok else "FAIL"}
            lines.append(f"  CPU per {'non-stream request' if mode == 'plain' else '50-chunk stream':<19} "
                         f"llmproxy/floor {ratio:.3f}  (target <= {TARGET_CPU[mode]:.2f})  "
                         f"{'pass' if ok else 'FAIL'}")
        ok = added <= TARGET_FIRST_CHUNK_MS
        targets["first_chunk"] = {"added_ms": added, "target": TARGET_FIRST_CHUNK_MS,
                                  "verdict": "pass" if ok else "FAIL", "per_session_p50_ms": self.session_p50,
                                  "floor": fc["floor"], "llmproxy": fc["llmproxy"]}
        lines.append(f"  first chunk added over the floor    {added:+.3f} ms (target <= +{TARGET_FIRST_CHUNK_MS} ms)"
                     f"  {'pass' if ok else 'FAIL'}")
        self.results["ab"]["targets"] = targets
        for mode in MODES:
            summary[mode]["verdict"] = targets[mode]["verdict"]
        return lines
