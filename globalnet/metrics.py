"""Prometheus metrics of the Globalnet controllers (prometheus-client).

Label sets stay small (cluster, controller): per-object labels would grow
without bound with the number of services.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

GLOBAL_IPS_AVAILABLE = Gauge(
    "globalnet_global_ips_available", "Free addresses in the cluster's global CIDR", ["cluster"]
)
GLOBAL_IPS_ALLOCATED = Gauge(
    "globalnet_global_ips_allocated", "Allocated addresses in the cluster's global CIDR",
    ["cluster"],
)
ALLOCATIONS = Gauge(
    "globalnet_allocations", "Objects holding global IPs, by kind", ["cluster", "kind"]
)
RECONCILE_ERRORS = Counter(
    "globalnet_reconcile_errors_total", "Reconciles that raised", ["cluster", "controller"]
)
INTENT_APPLIES = Counter(
    "globalnet_intent_applies_total", "NAT intents handed to the datapath", ["cluster", "result"]
)
INTENT_BUILD_SECONDS = Histogram(
    "globalnet_intent_build_seconds", "Time to derive the NAT intent from the caches",
    ["cluster"],
)


def observe_pool(cluster: str, available: int, allocated: int,
                 by_kind: dict[str, int]) -> None:
    GLOBAL_IPS_AVAILABLE.labels(cluster=cluster).set(available)
    GLOBAL_IPS_ALLOCATED.labels(cluster=cluster).set(allocated)
    for kind, count in by_kind.items():
        ALLOCATIONS.labels(cluster=cluster, kind=kind).set(count)
