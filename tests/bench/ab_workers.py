"""``serve --workers 1`` against ``--workers 2``, side by side in one run.

    bash tests/bench/run.sh --workers [--ab-rounds 3] [--ab-seconds 5]

nginx (the upstream) and wrk are pinned to the last core, as in the main
benchmark. ``--workers 1`` is pinned to core 0 (today's single process);
``--workers 2`` runs unpinned over every core, so on a 2-core machine its
second worker shares a core with nginx and wrk: the figure it gives is what
this machine can do, and the per-request CPU is the honest comparison.
Rounds alternate 1 and 2 workers, non-stream and 50-chunk stream at 50
connections; CPU is the whole process tree (supervisor and workers).
"""

from __future__ import annotations

import statistics
import subprocess
import time
from typing import Any

import bodies
from bench import (
    MODE_LABEL,
    MODEL,
    MODES,
    PROXY_PATH,
    Bench,
    BenchError,
    free_port,
    llmproxy_command,
    log,
    parse_wrk,
    pin_cmd,
    tree_cpu_seconds,
    write_proxy_conf,
    write_wrk_script,
)

COUNTS = (1, 2)
CONNS = 50


class WorkersAB(Bench):
    def run(self) -> int:
        a = self.args
        write_wrk_script(self.tmp, "plain", bodies.request_body(MODEL["plain"], stream=False))
        write_wrk_script(self.tmp, "stream", bodies.request_body(MODEL["stream"], stream=True))
        self.start_nginx()
        rows: dict[tuple[int, str], list[dict[str, float]]] = {(n, m): [] for n in COUNTS for m in MODES}
        for rnd in range(a.ab_rounds):
            for n in COUNTS if rnd % 2 == 0 else reversed(COUNTS):
                proc, port = self.launch_group(n)
                try:
                    for mode in MODES:
                        self.load(port, proc.pid, mode, 2.0)  # warm-up
                        r = self.load(port, proc.pid, mode, a.ab_seconds)
                        rows[(n, mode)].append(r)
                        log(f"round {rnd + 1} workers={n} {MODE_LABEL[mode]:10s}: {r['rps']:8.0f} req/s, "
                            f"CPU {r['cpu_ms']:.3f} ms/req, {r['failed']} failed")
                finally:
                    proc.terminate()
                    proc.wait(timeout=60)
        print()
        print(self.table(rows), flush=True)
        return 0

    def launch_group(self, n: int) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        conf = write_proxy_conf(self.tmp, port, self.upstream_port, name=f"workers{n}")
        cmd = [*llmproxy_command(), "--log-level", "WARNING", "serve", "--config", str(conf),
               "--host", "127.0.0.1", "--port", str(port), "--workers", str(n)]
        proc = self.spawn(pin_cmd(self.proxy_core if n == 1 else None, cmd), f"workers{n}.log")
        self.wait_http(port, "/healthz", proc, f"llmproxy --workers {n}", f"workers{n}.log")
        time.sleep(1.0 if n > 1 else 0.2)  # every worker listening
        return proc, port

    def load(self, port: int, pid: int, mode: str, seconds: float) -> dict[str, float]:
        cmd = self.wrk_cmd(mode, CONNS, seconds, f"http://127.0.0.1:{port}{PROXY_PATH}")
        cpu0 = tree_cpu_seconds(pid)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
        cpu1 = tree_cpu_seconds(pid)
        d, non2xx, errors = parse_wrk(proc.returncode, proc.stdout, proc.stderr)
        if not d["requests"]:
            raise BenchError(f"wrk got no answers from --workers on port {port}:\n{proc.stderr}")
        dur = d["duration_us"] / 1e6
        return {"rps": d["requests"] / dur, "cpu_ms": 1000 * (cpu1 - cpu0) / d["requests"],
                "p99_ms": d["p99_us"] / 1000, "failed": float(non2xx + sum(errors.values()))}

    @staticmethod
    def table(rows: dict[tuple[int, str], list[dict[str, Any]]]) -> str:
        lines = [f"{'':24s}{'req/s (median, range)':>30s}{'CPU ms/req':>14s}{'p99 ms':>10s}"]
        for mode in MODES:
            for n in COUNTS:
                rs = rows[(n, mode)]
                rps = [r["rps"] for r in rs]
                lines.append(
                    f"{MODE_LABEL[mode]:10s} workers={n:<6d}"
                    f"{statistics.median(rps):12.0f} ({min(rps):6.0f}–{max(rps):6.0f})     "
                    f"{statistics.median(r['cpu_ms'] for r in rs):14.3f}"
                    f"{statistics.median(r['p99_ms'] for r in rs):10.2f}")
            one = statistics.median(r["rps"] for r in rows[(1, mode)])
            two = statistics.median(r["rps"] for r in rows[(2, mode)])
            lines.append(f"{MODE_LABEL[mode]:10s} scaling 2/1 = {two / one:.2f}")
        return "\n".join(lines)
