"""llmproxy throughput / latency / memory benchmark (run through tests/bench/run.sh).

Starts a zero-latency nginx upstream (static chat.completion and static
50-chunk SSE answers), llmproxy on the ``openai`` provider in front of it, and
wrk as the load generator; the proxy is pinned to core 0, everything else
(nginx, wrk, the first-chunk client, this script) to core 1. Measures direct to
nginx and through llmproxy:

- requests/s and p50/p99 latency at 1 and 50 connections, non-streaming and streaming;
- time to first chunk (tests/bench/ttfb.py, sequential requests on one connection);
- the proxy's CPU milliseconds per request (/proc/<pid>/stat utime+stime);
- the proxy's RSS idle, after the default runs and, with --soak, after
  100,000 and 500,000 requests;
- with --profile, py-spy profiles of the proxy under 50-connection load.

Prints a summary table beside the targets and writes it as JSON (and text) to
tests/bench/out/. Exits 1 if any request failed (non-2xx, socket errors,
wrong answers), 2 with --check-targets if a target was missed.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FLOOR = False  # --floor: run bare_passthrough.py instead of llmproxy
sys.path.insert(0, str(HERE))
# Run as a script, this module is __main__; the modules that ``from bench
# import`` (ab_observability, ab_versus...) must get this same one, or their
# BenchError would be another class that main() does not catch.
sys.modules.setdefault("bench", sys.modules[__name__])

import bodies  # noqa: E402
import ttfb  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
MODES = ("plain", "stream")
MODE_LABEL = {"plain": "non-stream", "stream": "stream(50)"}
MODEL = {"plain": "bench", "stream": "bench-stream"}
UPSTREAM_PATH = {"plain": "/plain/v1/chat/completions", "stream": "/sse/v1/chat/completions"}
PROXY_PATH = "/v1/chat/completions"

# The targets and reference figures, printed beside the measurements.
TARGET_RPS_PLAIN_50 = 3000.0
TARGET_ADDED_P50_MS = 0.5
TARGET_STREAMS_50 = 2000.0
TARGET_FIRST_CHUNK_ADDED_MS = 0.6
TARGET_RSS_IDLE_MB = 60.0
TARGET_RSS_100K_MB = 80.0
NOISE_LIMIT = 0.05  # warn when other processes used more than 5 % of a core during a run
RSS_NO_HIGHER_TOLERANCE = 1.02  # "no higher after 500k": allow 2 % allocator noise
REF_LITELLM = {"rps": "~100", "streams": "21", "rss": "310 MB"}
REF_AIOHTTP = {"rps": "5,300", "streams": "4,500", "rss": "42 MB"}


class BenchError(Exception):
    """Something is wrong with the setup or an answer: stop and say so."""


# --------------------------------------------------------------------------- helpers


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def core_busy_seconds() -> dict[str, float]:
    """Busy (non-idle, non-iowait) seconds per core from /proc/stat, plus 'all'."""
    out: dict[str, float] = {}
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu"):
                break
            name, *vals = line.split()
            v = [int(x) for x in vals]
            busy = sum(v[:8]) - v[3] - v[4]  # user nice system idle iowait irq softirq steal
            out["all" if name == "cpu" else name[3:]] = busy / CLK_TCK
    return out


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of ``root`` and its direct children (nginx master + workers)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == root or int(fields[1]) == root:
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def proc_mem_mb(pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon"):
                out[key] = int(value.split()[0]) / 1024.0
    return out


def pin_cmd(core: int | None, cmd: list[str]) -> list[str]:
    return cmd if core is None else ["taskset", "-c", str(core), *cmd]


def http_request(port: int, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def llmproxy_command() -> list[str]:
    if FLOOR:
        return [sys.executable, "-W", "ignore", str(HERE / "bare_passthrough.py")]
    exe = ROOT / ".venv" / "bin" / "llmproxy"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("llmproxy")
    return [found] if found else [sys.executable, "-m", "llmproxy"]


# --------------------------------------------------------------------------- setup files


def write_nginx_conf(tmp: Path, port: int) -> Path:
    plain = bodies.nginx_return(bodies.chat_completion(), "plain")
    sse = bodies.nginx_return(bodies.sse_stream(), "sse")
    for sub in ("client_body", "proxy"):
        (tmp / sub).mkdir(exist_ok=True)
    conf = f"""\
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    server_tokens off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    tcp_nodelay on;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        location = /plain/v1/chat/completions {{
            default_type application/json;
            {plain}
        }}
        location = /sse/v1/chat/completions {{
            default_type text/event-stream;
            {sse}
        }}
        location = /health {{
            default_type text/plain;
            return 200 'ok';
        }}
    }}
}}
"""
    path = tmp / "nginx.conf"
    path.write_text(conf)
    return path


def write_proxy_conf(tmp: Path, proxy_port: int, upstream_port: int, *, name: str = "proxy",
                     extra: str = "") -> Path:
    conf = f"""\
# generated by tests/bench/bench.py
listen: 127.0.0.1:{proxy_port}
providers:
  plain:
    type: openai
    base_url: http://127.0.0.1:{upstream_port}/plain/v1
    api_key: dummy
  sse:
    type: openai
    base_url: http://127.0.0.1:{upstream_port}/sse/v1
    api_key: dummy
models:
  {MODEL['plain']}:
    deployments:
      - {{provider: plain, model: {bodies.MODEL}}}
  {MODEL['stream']}:
    deployments:
      - {{provider: sse, model: {bodies.MODEL}}}
{extra}"""
    # A directory of its own: the proxy watches its config's directory for
    # reloads, and the logs written next to it would wake the watcher.
    conf_dir = tmp / f"{name}-config"
    conf_dir.mkdir(exist_ok=True)
    path = conf_dir / f"{name}.yaml"
    path.write_text(conf)
    return path


WRK_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"lat_min_us":%d,"lat_mean_us":%.3f,"lat_stdev_us":%.3f,"lat_max_us":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
"""


