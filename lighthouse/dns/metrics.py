"""Prometheus metrics of the DNS server, counted in plain ints off the hot path.

A prometheus-client ``Counter.labels(...).inc()`` costs about a microsecond, a
large share of a query's whole budget here. So the server counts in plain Python
ints and a custom collector turns them into metric families at scrape time:

* ``lighthouse_dns_queries_total{qtype,rcode}``: answers sent. Cached answers
  count their own hits (the hit counter doubles as the round-robin index, see
  ``fastpath.py``); the collector adds those live counts to the folded totals.
* ``lighthouse_dns_answer_latency_seconds``: time in the server per query,
  measured per batch of datagrams read together (every query of the batch is
  counted with the batch's duration: an upper bound, at two clock reads a batch).
* ``lighthouse_dns_malformed_total{reason}``: queries dropped or refused as malformed.
* ``lighthouse_dns_internal_errors_total``: bugs caught in the answer path (a
  SERVFAIL was sent instead); always 0 unless something is wrong.
* ``lighthouse_dns_cached_answers``: wire answers currently cached.
* ``lighthouse_dns_batches_total``: socket reads; queries / batches is the mean
  UDP batch size, which says how well per-wake-up costs are amortised.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from lighthouse.dns.wire import QType, Rcode

LATENCY_BUCKETS: Final = (
    10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 100e-3,
)

StatsKey = tuple[str, str]
"""(qtype name, rcode name): the labels of one queries_total series."""

_QTYPES = {int(t): t.name for t in QType}
_RCODES = {int(r): r.name for r in Rcode}


def stats_key(qtype: int, rcode: int) -> StatsKey:
    """Labels for a query, with unknown types folded into "other" (bounded cardinality)."""
    return _QTYPES.get(qtype, "other"), _RCODES.get(rcode, str(rcode))


class DnsMetrics:
    """Plain counters the server updates; :class:`DnsCollector` exports them."""

    def __init__(self) -> None:
        self.answered: Counter[StatsKey] = Counter()
        self.malformed: Counter[str] = Counter()
        self.internal_errors = 0
        self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.batches = 0
        # Wired by the fast path (live per-entry hit counts) and the answer cache (size).
        self.live: Callable[[], Iterable[tuple[StatsKey, int]]] = lambda: ()
        self.cache_size: Callable[[], int] = lambda: 0

    def observe(self, queries: int, seconds: float) -> None:
        """Record ``queries`` answered within ``seconds`` (one batch)."""
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += queries
        self.latency_sum += seconds * queries
        self.batches += 1

    def queries(self) -> Counter[StatsKey]:
        """Answers sent so far by (qtype, rcode), cached hits included."""
        total = Counter(self.answered)
        for key, hits in self.live():
            total[key] += hits
        return total


class DnsCollector(Collector):
    """Exports a :class:`DnsMetrics` at scrape time."""

    def __init__(self, metrics: DnsMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        m = self.metrics
        queries = CounterMetricFamily(
            "lighthouse_dns_queries", "DNS answers sent.", labels=["qtype", "rcode"]
        )
        for (qtype, rcode), count in sorted(m.queries().items()):
            queries.add_metric([qtype, rcode], count)
        yield queries

        malformed = CounterMetricFamily(
            "lighthouse_dns_malformed", "Malformed queries, by reason.", labels=["reason"]
        )
        for reason, count in sorted(m.malformed.items()):
            malformed.add_metric([reason], count)
        yield malformed

        yield CounterMetricFamily(
            "lighthouse_dns_internal_errors",
            "Errors caught in the answer path (SERVFAIL sent).",
            value=m.internal_errors,
        )
        yield GaugeMetricFamily(
            "lighthouse_dns_cached_answers", "Wire answers cached.", value=m.cache_size()
        )
        yield CounterMetricFamily(
            "lighthouse_dns_batches",
            "Reads of the sockets (UDP: one batch of datagrams; TCP: one message).",
            value=m.batches,
        )

        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(LATENCY_BUCKETS, m.latency_counts, strict=False):
            running += count
            buckets.append((repr(bound), running))
        buckets.append(("+Inf", running + m.latency_counts[-1]))
        yield HistogramMetricFamily(
            "lighthouse_dns_answer_latency_seconds",
            "Time from reading a query to sending its answer (per batch, an upper bound).",
            buckets=buckets,
            sum_value=m.latency_sum,
        )


def register(metrics: DnsMetrics, registry: CollectorRegistry = REGISTRY) -> DnsCollector:
    """Register a collector for ``metrics``; tests pass their own registry."""
    collector = DnsCollector(metrics)
    registry.register(collector)
    return collector
