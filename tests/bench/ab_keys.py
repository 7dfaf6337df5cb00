"""What virtual keys cost end to end: the same load through two llmproxy
processes, one without keys and one with 100 keys and the embedded spend store.

    bash tests/bench/run.sh --keys-ab [--ab-rounds 8] [--ab-seconds 4] [--ab-sessions 2] [--ab-turns]

- **off**: the bench's default proxy config (no ``keys:``, no auth);
- **keys**: the same plus 100 ``keys:`` entries (hashed keys, each with a
  models glob, rpm, tpm, max_parallel and a 30d budget, none of them ever
  reached) and ``state.path`` at its default (an SQLite file next to the
  config): every request is authenticated, model-checked, admitted by the
  per-key counters, settled, and its spend written in the 1 s batches.

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
import sys
import time
from typing import Any

from bench import ROOT, BenchError, http_request, log
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
