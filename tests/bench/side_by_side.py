"""Two llmproxy variants measured side by side in one run: the method shared by
``--observability-ab`` (ab_observability.py) and ``--versus REV`` (ab_versus.py).

Both proxies are pinned to the same core. By default they are loaded at
once, 25 connections each, and compared by requests per CPU-second: both see
the same machine at the same moments, so a shared VM's steal time, which
moves single runs by ±20 %, cancels out. ``--ab-turns`` instead loads one at
a time, 50 connections, back to back in ABBA order, and compares requests/s.
Rounds are split over ``--ab-sessions`` fresh pairs of processes, launched in
alternating order.

A subclass names the two variants (``VARIANTS``: the reference first, the
one measured against it second), says how each is launched
(``launch_variant``) and what it checks after each session
(``verify_session``); the ratios in the table are second / first.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
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
    http_request,
    log,
    parse_wrk,
    proc_cpu_seconds,
    proc_mem_mb,
    proxy_log_errors,
    write_wrk_script,
)

TOGETHER_CONNS = 25  # per variant, when both are loaded at once
TURNS_CONNS = 50


class SideBySide(Bench):
    VARIANTS: tuple[str, str] = ("a", "b")
    TITLE = "A/B"  # the table's first words
    OUT_NAME = "ab"  # out/<OUT_NAME>-<time>.json / .txt
    LIMIT: float | None = None  # verdict "pass" when capacity second/first >= 1 - LIMIT; None: no verdict
    HEADERS: dict[str, str] = {}  # sent with every request to both variants (a client key)

    def __init__(self, args: Any) -> None:
        super().__init__(args)
        self.session = 0
        self.ports: dict[str, int] = {}
        self.procs_by_variant: dict[str, Any] = {}
        self.answered = {v: 0 for v in self.VARIANTS}  # requests each variant was sent (wrk's count + checks)
        self.results["ab"] = {"variants": list(self.VARIANTS), "rounds": [], "rss_mb": {v: [] for v in self.VARIANTS},
                              "settings": {"rounds": args.ab_rounds, "seconds": args.ab_seconds,
                                           "sessions": args.ab_sessions, "together": not args.ab_turns}}

    # -- what a subclass provides

    def prepare(self) -> None:
        """Before nginx starts (build, check, note what is compared)."""

    def launch_variant(self, variant: str, name: str, port: int) -> Any:
        """Start ``variant``'s proxy on ``port``, logging to ``<name>.log``; return its Popen."""
        raise NotImplementedError

    def verify_session(self) -> None:
        """After each session's measurements, with both proxies still up."""

    def write_scripts(self) -> None:
        """The wrk scripts ``<mode>.lua`` in ``self.tmp`` (default: one fixed request per mode)."""
        for mode in MODES:
            write_wrk_script(self.tmp, mode, bodies.request_body(MODEL[mode], stream=mode == "stream"), self.HEADERS)

    def session_extra(self) -> None:
        """More measurements at the end of each session, both proxies up (after the rounds)."""

    def extra_table(self) -> list[str]:
        """Lines printed under the A/B table."""
        return []

    # -- processes

    def log_name(self, variant: str) -> str:
        return f"proxy-{variant}-s{self.session}.log"

    def use(self, variant: str) -> None:
        """Point ``wrk`` (and the log/pid bookkeeping) at one variant's proxy."""
        self.proxy = self.procs_by_variant[variant]
        self.proxy_port = self.ports[variant]
        self.proxy_log = self.log_name(variant)

    def start_variants(self, order: tuple[str, ...]) -> None:
        """Both proxies, launched in ``order`` (alternating between sessions)."""
        self.ports = {v: free_port() for v in self.VARIANTS}
        self.answered = {v: 0 for v in self.VARIANTS}
        for variant in order:
            name = self.log_name(variant).removesuffix(".log")
            self.procs_by_variant[variant] = self.launch_variant(variant, name, self.ports[variant])

    def stop_variants(self) -> None:
        for proc in self.procs_by_variant.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs_by_variant.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            self.procs.remove(proc)
        self.procs_by_variant.clear()

    def check_alive(self) -> None:
        for variant, proc in self.procs_by_variant.items():
            if proc.poll() is not None:
                raise BenchError(f"llmproxy ({variant}) exited with {proc.returncode}:\n"
                                 f"{self.tail(self.log_name(variant))}")

    # -- measurements

    def sanity_both(self) -> None:
        for variant in self.VARIANTS:
            self.use(variant)
            for mode in MODES:
                req = bodies.request_body(MODEL[mode], stream=mode == "stream")
                status, _, body = http_request(self.proxy_port, "POST", PROXY_PATH, req,
                                               {"Content-Type": "application/json", **self.HEADERS})
                self.answered[variant] += 1
                if status != 200:
                    raise BenchError(f"sanity check ({variant}) {mode}: HTTP {status}: {body[:300]!r}")
                self.check_answer(mode, body, f"sanity check ({variant}) {mode}")
        log("sanity check passed through both proxies")

    def warm_up(self) -> None:
        for variant in self.VARIANTS:  # both the same way
            self.use(variant)
            for mode in MODES:
                r = self.wrk("llmproxy", mode, 50, 1, label=f"warm-up  {variant:4s} {MODE_LABEL[mode]:10s}")
                self.answered[variant] += r.requests

    def order(self, n: int) -> tuple[str, ...]:
        return self.VARIANTS if n % 2 == 0 else self.VARIANTS[::-1]

    def measure(self, first_round: int, rounds: int) -> None:
        """In turns: each variant alone on the core, back to back, ABBA."""
        secs = self.args.ab_seconds
        for rnd in range(first_round, first_round + rounds):
            row: dict[str, Any] = {"round": rnd + 1, "session": self.session}
            for mode in MODES:
                for variant in self.order(rnd):
                    self.use(variant)
                    r = self.wrk("llmproxy", mode, TURNS_CONNS, secs,
                                 label=f"round {rnd + 1:2d} {variant:4s} {MODE_LABEL[mode]:10s} {TURNS_CONNS} conn")
                    self.answered[variant] += r.requests
                    row[f"{mode}_{variant}"] = {"rps": r.rps, "cpu_ms": r.cpu_ms_per_req, "requests": r.requests,
                                                "foreign_cpu": r.foreign_cpu, "failed": r.failed}
            self.results["ab"]["rounds"].append(row)

    def measure_together(self, first_round: int, rounds: int) -> None:
        """Both variants loaded at once, 25 connections each, sharing the proxy core.

        Both see the same machine at the same moments (a shared VM's steal
        time hits them alike), so requests per CPU-second compare cleanly:
        ``cpu_ms`` first/second is the ratio of their capacities on a core of their own.
        """
        secs = self.args.ab_seconds
        conns = TOGETHER_CONNS
        for rnd in range(first_round, first_round + rounds):
            row: dict[str, Any] = {"round": rnd + 1, "session": self.session}
            for mode in MODES:
                self.check_alive()
                procs = {}
                cpu0 = {v: proc_cpu_seconds(self.procs_by_variant[v].pid) for v in self.VARIANTS}
                t0 = time.monotonic()
                for variant in self.order(rnd):
                    url = f"http://127.0.0.1:{self.ports[variant]}{PROXY_PATH}"
                    cmd = self.wrk_cmd(mode, conns, secs, url)
                    procs[variant] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                outs = {v: p.communicate(timeout=secs + 60) for v, p in procs.items()}
                wall = time.monotonic() - t0
                self.check_alive()
                cpu1 = {v: proc_cpu_seconds(self.procs_by_variant[v].pid) for v in self.VARIANTS}
                parts = []
                for variant in self.VARIANTS:
                    d, non2xx, errors = parse_wrk(procs[variant].returncode, *outs[variant])
                    failed = non2xx + sum(errors.values())
                    requests, cpu = d["requests"], cpu1[variant] - cpu0[variant]
                    self.answered[variant] += requests
                    what = f"round {rnd + 1} {variant} {MODE_LABEL[mode]}"
                    if failed:
                        self.problems.append(f"{what}: {non2xx} non-2xx/3xx responses, socket errors {errors}")
                        log(f"!!! {what}: {non2xx} non-2xx/3xx responses, socket errors {errors}")
                    if not requests:
                        self.problems.append(f"{what}: no requests completed")
                    else:  # a short or error answer shows up as a smaller average response
                        low = self.expected_body[mode]
                        if not low <= d["bytes"] / requests <= low + 2500:
                            self.problems.append(f"{what}: average response {d['bytes'] / requests:.0f} bytes, "
                                                 f"expected {low}..{low + 2500} (headers + body)")
                    row[f"{mode}_{variant}"] = {
                        "rps": requests / (d["duration_us"] / 1e6), "requests": requests, "failed": failed,
                        "cpu_ms": 1000 * cpu / requests if requests else None, "cpu_share": cpu / wall}
                    parts.append(f"{variant} {row[f'{mode}_{variant}']['rps']:6.0f} req/s "
                                 f"{row[f'{mode}_{variant}']['cpu_ms'] or 0:.3f} ms CPU/req "
                                 f"({100 * cpu / wall:.0f}% core)")
                log(f"round {rnd + 1:2d} together {MODE_LABEL[mode]:10s} 2x{conns} conn: " + ";  ".join(parts))
                time.sleep(0.5)  # requests wrk cut off finish before the next measurement
            self.results["ab"]["rounds"].append(row)

    def session_log_errors(self) -> dict[str, dict[str, int]]:
        """ERROR records in each variant's log this session (also kept in the JSON)."""
        found = {}
        for variant in self.VARIANTS:
            errors = proxy_log_errors(self.tmp / self.log_name(variant))
            if errors:
                found[variant] = errors
                self.results["ab"].setdefault("log_errors", []).append({"session": self.session, variant: errors})
        return found

    def run(self) -> int:
        if self.pinned:
            os.sched_setaffinity(0, {self.other_core})
        log(f"work dir {self.tmp}")
        self.prepare()
        self.write_scripts()
        self.start_nginx()
        sessions = max(1, min(self.args.ab_sessions, self.args.ab_rounds))
        done = 0
        for self.session in range(1, sessions + 1):
            # A fresh pair of processes per session, launched in alternating
            # order, so neither variant always gets the same process slot.
            order = self.order(self.session - 1)
            log(f"session {self.session} of {sessions}: starting {' then '.join(order)}")
            self.start_variants(order)
            self.sanity_both()
            rounds = (self.args.ab_rounds - done) // (sessions - self.session + 1)
            self.warm_up()
            if self.args.ab_turns:
                self.measure(done, rounds)
            else:
                self.measure_together(done, rounds)
            done += rounds
            self.check_alive()
            self.session_extra()
            self.verify_session()
            for variant in self.VARIANTS:
                self.results["ab"]["rss_mb"][variant].append(proc_mem_mb(self.procs_by_variant[variant].pid)["VmRSS"])
            self.stop_variants()
        table = "\n".join([ab_table(self.results["ab"], self.TITLE, self.LIMIT), *self.extra_table()])
        self.results["problems"] = self.problems
        self.results["noisy_runs"] = self.noisy
        print()
        print(table, flush=True)
        self.write_out(table, name=self.OUT_NAME, latest=False)
        if self.noisy:
            print("\nWARNING: other processes were busy during some runs (alternating and pairing spread the effect "
                  "over both variants):", file=sys.stderr)
            for n in self.noisy:
                print(f"  - {n}", file=sys.stderr)
        if self.problems:
            print("\nFAILED:", *self.problems, sep="\n  - ", file=sys.stderr)
            return 1
        if self.args.check_targets and any(s.get("verdict") == "FAIL" for s in self.results["ab"]["summary"].values()):
            return 2
        return 0


