"""Cache hits next to the pass-through, in one run: requests/s and proxy CPU per request.

    .venv/bin/python tests/bench/bench_cache.py [--seconds 5] [--conns 10]

One nginx upstream (bench.py's), then three proxies one after the other on
the same config plus, for two of them, ``cache:``: none (every request goes
to nginx), ``backend: memory`` and ``backend: redis`` (a redis-server of its
own on a free port). Each is warmed (the first request fills the cache), then
wrk sends the same non-streaming and streaming request for ``--seconds``; the
proxy's CPU seconds over the run (``/proc``) divided by its requests is its
CPU per request. A figure, not a verdict: read the ratios.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bodies
from bench import (
    MODEL,
    free_port,
    http_request,
    parse_wrk,
    pin_cmd,
    proc_cpu_seconds,
    write_nginx_conf,
    write_proxy_conf,
    write_wrk_script,
)

ROOT = Path(__file__).resolve().parents[2]


def wait_port(port: int, path: str = "/healthz", tries: int = 200) -> None:
    for _ in range(tries):
        try:
            http_request(port, "GET", path)
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing answered on {port}{path}")


def wait_redis(port: int, tries: int = 200) -> None:
    for _ in range(tries):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"redis-server did not answer on {port}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--conns", type=int, default=10)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="llmproxy-bench-cache-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        up = free_port()
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        conf = write_nginx_conf(tmp, up)
        procs.append(subprocess.Popen(pin_cmd(1, [nginx, "-p", str(tmp), "-c", str(conf),
                                                  "-e", str(tmp / "nginx-error.log")]),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(up, "/health")
        rport = free_port()
        procs.append(subprocess.Popen(pin_cmd(1, ["redis-server", "--port", str(rport), "--save", "",
                                                  "--appendonly", "no", "--dir", str(tmp)]),
                                      stdout=subprocess.DEVNULL))
        wait_redis(rport)
        variants = {
            "pass-through": "",
            "cache memory": "cache: {enabled: true, backend: memory}\n",
            "cache redis": f"cache: {{enabled: true, backend: redis}}\nstate: {{redis: 'redis://127.0.0.1:{rport}/0'}}\n",
        }
        rows = []
        for name, extra in variants.items():
            port = free_port()
            path = write_proxy_conf(tmp, port, up, name=name.replace(" ", "-"), extra=extra)
            with open(tmp / f"{port}.log", "wb") as errors:
                # taskset execs the proxy: the pid is the proxy's own.
                p = subprocess.Popen(pin_cmd(0, [sys.executable, "-m", "llmproxy", "serve", "--config", str(path),
                                                 "--log-level", "WARNING"]), cwd=tmp,
                                     env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                                     stdout=subprocess.DEVNULL, stderr=errors)
            procs.append(p)
            wait_port(port)
            for mode in ("plain", "stream"):
                body = bodies.request_body(MODEL[mode], stream=mode == "stream")
                for _ in range(3):  # the first fills the cache
                    http_request(port, "POST", "/v1/chat/completions", body)
                script = write_wrk_script(tmp, f"{port}-{mode}", body)
                cpu0 = proc_cpu_seconds(p.pid)
                w = subprocess.run(pin_cmd(1, ["wrk", "-t1", f"-c{args.conns}", f"-d{args.seconds}s", "--latency",
                                    "-s", str(script), f"http://127.0.0.1:{port}/v1/chat/completions"]),
                                   capture_output=True, text=True, check=False)
                cpu = proc_cpu_seconds(p.pid) - cpu0
                stats, non2xx, _ = parse_wrk(w.returncode, w.stdout, w.stderr)
                n = stats["requests"]
                rows.append({"variant": name, "mode": mode, "requests": n, "non_2xx": non2xx,
                             "rps": n / (stats["duration_us"] / 1e6), "cpu_us_per_req": cpu / n * 1e6 if n else None,
                             "p50_ms": stats["p50_us"] / 1000})
            p.terminate()
            p.wait(10)
        print(f"{'variant':<14} {'mode':<7} {'req/s':>9} {'CPU µs/req':>11} {'p50 ms':>7} {'non-2xx':>8}")
        for r in rows:
            print(f"{r['variant']:<14} {r['mode']:<7} {r['rps']:>9.0f} {r['cpu_us_per_req']:>11.1f} "
                  f"{r['p50_ms']:>7.2f} {r['non_2xx']:>8}")
        out = ROOT / "tests" / "bench" / "out"
        out.mkdir(exist_ok=True)
        (out / "cache-latest.json").write_text(json.dumps(rows, indent=1))
        return 1 if any(r["non_2xx"] for r in rows) else 0
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
