"""The metric series ``observe.metrics`` keeps: plain Python numbers, no locks.

A ``Family`` is one metric name with its labels; its children are a
``Value`` (counter or gauge) or a ``Hist`` (histogram buckets, not
cumulative) per label set; ``collect()`` turns them into prometheus_client
families only at scrape time. Every method runs on the event loop's thread.
"""

from __future__ import annotations

from bisect import bisect_left
from itertools import accumulate

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString


class Value:
    """A counter's or gauge's value for one label set."""

    __slots__ = ("v",)

    def __init__(self) -> None:
        self.v = 0.0


class Hist:
    """One histogram series: per-bucket (not cumulative) counts, +Inf last."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: the first bound >= value, i.e. Prometheus' "le".
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


Child = Value | Hist


class Family:
    __slots__ = ("bounds", "children", "doc", "kind", "labelnames", "name")

    def __init__(self, name: str, doc: str, kind: str, labelnames: tuple[str, ...],
                 bounds: tuple[float, ...] = ()) -> None:
        self.name, self.doc, self.kind, self.labelnames, self.bounds = name, doc, kind, labelnames, bounds
        self.children: dict[tuple[str, ...], Child] = {}

    def child(self, labels: tuple[str, ...]) -> Child:
        c = self.children.get(labels)
        if c is None:
            c = self.children[labels] = Hist(self.bounds) if self.kind == "histogram" else Value()
        return c

    def value(self, labels: tuple[str, ...]) -> Value:
        c = self.child(labels)
        assert isinstance(c, Value)
        return c

    def hist(self, labels: tuple[str, ...]) -> Hist:
        c = self.child(labels)
        assert isinstance(c, Hist)
        return c

    def collect(self) -> Metric:
        names = list(self.labelnames)
        if self.kind == "histogram":
            return self._collect_histogram(names)
        cls = CounterMetricFamily if self.kind == "counter" else GaugeMetricFamily
        fam = cls(self.name, self.doc, labels=names)
        for labels, c in self.children.items():
            assert isinstance(c, Value)
            fam.add_metric(list(labels), c.v)
        return fam

    def _collect_histogram(self, names: list[str]) -> Metric:
        fam = HistogramMetricFamily(self.name, self.doc, labels=names)
        les = [le(b) for b in self.bounds] + ["+Inf"]
        for labels, c in self.children.items():
            assert isinstance(c, Hist)
            fam.add_metric(list(labels), list(zip(les, map(float, accumulate(c.counts)))), c.sum)
        return fam


def le(bound: float) -> str:
    """A bucket bound as prometheus_client writes it (Go's float formatting)."""
    return str(floatToGoString(bound))  # type: ignore[no-untyped-call]