def ab_table(ab: dict[str, Any], title: str, limit: float | None = None) -> str:
    """Per mode: medians of both variants, the medians of the per-round ratios, and RSS per session.

    The capacity ratio is what the second variant serves per second on a
    saturated core relative to the first. Taken in turns, that is
    second/first requests/s; taken together (the two sharing one core), it is
    first/second CPU per request, since their shares of the core need not be equal.
    """
    a, b = ab["variants"]
    rounds = ab["rounds"]
    together = ab["settings"]["together"]
    summary: dict[str, Any] = {}
    how = (f"both at once on one core, {TOGETHER_CONNS} connections each" if together
           else f"in turns, {TURNS_CONNS} connections, ABBA")
    w = max(len(a), len(b)) + 7  # "<name> req/s"
    verdict_head = f"   verdict (>= {1 - limit:.2f})" if limit is not None else ""
    lines = [
        (f"{title}: {len(rounds)} rounds x {ab['settings']['seconds']:g} s, "
         f"{ab['settings']['sessions']} process pairs, {how}"),
        (f"{'mode':<12}{a + ' req/s':>{w}}{b + ' req/s':>{w}}{b + '/' + a:>{w - 2}}"
         f"{a + ' CPU':>{w - 2}}{b + ' CPU':>{w - 2}}{a + '/' + b:>{w - 2}}"
         f"   capacity {b}/{a} median [range]{verdict_head}"),
    ]
    for mode in MODES:
        xa = [r[f"{mode}_{a}"] for r in rounds]
        xb = [r[f"{mode}_{b}"] for r in rounds]
        rps_ratios = [y["rps"] / x["rps"] for x, y in zip(xa, xb, strict=True) if x["rps"]]
        cpu_ratios = [x["cpu_ms"] / y["cpu_ms"] for x, y in zip(xa, xb, strict=True) if x["cpu_ms"] and y["cpu_ms"]]
        capacities = cpu_ratios if together else rps_ratios
        rps_ratio, cpu_ratio = statistics.median(rps_ratios), statistics.median(cpu_ratios)
        capacity = cpu_ratio if together else rps_ratio
        s: dict[str, Any] = {
            f"{a}_rps_median": statistics.median(x["rps"] for x in xa),
            f"{b}_rps_median": statistics.median(x["rps"] for x in xb),
            "paired_rps_ratio_median": rps_ratio,
            f"{a}_cpu_ms_median": statistics.median(x["cpu_ms"] for x in xa if x["cpu_ms"]),
            f"{b}_cpu_ms_median": statistics.median(x["cpu_ms"] for x in xb if x["cpu_ms"]),
            f"paired_cpu_ratio_{a}_{b}_median": cpu_ratio,
            "capacity_ratio": capacity,
            "capacity_ratio_min": min(capacities),
            "capacity_ratio_max": max(capacities),
        }
        verdict = ""
        if limit is not None:
            s["verdict"] = "pass" if capacity >= 1 - limit else "FAIL"
            verdict = f" {s['verdict']}"
        summary[mode] = s
        lines.append(
            f"{MODE_LABEL[mode]:<12}{s[f'{a}_rps_median']:>{w},.0f}{s[f'{b}_rps_median']:>{w},.0f}"
            f"{rps_ratio:>{w - 2}.3f}{s[f'{a}_cpu_ms_median']:>{w - 2}.3f}{s[f'{b}_cpu_ms_median']:>{w - 2}.3f}"
            f"{cpu_ratio:>{w - 2}.3f}   {capacity:.3f} [{min(capacities):.3f} .. {max(capacities):.3f}]{verdict}"
        )
    rss = ab.get("rss_mb", {})
    if rss.get(a):
        lines.append("RSS MB after each session: " + ";  ".join(
            f"{v} " + ", ".join(f"{x:.1f}" for x in rss[v]) for v in (a, b)))
    lines.append("req/s and CPU (ms per request, proxy process) are medians over rounds; the ratios are medians "
                 "of each round's own ratio")
    ab["summary"] = summary
    return "\n".join(lines)