def write_wrk_script(tmp: Path, name: str, body: bytes, headers: dict[str, str] | None = None) -> Path:
    text = body.decode()
    if "]==]" in text:
        raise BenchError("request body cannot be embedded in a Lua long string")
    extra = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in (headers or {}).items())
    lua = (
        'wrk.method = "POST"\n'
        f"wrk.body = [==[{text}]==]\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        + extra
        + WRK_DONE
    )
    path = tmp / f"{name}.lua"
    path.write_text(lua)
    return path


# --------------------------------------------------------------------------- runs


@dataclass
class WrkResult:
    target: str
    mode: str
    conns: int
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    mean_ms: float
    max_ms: float
    bytes_per_response: float
    errors: dict[str, int]
    non_2xx_3xx: int
    cpu_s: float | None = None
    cpu_ms_per_req: float | None = None
    cpu_util: float | None = None
    rss_after_mb: float | None = None
    proxy_log_errors: int = 0
    foreign_cpu: float | None = None  # cores' worth of CPU used by processes not in the benchmark
    raw: str = field(default="", repr=False)

    @property
    def failed(self) -> int:
        return self.non_2xx_3xx + sum(self.errors.values())


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="llmproxy-bench-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ncpu = len(os.sched_getaffinity(0))
        self.pinned = self.ncpu >= 2 and not args.no_pin
        self.proxy_core = 0 if self.pinned else None
        self.other_core = 1 if self.pinned else None
        self.upstream_port = free_port()
        self.proxy_port = free_port()
        self.proxy: subprocess.Popen[bytes] | None = None
        self.proxy_log = "proxy.log"  # the log of the proxy that ``wrk`` measures
        self._log_offsets: dict[str, int] = {}
        self.proxied = 0  # requests sent through the proxy since it started
        self.problems: list[str] = []
        self.noisy: list[str] = []
        self.results: dict[str, Any] = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "host": {"cpus": os.cpu_count(), "affinity": sorted(os.sched_getaffinity(0)), "pinned": self.pinned},
            "settings": {
                "duration_s": args.duration, "ttfb_n": args.ttfb_n, "soak": args.soak,
                "stream_chunks": bodies.STREAM_CHUNKS,
            },
            "runs": [], "rss": {}, "ttfb": {},
        }
        self.expected_body = {"plain": len(bodies.chat_completion()), "stream": len(bodies.sse_stream())}

    # -- processes

    def spawn(self, cmd: list[str], log_name: str, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        out = open(self.tmp / log_name, "wb")
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd)
        out.close()
        self.procs.append(p)
        return p

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for p in reversed(self.procs):
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)

    def close(self) -> None:
        """At the very end, also on errors: stop every process (subclasses clean up more)."""
        self.stop_all()

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.tmp / name
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def wait_http(self, port: int, path: str, proc: subprocess.Popen[bytes], what: str, logname: str) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BenchError(f"{what} exited with {proc.returncode}:\n{self.tail(logname)}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                status, _, _ = http_request(port, "GET", path, timeout=1)
                if status == 200:
                    return
            time.sleep(0.05)
        raise BenchError(f"{what} did not answer GET {path} within 20 s:\n{self.tail(logname)}")

    def start_nginx(self) -> None:
        conf = write_nginx_conf(self.tmp, self.upstream_port)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        test = subprocess.run([nginx, "-t", "-q", "-p", str(self.tmp), "-c", str(conf), "-e", str(self.tmp / "nginx-error.log")],
                              capture_output=True, text=True)
        if test.returncode != 0:
            raise BenchError(f"nginx rejected the generated config:\n{test.stderr}{self.tail('nginx-error.log')}")
        p = self.spawn(pin_cmd(self.other_core, [nginx, "-p", str(self.tmp), "-c", str(conf),
                                                 "-e", str(self.tmp / "nginx-error.log")]), "nginx.out")
        self.wait_http(self.upstream_port, "/health", p, "nginx", "nginx-error.log")
        log(f"nginx upstream on 127.0.0.1:{self.upstream_port} (pid {p.pid})")

    def start_proxy(self) -> None:
        self.proxy = self.launch_proxy("proxy", self.proxy_port, self.args.proxy_log_level)

    def launch_proxy(self, name: str, port: int, log_level: str, extra_config: str = "", *,
                     command: list[str] | None = None, env: dict[str, str] | None = None,
                     cwd: Path | None = None) -> subprocess.Popen[bytes]:
        """llmproxy on ``port`` pinned to the proxy core, logging to ``<name>.log``.

        ``command`` (default: ``llmproxy_command()``), ``env`` and ``cwd`` say
        which llmproxy runs (``--versus`` runs two checkouts).
        """
        conf = write_proxy_conf(self.tmp, port, self.upstream_port, name=name, extra=extra_config)
        cmd = [*(command or llmproxy_command()), "--log-level", log_level, "serve", "--config", str(conf),
               "--host", "127.0.0.1", "--port", str(port)]
        proc = self.spawn(pin_cmd(self.proxy_core, cmd), f"{name}.log", env=env, cwd=cwd)
        self.wait_http(port, "/healthz", proc, f"llmproxy ({name})", f"{name}.log")
        log(f"llmproxy ({name}) on 127.0.0.1:{port} (pid {proc.pid}, core {self.proxy_core})")
        return proc

    @property
    def proxy_pid(self) -> int:
        assert self.proxy is not None
        if self.proxy.poll() is not None:
            raise BenchError(f"llmproxy exited with {self.proxy.returncode}:\n{self.tail(self.proxy_log)}")
        return self.proxy.pid

    def our_cpu_seconds(self) -> float:
        """CPU used by the benchmark's own processes: proxy, nginx, this script and its waited-for children."""
        total = 0.0
        for p in self.procs:
            if p.poll() is None:
                total += tree_cpu_seconds(p.pid)
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            ru = resource.getrusage(who)
            total += ru.ru_utime + ru.ru_stime
        return total

    def new_proxy_log_errors(self) -> int:
        """ERROR lines the measured proxy logged since the last call (text start-up lines and JSON lines)."""
        name = self.proxy_log
        start = self._log_offsets.get(name, 0)
        try:
            with open(self.tmp / name, "rb") as f:
                f.seek(start)
                data = f.read()
        except OSError:
            return 0
        end = data.rfind(b"\n") + 1  # a line still being written is counted next time
        self._log_offsets[name] = start + end
        return sum(1 for line in data[:end].splitlines() if is_error_line(line))

    # -- checks

    def check_answer(self, mode: str, body: bytes, where: str) -> None:
        if mode == "plain":
            try:
                doc = json.loads(body)
            except ValueError:
                raise BenchError(f"{where}: non-streaming answer is not JSON: {body[:200]!r}") from None
            if doc.get("object") != "chat.completion" or not doc.get("choices"):
                raise BenchError(f"{where}: unexpected non-streaming answer: {body[:200]!r}")
        else:
            try:
                n, done = bodies.count_events(body)
            except ValueError:
                raise BenchError(f"{where}: stream event is not JSON: {body[:200]!r}") from None
            if n != bodies.STREAM_CHUNKS or not done:
                raise BenchError(f"{where}: stream had {n} JSON events (want {bodies.STREAM_CHUNKS}), "
                                 f"[DONE] last: {done}")

    def sanity(self) -> None:
        for mode in MODES:
            req = bodies.request_body(MODEL[mode], stream=mode == "stream")
            for target, port, path in (("direct", self.upstream_port, UPSTREAM_PATH[mode]),
                                       ("llmproxy", self.proxy_port, PROXY_PATH)):
                status, headers, body = http_request(port, "POST", path, req, {"Content-Type": "application/json"})
                if target == "llmproxy":
                    self.proxied += 1
                if status != 200:
                    raise BenchError(f"sanity check {target} {mode}: HTTP {status}: {body[:300]!r}")
                self.check_answer(mode, body, f"sanity check {target} {mode}")
        log("sanity check passed: both answers correct, direct and through the proxy")

    # -- wrk

    def wrk_cmd(self, mode: str, conns: int, duration: float, url: str) -> list[str]:
        """wrk (one thread, pinned off the proxy's core) POSTing ``mode``'s request to ``url``."""
        return pin_cmd(self.other_core, ["wrk", "-t1", f"-c{conns}", f"-d{max(1, round(duration))}s", "--latency",
                                         "--timeout", "10s", "-s", str(self.tmp / f"{mode}.lua"), url])

    def wrk(self, target: str, mode: str, conns: int, duration: float, label: str = "") -> WrkResult:
        url = (f"http://127.0.0.1:{self.upstream_port}{UPSTREAM_PATH[mode]}" if target == "direct"
               else f"http://127.0.0.1:{self.proxy_port}{PROXY_PATH}")
        cmd = self.wrk_cmd(mode, conns, duration, url)
        pid = self.proxy_pid if target == "llmproxy" else None
        ours0 = self.our_cpu_seconds()
        busy0 = core_busy_seconds()["all"]
        cpu0 = proc_cpu_seconds(pid) if pid else 0.0
        t0 = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
        wall = time.monotonic() - t0
        cpu1 = proc_cpu_seconds(pid) if pid else 0.0
        busy1 = core_busy_seconds()["all"]
        ours1 = self.our_cpu_seconds()
        d, non2xx, errors = parse_wrk(proc.returncode, proc.stdout, proc.stderr)
        requests = d["requests"]
        dur = d["duration_us"] / 1e6
        r = WrkResult(
            target=target, mode=mode, conns=conns, requests=requests, duration_s=dur,
            rps=requests / dur if dur else 0.0,
            p50_ms=d["p50_us"] / 1000, p90_ms=d["p90_us"] / 1000, p99_ms=d["p99_us"] / 1000,
            p999_ms=d["p999_us"] / 1000, mean_ms=d["lat_mean_us"] / 1000, max_ms=d["lat_max_us"] / 1000,
            bytes_per_response=d["bytes"] / requests if requests else 0.0,
            errors=errors, non_2xx_3xx=non2xx, raw=proc.stdout,
        )
        # Anything else busy on the machine (other people's tests...) skews the figures.
        r.foreign_cpu = max(0.0, ((busy1 - busy0) - (ours1 - ours0)) / wall) if wall else None
        if r.foreign_cpu is not None and r.foreign_cpu > NOISE_LIMIT:
            self.noisy.append(f"{label or f'{target} {MODE_LABEL[mode]} {conns} conn'}: "
                              f"{100 * r.foreign_cpu:.0f}% of a core used by other processes")
        if pid:
            time.sleep(0.5)  # let the proxy finish the requests wrk cut off (and log about them)
            r.proxy_log_errors = self.new_proxy_log_errors()
            self.proxied += requests
            r.cpu_s = cpu1 - cpu0
            r.cpu_ms_per_req = 1000 * r.cpu_s / requests if requests else None
            r.cpu_util = r.cpu_s / wall if wall else None
            r.rss_after_mb = proc_mem_mb(pid)["VmRSS"]
        what = label or f"{target:8s} {MODE_LABEL[mode]:10s} {conns:2d} conn"
        cpu = f"  proxy CPU {r.cpu_ms_per_req:.3f} ms/req ({100 * r.cpu_util:.0f}%)" if pid and r.cpu_ms_per_req else ""
        errs = f"  [{r.proxy_log_errors} ERROR lines in proxy log]" if r.proxy_log_errors else ""
        if r.foreign_cpu is not None and r.foreign_cpu > NOISE_LIMIT:
            errs += f"  [NOISY: other processes used {100 * r.foreign_cpu:.0f}% of a core]"
        log(f"{what}: {r.rps:9.0f} req/s  p50 {r.p50_ms:.3f} ms  p99 {r.p99_ms:.3f} ms  "
            f"n={requests}{cpu}{errs}")
        if r.failed:
            self.problems.append(f"{what}: {r.non_2xx_3xx} non-2xx/3xx responses, socket errors {errors}")
            log(f"!!! {what}: {r.non_2xx_3xx} non-2xx/3xx responses, socket errors {errors}")
        if requests == 0:
            self.problems.append(f"{what}: no requests completed")
        else:
            # A short or error answer shows up as a smaller average response.
            low = self.expected_body[mode]
            high = low + 2500
            if not low <= r.bytes_per_response <= high:
                self.problems.append(f"{what}: average response {r.bytes_per_response:.0f} bytes, "
                                     f"expected {low}..{high} (headers + body)")
        return r

    # -- phases

    def main_runs(self) -> None:
        d = self.args.duration
        for mode in MODES:
            # warm up the proxy's code paths and connection pool on this mode
            self.wrk("llmproxy", mode, 50, 1, label=f"warm-up  {MODE_LABEL[mode]:10s} 50 conn")
        self.results["rss"]["after_warmup_mb"] = proc_mem_mb(self.proxy_pid)["VmRSS"]
        for mode in MODES:
            for conns in (1, 50):
                for target in ("direct", "llmproxy"):
                    r = self.wrk(target, mode, conns, d)
                    self.results["runs"].append({k: v for k, v in r.__dict__.items() if k != "raw"})

    def first_chunk(self) -> None:
        n = self.args.ttfb_n
        req = bodies.request_body(MODEL["stream"], stream=True)
        urls = {
            "direct": f"http://127.0.0.1:{self.upstream_port}{UPSTREAM_PATH['stream']}",
            "llmproxy": f"http://127.0.0.1:{self.proxy_port}{PROXY_PATH}",
        }
        # Alternate direct and proxied blocks so drift hits both alike.
        blocks = 4
        samples: dict[str, dict[str, list[float]]] = {t: {"first": [], "total": []} for t in urls}
        for b in range(blocks):
            for target, url in urls.items():
                size = n // blocks + (1 if b < n % blocks else 0)
                client = ttfb.Client(url, req)
                try:
                    for i in range(50 + size):
                        first, total, raw = client.one()
                        if i == 0:
                            self.check_answer("stream", raw, f"first-chunk {target}")
                        if i >= 50:
                            samples[target]["first"].append(first)
                            samples[target]["total"].append(total)
                finally:
                    client.close()
                if target == "llmproxy":
                    self.proxied += 50 + size
        for target, s in samples.items():
            self.results["ttfb"][target] = {
                "first_chunk": ttfb.summarize(s["first"]), "whole_stream": ttfb.summarize(s["total"])}
        fd, fp = self.results["ttfb"]["direct"]["first_chunk"], self.results["ttfb"]["llmproxy"]["first_chunk"]
        log(f"first chunk ({n} sequential streams, 1 conn): direct p50 {fd['p50_ms']:.3f} ms p99 {fd['p99_ms']:.3f} ms; "
            f"llmproxy p50 {fp['p50_ms']:.3f} ms p99 {fp['p99_ms']:.3f} ms")

    def soak(self) -> None:
        """Through the proxy only, 50 connections, non-streaming and streaming
        segments alternating, until 100,000 and then 500,000 proxied requests."""
        checkpoints = [100_000, 500_000]
        rates = {"plain": 3000.0, "stream": 2000.0}
        mode_i = 0
        segments = []
        noisy_before = len(self.noisy)
        for _ in range(400):  # bounded; ~5 s segments
            if not checkpoints:
                break
            goal = checkpoints[0]
            if self.proxied >= goal:
                mem = proc_mem_mb(self.proxy_pid)
                key = f"after_{goal // 1000}k_mb"
                self.results["rss"][key] = mem["VmRSS"]
                self.results["rss"][f"after_{goal // 1000}k_requests"] = self.proxied
                self.results["rss"][f"after_{goal // 1000}k_hwm_mb"] = mem["VmHWM"]
                log(f"RSS after {self.proxied:,} proxied requests: {mem['VmRSS']:.1f} MB (peak {mem['VmHWM']:.1f} MB)")
                checkpoints.pop(0)
                continue
            mode = MODES[mode_i % 2]
            mode_i += 1
            remaining = goal - self.proxied
            # Both modes alternate, so this segment covers about half of what is left.
            seconds = min(5.0, max(1.0, remaining / 2 / rates[mode]))
            r = self.wrk("llmproxy", mode, 50, seconds, label=f"soak     {MODE_LABEL[mode]:10s} 50 conn")
            if r.rps:
                rates[mode] = r.rps
            segments.append({"mode": mode, "requests": r.requests, "rps": r.rps, "rss_mb": r.rss_after_mb,
                             "failed": r.failed})
        self.results["soak"] = segments
        noisy = self.noisy[noisy_before:]
        if noisy:  # one line for the soak rather than one per segment
            del self.noisy[noisy_before:]
            self.noisy.append(f"soak: {len(noisy)} of {len(segments)} segments (RSS is unaffected)")

    def profile(self) -> None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists():
            raise BenchError("py-spy not found: .venv/bin/pip install py-spy")
        out_dir = Path(self.args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        seconds = self.args.profile_seconds
        self.results["profiles"] = {}
        for mode in MODES:
            raw = out_dir / f"profile-{mode}-50c.txt"
            cmd = pin_cmd(self.other_core, [spy, "record", "--pid", str(self.proxy_pid), "--rate", "200",
                                            "--duration", str(seconds), "--format", "raw", "--function",
                                            "--nonblocking", "--output", str(raw)])
            if self.args.profile_native:
                cmd.insert(cmd.index("--nonblocking"), "--native")
            log(f"profiling {MODE_LABEL[mode]} at 50 connections for {seconds} s with py-spy")
            spy_proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            try:
                self.wrk("llmproxy", mode, 50, seconds + 2, label=f"profile  {MODE_LABEL[mode]:10s} 50 conn")
                out, _ = spy_proc.communicate(timeout=60)
            finally:
                if spy_proc.poll() is None:
                    spy_proc.kill()
                    spy_proc.wait()
            if spy_proc.returncode != 0 or not raw.exists():
                raise BenchError(f"py-spy failed ({spy_proc.returncode}): {out.decode(errors='replace')}")
            summary = summarize_profile(raw, top=15)
            self.results["profiles"][mode] = summary
            print(format_profile(summary, f"{MODE_LABEL[mode]}, 50 connections"), flush=True)

    def run(self) -> int:
        a = self.args
        if self.pinned:
            os.sched_setaffinity(0, {self.other_core})
        else:
            log(f"warning: {self.ncpu} CPU(s) available (or --no-pin); nothing is pinned")
        log(f"work dir {self.tmp}")
        write_wrk_script(self.tmp, "plain", bodies.request_body(MODEL["plain"], stream=False))
        write_wrk_script(self.tmp, "stream", bodies.request_body(MODEL["stream"], stream=True))
        self.start_nginx()
        self.start_proxy()
        time.sleep(1.0)
        mem = proc_mem_mb(self.proxy_pid)
        self.results["rss"]["idle_mb"] = mem["VmRSS"]
        log(f"proxy idle RSS {mem['VmRSS']:.1f} MB")
        self.sanity()
        if not a.only_profile:
            self.main_runs()
            self.first_chunk()
            mem = proc_mem_mb(self.proxy_pid)
            self.results["rss"]["after_runs_mb"] = mem["VmRSS"]
            self.results["rss"]["after_runs_requests"] = self.proxied
            self.results["rss"]["after_runs_hwm_mb"] = mem["VmHWM"]
            log(f"proxy RSS after {self.proxied:,} proxied requests: {mem['VmRSS']:.1f} MB")
        if a.soak:
            self.soak()
        if a.profile or a.only_profile:
            self.profile()
        log_errors = proxy_log_errors(self.tmp / "proxy.log")
        self.results["proxy_log_errors"] = log_errors
        self.results["problems"] = self.problems
        self.results["noisy_runs"] = self.noisy
        self.results["proxy_log_tail"] = self.tail("proxy.log", 40)
        if not a.only_profile:
            table, verdicts = summary_table(self.results, a)
            self.results["verdicts"] = verdicts
            print()
            print(table, flush=True)
        else:
            table, verdicts = "", {}
        self.write_out(table)
        if self.noisy:
            print("\nWARNING: other processes were busy during these runs; their figures are pessimistic "
                  "(re-run on a quiet machine):", file=sys.stderr)
            for n in self.noisy:
                print(f"  - {n}", file=sys.stderr)
        if log_errors:
            print("\nWARNING: the proxy logged errors (counted per run as 'proxy_log_errors' in the JSON; "
                  "--keep keeps proxy.log):", file=sys.stderr)
            for what, n in log_errors.items():
                print(f"  {n:6d} x {what}", file=sys.stderr)
        if self.problems:
            print("\nFAILED: some requests did not succeed:", file=sys.stderr)
            for p in self.problems:
                print(f"  - {p}", file=sys.stderr)
            return 1
        if a.check_targets and any(v == "FAIL" for v in verdicts.values()):
            return 2
        return 0

    def write_out(self, table: str, name: str = "bench", latest: bool = True) -> None:
        """``<name>-<time>.json`` (and ``.txt`` with the table) in --out; ``latest.*`` too."""
        out = Path(self.args.out)
        out.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        data = json.dumps(self.results, indent=2, default=str)
        names = [f"{name}-{stamp}"] + (["latest"] if latest else [])
        for n in names:
            (out / f"{n}.json").write_text(data)
            if table:
                (out / f"{n}.txt").write_text(table + "\n")
        log(f"wrote {out / f'{names[0]}.json'}")


def parse_wrk(returncode: int, stdout: str, stderr: str) -> tuple[dict[str, Any], int, dict[str, int]]:
    """wrk's BENCHJSON figures, its non-2xx/3xx count and its socket errors by kind."""
    if returncode != 0:
        raise BenchError(f"wrk failed ({returncode}): {stderr or stdout}")
    m = re.search(r"^BENCHJSON (\{.*\})$", stdout, re.MULTILINE)
    if not m:
        raise BenchError(f"wrk printed no BENCHJSON line:\n{stdout}\n{stderr}")
    d = json.loads(m.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", stdout)
    errors = {k[4:]: d[k] for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout")}
    return d, int(non2xx.group(1)) if non2xx else 0, errors


_JSON_ERROR = re.compile(rb'^\{"ts":"[^"]*","level":"(?:error|critical)"')
_TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+ (\w+) (.*)$")


def is_error_line(line: bytes) -> bool:
    """An ERROR/CRITICAL record's first line, in the CLI's text start-up format or as a JSON line."""
    return b" ERROR " in line or b" CRITICAL " in line or _JSON_ERROR.match(line) is not None


def proxy_log_errors(path: Path) -> dict[str, int]:
    """ERROR records in the proxy's log, counted by logger message + final exception line."""
    counts: dict[str, int] = {}
    if not path.exists():
        return counts
    current: str | None = None
    exc_line = ""

    def flush() -> None:
        if current is not None:
            key = current + (f" -> {exc_line}" if exc_line else "")
            counts[key] = counts.get(key, 0) + 1

    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):  # a JSON line (after logging is configured): one record, exc inside
            flush()
            current, exc_line = None, ""
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("level") in ("error", "critical"):
                exc = str(doc.get("exc") or "").strip().splitlines()
                key = re.sub(r"\d+", "N", f"{doc.get('logger')}: {doc.get('msg')}")
                key += f" -> {exc[-1][:200]}" if exc else ""
                counts[key] = counts.get(key, 0) + 1
            continue
        m = _TEXT_LINE.match(line)
        if m:
            flush()
            current = re.sub(r"\d+", "N", m.group(2)) if m.group(1) in ("ERROR", "CRITICAL") else None
            exc_line = ""
        elif current is not None and line and not line.startswith((" ", "Traceback")):
            exc_line = line.strip()[:200]
    flush()
    return counts


# --------------------------------------------------------------------------- report


def _run(results: dict[str, Any], target: str, mode: str, conns: int) -> dict[str, Any] | None:
    for r in results["runs"]:
        if r["target"] == target and r["mode"] == mode and r["conns"] == conns:
            return r
    return None


def _fmt(v: float | None, digits: int = 3) -> str:
    if v is None:
        return "-"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def summary_table(results: dict[str, Any], args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    rows: list[tuple[str, str, str, str, str, str, str]] = []
    verdicts: dict[str, str] = {}

    def verdict(key: str, ok: bool | None) -> str:
        v = "n/a" if ok is None else ("PASS" if ok else "FAIL")
        verdicts[key] = v
        return v

    for mode in MODES:
        unit = "req/s" if mode == "plain" else "streams/s"
        for conns in (1, 50):
            d, p = _run(results, "direct", mode, conns), _run(results, "llmproxy", mode, conns)
            if not d or not p:
                continue
            head = f"{MODE_LABEL[mode]} {conns:>2} conn"
            tgt = ref = ok = ""
            if mode == "plain" and conns == 50:
                tgt, ref = f">= {TARGET_RPS_PLAIN_50:,.0f}", f"{REF_LITELLM['rps']} | {REF_AIOHTTP['rps']}"
                ok = verdict("rps_plain_50", p["rps"] >= TARGET_RPS_PLAIN_50)
            if mode == "stream" and conns == 50:
                tgt, ref = f">= {TARGET_STREAMS_50:,.0f}", f"{REF_LITELLM['streams']} | {REF_AIOHTTP['streams']}"
                ok = verdict("streams_50", p["rps"] >= TARGET_STREAMS_50)
            mark = "*" if any((x.get("foreign_cpu") or 0) > NOISE_LIMIT for x in (d, p)) else ""
            rows.append((f"{head}  {unit}{mark}", _fmt(d["rps"], 0), _fmt(p["rps"], 0),
                         f"{100 * (p['rps'] / d['rps'] - 1):+.0f}%" if d["rps"] else "-", tgt, ok, ref))
            added = p["p50_ms"] - d["p50_ms"]
            tgt = ok = ""
            if mode == "plain" and conns == 1:
                tgt = f"added < {TARGET_ADDED_P50_MS}"
                ok = verdict("added_p50_1conn", added < TARGET_ADDED_P50_MS)
            rows.append((f"{head}  p50 ms", _fmt(d["p50_ms"]), _fmt(p["p50_ms"]), f"{added:+.3f}", tgt, ok, ""))
            rows.append((f"{head}  p99 ms", _fmt(d["p99_ms"]), _fmt(p["p99_ms"]),
                         f"{p['p99_ms'] - d['p99_ms']:+.3f}", "", "", ""))
    t = results.get("ttfb", {})
    if "direct" in t and "llmproxy" in t:
        fd, fp = t["direct"]["first_chunk"], t["llmproxy"]["first_chunk"]
        added = fp["p50_ms"] - fd["p50_ms"]
        ok = verdict("first_chunk_added", added < TARGET_FIRST_CHUNK_ADDED_MS)
        rows.append((f"first chunk (n={fp['n']}) p50 ms", _fmt(fd["p50_ms"]), _fmt(fp["p50_ms"]), f"{added:+.3f}",
                     f"added < {TARGET_FIRST_CHUNK_ADDED_MS}", ok, ""))
        rows.append((f"first chunk (n={fp['n']}) p99 ms", _fmt(fd["p99_ms"]), _fmt(fp["p99_ms"]),
                     f"{fp['p99_ms'] - fd['p99_ms']:+.3f}", "", "", ""))
        wd, wp = t["direct"]["whole_stream"], t["llmproxy"]["whole_stream"]
        rows.append(("whole 50-chunk stream p50 ms", _fmt(wd["p50_ms"]), _fmt(wp["p50_ms"]),
                     f"{wp['p50_ms'] - wd['p50_ms']:+.3f}", "", "", ""))
    for mode in MODES:
        for conns in (1, 50):
            p = _run(results, "llmproxy", mode, conns)
            if p and p.get("cpu_ms_per_req") is not None:
                rows.append((f"proxy CPU ms/req {MODE_LABEL[mode]} {conns:>2}c", "", _fmt(p["cpu_ms_per_req"]),
                             f"({100 * p['cpu_util']:.0f}% core)", "", "", ""))
    rss = results["rss"]
    ok = verdict("rss_idle", rss["idle_mb"] < TARGET_RSS_IDLE_MB)
    rows.append(("proxy RSS idle MB", "", _fmt(rss["idle_mb"], 1), "", f"< {TARGET_RSS_IDLE_MB:.0f}", ok,
                 f"{REF_LITELLM['rss']} | {REF_AIOHTTP['rss']}"))
    if "after_runs_mb" in rss:
        rows.append((f"proxy RSS after {rss['after_runs_requests']:,} req MB", "", _fmt(rss["after_runs_mb"], 1),
                     "", "", "", ""))
    if "after_100k_mb" in rss:
        ok = verdict("rss_100k", rss["after_100k_mb"] < TARGET_RSS_100K_MB)
        rows.append((f"proxy RSS after {rss['after_100k_requests']:,} req MB", "", _fmt(rss["after_100k_mb"], 1),
                     "", f"< {TARGET_RSS_100K_MB:.0f}", ok, ""))
    else:
        verdict("rss_100k", None)
        rows.append(("proxy RSS after 100,000 req MB", "", "(--soak)", "", f"< {TARGET_RSS_100K_MB:.0f}", "n/a", ""))
    if "after_500k_mb" in rss and "after_100k_mb" in rss:
        grow = rss["after_500k_mb"] - rss["after_100k_mb"]
        ok = verdict("rss_500k", rss["after_500k_mb"] <= rss["after_100k_mb"] * RSS_NO_HIGHER_TOLERANCE)
        rows.append((f"proxy RSS after {rss['after_500k_requests']:,} req MB", "", _fmt(rss["after_500k_mb"], 1),
                     f"{grow:+.1f} vs 100k", "<= RSS@100k", ok, ""))
    else:
        verdict("rss_500k", None)
        rows.append(("proxy RSS after 500,000 req MB", "", "(--soak)", "", "<= RSS@100k", "n/a", ""))

    header = ("metric", "direct", "llmproxy", "added", "target", "", "ref: LiteLLM | aiohttp")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    host = results["host"]
    pin = "proxy on core 0; nginx, wrk, clients on core 1" if host["pinned"] else "NOT pinned"
    lines = [
        f"llmproxy benchmark — {host['cpus']} CPUs, {pin}; {args.duration:g} s per wrk run, 1 wrk thread; "
        f"upstream nginx, {bodies.STREAM_CHUNKS}-chunk streams",
        "  ".join(h.ljust(w) for h, w in zip(header, widths)),
        "  ".join("-" * w for w in widths),
    ]
    for r in rows:
        cells = [str(c) for c in r]
        lines.append("  ".join([cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:4], widths[1:4])]
                               + [c.ljust(w) for c, w in zip(cells[4:], widths[4:])]).rstrip())
    fails = [k for k, v in verdicts.items() if v == "FAIL"]
    if any((r.get("foreign_cpu") or 0) > NOISE_LIMIT for r in results["runs"]):
        lines.append(f"* other processes used > {100 * NOISE_LIMIT:.0f}% of a core during this run "
                     "(see noisy_runs in the JSON); its figures are pessimistic")
    lines.append("")
    lines.append(f"targets: {sum(v == 'PASS' for v in verdicts.values())} pass, {len(fails)} fail"
                 + (f" ({', '.join(fails)})" if fails else "")
                 + f", {sum(v == 'n/a' for v in verdicts.values())} not measured")
    return "\n".join(lines), verdicts


def summarize_profile(path: Path, top: int = 15) -> dict[str, Any]:
    """Own (leaf) and cumulative sample counts per frame from py-spy's raw (collapsed) output."""
    own: dict[str, int] = {}
    cum: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_short_frame(f) for f in stack.split(";")]
        frames = [f for f in frames if f]
        # Drop the process entry frames every loop-driven stack starts with; time
        # spent with no Python frame above them is uvloop's C code.
        while frames and frames[0].split(" ", 1)[0] in _ROOT_FRAMES:
            if len(frames) == 1:
                frames = [EVENT_LOOP_FRAME]
                break
            frames.pop(0)
        if not frames:
            continue
        total += n
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for f in set(frames):
            cum[f] = cum.get(f, 0) + n

    def ranked(d: dict[str, int]) -> list[dict[str, Any]]:
        items = sorted(d.items(), key=lambda kv: -kv[1])[:top]
        return [{"frame": k, "samples": v, "pct": 100.0 * v / total if total else 0.0} for k, v in items]

    return {"file": str(path), "samples": total, "own": ranked(own), "cumulative": ranked(cum)}


_ROOT_FRAMES = {"<module>", "main", "cmd_serve", "Runner.run", "run", "BaseEventLoop.run_until_complete",
                "BaseEventLoop.run_forever", "BaseEventLoop._run_once", "Handle._run"}
EVENT_LOOP_FRAME = "[event loop in C: uvloop + socket I/O, no Python frame]"
_SITE = re.compile(r"/(?:site|dist)-packages/")


def _short_frame(frame: str) -> str:
    frame = frame.strip()
    if frame.startswith(("process ", "thread ")):
        return ""
    m = re.match(r"^(.*) \((.*)\)$", frame)
    if not m:
        return frame
    func, where = m.groups()
    parts = _SITE.split(where, 1)
    if len(parts) == 2:
        where = parts[1]
    elif "/llmproxy/" in where:
        where = "llmproxy/" + where.split("/llmproxy/", 1)[1]
    else:
        where = re.sub(r"^.*/lib/python3\.\d+/", "", where)
    return f"{func} ({where})"


def format_profile(summary: dict[str, Any], title: str) -> str:
    lines = [f"\npy-spy profile, {title}: {summary['samples']} busy samples ({summary['file']})"]
    for kind in ("own", "cumulative"):
        lines.append(f"  top {len(summary[kind])} by {kind} time:")
        for i, e in enumerate(summary[kind], 1):
            lines.append(f"    {i:2d}. {e['pct']:5.1f}%  {e['frame']}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="llmproxy benchmark against a zero-latency nginx upstream")
    ap.add_argument("--quick", action="store_true", help="3 s runs and 500 first-chunk samples")
    ap.add_argument("--floor", action="store_true",
                    help="measure bare_passthrough.py (no features) in llmproxy's place: this machine's floor")
    ap.add_argument("--duration", type=float, help="seconds per wrk run (default 10, --quick 3)")
    ap.add_argument("--ttfb-n", type=int, help="sequential streams for time to first chunk (default 2000)")
    ap.add_argument("--soak", action="store_true",
                    help="also drive the proxy to 100,000 and 500,000 requests and record RSS (minutes)")
    ap.add_argument("--profile", action="store_true", help="also profile the proxy with py-spy at 50 connections")
    ap.add_argument("--only-profile", action="store_true", help="skip the measured runs; just profile")
    ap.add_argument("--profile-seconds", type=int, default=10)
    ap.add_argument("--profile-native", action="store_true", help="py-spy --native (C frames too; slower)")
    ap.add_argument("--check-targets", action="store_true", help="exit 2 if a target is missed")
    ap.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    ap.add_argument("--proxy-log-level", default="WARNING")
    ap.add_argument("--observability-ab", action="store_true",
                    help="instead of the table: llmproxy with metrics and access logs off vs on, "
                         "in alternating rounds (tests/bench/ab_observability.py)")
    ap.add_argument("--ab-rounds", type=int, default=8, help="rounds for --observability-ab / --versus (default 8)")
    ap.add_argument("--ab-seconds", type=float, default=4.0,
                    help="seconds per run for --observability-ab / --versus (default 4)")
    ap.add_argument("--ab-turns", action="store_true",
                    help="--observability-ab / --versus: load one variant at a time "
                         "(default: both at once on one core)")
    ap.add_argument("--ab-sessions", type=int, default=2,
                    help="fresh pairs of proxies the --observability-ab / --versus rounds are split over (default 2)")
    ap.add_argument("--keys-ab", action="store_true",
                    help="keys off vs 100 keys configured with the embedded spend store on, side by side "
                         "with the --ab-* options (tests/bench/ab_keys.py)")
    ap.add_argument("--keys-redis", action="store_true",
                    help="with --keys-ab: keys off vs 100 keys with limits and spend on a local redis-server")
    ap.add_argument("--versus", metavar="REV",
                    help="instead of the table: the code at git revision REV ('base', from a temporary worktree) "
                         "vs the current tree ('new'), side by side with the --ab-* options (tests/bench/ab_versus.py)")
    ap.add_argument("--versus-floor", action="store_true",
                    help="instead of the table: bare_passthrough.py ('floor') vs llmproxy at its default log level, "
                         "side by side with the --ab-* options, plus first-chunk latency and issue 20's targets "
                         "(tests/bench/ab_floor.py)")
    ap.add_argument("--floor-features", action="store_true",
                    help="with --versus-floor: llmproxy with 100 keys and the cache on, every request a cache miss")
    ap.add_argument("--workers", action="store_true",
                    help="serve --workers 1 against --workers 2, side by side (ab_workers.py)")
    ap.add_argument("--out", default=str(HERE / "out"), help="where the JSON/text results go")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs)")
    args = ap.parse_args(argv)
    if args.versus and (args.observability_ab or args.floor):
        ap.error("--versus cannot be combined with --observability-ab or --floor")
    if args.keys_ab and (args.versus or args.observability_ab or args.floor):
        ap.error("--keys-ab cannot be combined with --versus, --observability-ab or --floor")
    global FLOOR
    FLOOR = args.floor
    if args.duration is None:
        args.duration = 3.0 if args.quick else 10.0
    if args.ttfb_n is None:
        args.ttfb_n = 500 if args.quick else 2000
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("nginx", "wrk") + (("taskset",) if not args.no_pin else ()):
        if not (shutil.which(tool) or (tool == "nginx" and Path("/usr/sbin/nginx").exists())):
            print(f"bench: {tool} is not installed; run tests/bench/run.sh (it installs it)", file=sys.stderr)
            return 1

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    bench: Bench
    if args.observability_ab:
        from ab_observability import ObservabilityAB

        bench = ObservabilityAB(args)
    elif args.keys_ab:
        from ab_keys import KeysAB, KeysRedisAB

        bench = KeysRedisAB(args) if args.keys_redis else KeysAB(args)
    elif args.versus:
        from ab_versus import VersusAB

        bench = VersusAB(args)
    elif args.versus_floor:
        from ab_floor import FloorAB

        bench = FloorAB(args)
    elif args.workers:
        from ab_workers import WorkersAB

        bench = WorkersAB(args)
    else:
        bench = Bench(args)
    try:
        return bench.run()
    except BenchError as exc:
        print(f"\nbench: FAILED: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nbench: interrupted", file=sys.stderr)
        return 130
    finally:
        bench.close()
        if args.keep:
            log(f"kept {bench.tmp}")
        else:
            shutil.rmtree(bench.tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
