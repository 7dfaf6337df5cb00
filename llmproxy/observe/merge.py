"""Metric samples of several workers, merged into one instance's exposition.

Pure: each worker's families as plain lists in (``local_families``), one
Prometheus text body out (``render_merged``). Counters and histograms are
summed (a scrape through any worker counts every request once); a gauge is
summed, shown once, or kept per worker with a ``worker`` label, as its
meaning says (``SUMMED_GAUGES`` / ``SHARED_GAUGES``; any other gauge is per
worker, which never misstates anything).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from .metrics import Metrics

# A family: [name, help, type, [[sample name, labels, value], ...]].
Family = list[Any]

# Gauges whose instance value is the sum over workers (each worker holds its own share).
SUMMED_GAUGES = frozenset({
    "llmproxy_requests_in_flight",
    "llmproxy_deployment_in_flight",
    "llmproxy_cache_bytes",
    "llmproxy_cache_entries",
})
# Gauges every worker reports alike (the same build, the same shared figure).
SHARED_GAUGES = frozenset({"llmproxy_build_info"})
WORKER_LABEL = "worker"


def local_families(metrics: Metrics) -> list[Family]:
    """This worker's families, JSON-ready."""
    return [
        [m.name, m.documentation, m.type, [[s.name, s.labels, s.value] for s in m.samples]]
        for m in metrics.registry.collect()
    ]


def merge_families(by_worker: Mapping[int, Iterable[Family]]) -> list[Metric]:
    """One family per name, in the first worker's order."""
    merged: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for worker in sorted(by_worker):
        for name, doc, kind, samples in by_worker[worker]:
            fam = merged.get(name)
            if fam is None:
                fam = merged[name] = Metric(name, doc, kind)
                values[name] = {}
            acc = values[name]
            per_worker = kind in ("gauge", "info", "stateset", "unknown") and name not in SUMMED_GAUGES
            shared = name in SHARED_GAUGES
            for sname, labels, value in samples:
                if per_worker and not shared:
                    labels = {**labels, WORKER_LABEL: str(worker)}
                key = (sname, tuple(sorted(labels.items())))
                if shared:
                    acc.setdefault(key, float(value))
                else:
                    acc[key] = acc.get(key, 0.0) + float(value)
    for name, fam in merged.items():
        fam.samples = [Sample(sname, dict(labels), value) for (sname, labels), value in values[name].items()]
    return list(merged.values())


def supervisor_families(workers: int, answered: int, restarts: int) -> list[Metric]:
    gauge = Metric("llmproxy_workers", "Worker processes configured (--workers)", "gauge")
    gauge.samples = [Sample("llmproxy_workers", {}, float(workers))]
    seen = Metric("llmproxy_workers_answering", "Workers whose figures this scrape includes", "gauge")
    seen.samples = [Sample("llmproxy_workers_answering", {}, float(answered))]
    restarted = Metric("llmproxy_worker_restarts", "Worker processes restarted after they died", "counter")
    restarted.samples = [Sample("llmproxy_worker_restarts_total", {}, float(restarts))]
    return [gauge, seen, restarted]


class _Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def render_merged(families: list[Metric]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families))
    return generate_latest(registry)
