"""What virtual keys cost end to end: the same load through two llmproxy
processes, one without keys and one with 100 keys and the embedded spend store.

    bash tests/bench/run.sh --keys-ab [--ab-rounds 8] [--ab-seconds 4] [--ab-sessions 2] [--ab-turns]
    bash tests/bench/run.sh --keys-ab --keys-redis ...   # "off" against "redis"

- **off**: the bench's default proxy config (no ``keys:``, no auth);
- **keys**: the same plus 100 ``keys:`` entries (hashed keys, each with a
  models glob, rpm, tpm, max_parallel and a 30d budget, none of them ever
  reached) and ``state.path`` at its default (an SQLite file next to the
  config): every request is authenticated, model-checked, admitted by the
  per-key counters, settled, and its spend written in the 1 s batches.

- **redis** (``--keys-redis``, against "off"): "keys" plus ``state.redis`` on a
  redis-server this script starts on the other core (with nginx and wrk):
  every request makes one Redis round trip to be admitted and one to settle.
  The proxy's CPU is in the table; redis-server's own CPU per request is
  logged and kept in the JSON (``observed``), since it is spent outside
  the proxy's process.

Both get ``--log-level WARNING`` and every request carries the same
``Authorization: Bearer`` key (ignored by "off"), so the bytes on the wire are
the same. The method is side_by_side.py's; the ratios are keys/off. After each
session the script checks that "keys" counted every request it answered on
the key the load uses (``/admin/keys``) and that its store is open.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sys
import time
from typing import Any

from bench import (
    ROOT,
    BenchError,
    free_port,
    http_request,
    log,
    pin_cmd,
    proc_cpu_seconds,
)
from side_by_side import SideBySide

LOG_LEVEL = "WARNING"
N_KEYS = 100
USED = 57  # the key the load sends (somewhere in the middle of the table)


def key_of(i: int) -> str:
    return f"sk-llmp-bench-{i:03d}-0123456789abcdefghij"


def keys_config() -> str:
    lines = ["keys:"]
    for i in range(N_KEYS):
        digest = hashlib.sha256(key_of(i).encode()).hexdigest()
        lines += [f"  - name: team-{i:03d}", f"    key_sha256: {digest}", '    models: ["bench*"]',
                  "    rpm: 100000000", "    tpm: 10000000000", "    max_parallel: 10000",
                  "    budget: {usd: 1000000000, period: 30d}", f"    metadata: {{team: t{i}}}"]
    return "\n".join(lines) + "\n"


class KeysAB(SideBySide):
    VARIANTS = ("off", "keys")
    TITLE = "keys A/B (100 keys, sqlite store)"
    OUT_NAME = "ab-keys"
    HEADERS = {"Authorization": f"Bearer {key_of(USED)}"}

    def launch_variant(self, variant: str, name: str, port: int) -> Any:
        # The tree this script is in (a worktree included), not whatever
        # llmproxy the venv has installed.
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        extra = keys_config() if variant == "keys" else ""
        return self.launch_proxy(name, port, LOG_LEVEL, extra, command=[sys.executable, "-m", "llmproxy"],
                                 env=env, cwd=ROOT)

    def verify_session(self) -> None:
        time.sleep(1.5)  # the last cut-off requests finish and the spend batch is written
        status, _, body = http_request(self.ports["keys"], "GET", "/admin/keys")
        if status != 200:
            raise BenchError(f"GET /admin/keys on the 'keys' proxy: HTTP {status}: {body[:200]!r}")
        doc = json.loads(body)
        used = next(k for k in doc["keys"] if k["name"] == f"team-{USED:03d}")
        counted = used["requests"]
        floor = self.answered["keys"]
        check = {"session": self.session, "keys_requests_sent_at_least": floor, "key_requests": counted,
                 "keys": len(doc["keys"]), "store": doc["store"]}
        self.results["ab"].setdefault("observed", []).append(check)
        log(f"'keys' counted {counted:,} requests on team-{USED:03d} (wrk completed {floor:,}); "
            f"{len(doc['keys'])} keys; store {doc['store']}")
        if counted < floor or len(doc["keys"]) != N_KEYS or doc["store"]["path"] is None:
            self.problems.append(f"'keys' did not account for every request: {check}")
        self.session_log_errors()


class KeysRedisAB(KeysAB):
    VARIANTS = ("off", "redis")
    TITLE = "keys A/B (100 keys, sqlite store, limits and spend on Redis)"
    OUT_NAME = "ab-keys-redis"

    def prepare(self) -> None:
        super().prepare()
        binary = shutil.which("redis-server")
        if binary is None:
            raise BenchError("redis-server is not installed (apt-get install redis-server)")
        self.redis_port = free_port()
        self.redis = self.spawn(pin_cmd(self.other_core, [
            binary, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--protected-mode", "no", "--dir", str(self.tmp)]), "redis.log")
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.redis_port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.redis.poll() is not None:
                    raise BenchError("redis-server did not start") from None
                time.sleep(0.05)
        self.redis_cpu0 = proc_cpu_seconds(self.redis.pid)

    def launch_variant(self, variant: str, name: str, port: int) -> Any:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        extra = ""
        if variant == "redis":
            extra = keys_config() + f"state:\n  redis: redis://127.0.0.1:{self.redis_port}/0\n"
        return self.launch_proxy(name, port, LOG_LEVEL, extra, command=[sys.executable, "-m", "llmproxy"],
                                 env=env, cwd=ROOT)

    def verify_session(self) -> None:
        time.sleep(1.5)
        status, _, body = http_request(self.ports["redis"], "GET", "/admin/keys")
        if status != 200:
            raise BenchError(f"GET /admin/keys on the 'redis' proxy: HTTP {status}: {body[:200]!r}")
        doc = json.loads(body)
        used = next(k for k in doc["keys"] if k["name"] == f"team-{USED:03d}")
        cpu = proc_cpu_seconds(self.redis.pid)
        answered = self.answered["redis"]  # this session's (sanity, warm-up and rounds)
        per_request = 1000 * (cpu - self.redis_cpu0) / max(1, answered)
        self.redis_cpu0 = cpu
        check = {"session": self.session, "shared": doc.get("shared"), "key_requests": used["requests"],
                 "redis_requests_sent_at_least": answered, "redis_server_cpu_ms_per_request": round(per_request, 4)}
        self.results["ab"].setdefault("observed", []).append(check)
        log(f"'redis' counted {used['requests']:,} requests on team-{USED:03d} (sent {answered:,}); "
            f"shared: {doc.get('shared')}; redis-server CPU {per_request:.3f} ms per request")
        if doc.get("shared") != "redis" or used["requests"] < answered:
            self.problems.append(f"'redis' did not account for every request on Redis: {check}")
        self.session_log_errors()
