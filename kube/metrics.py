"""Metrics every agent shares, and the one way an agent serves them.

* ``globalnet_reconcile_errors_total{controller}``: reconciles that raised, counted
  once for every work-queue controller by ``kube.controller`` (Globalnet's, the
  Broker syncer, Lighthouse's), so no controller can forget to count.

``serve(port)`` starts prometheus-client's HTTP server thread on ``port`` (0: off)
for the process's default registry; every agent's ``--metrics-port`` goes through
it. The agents run with host networking on every node, so each has a port of its
own (``deploy.manifests.METRICS_PORTS``). Counters carry no ``_created`` series:
they would double the series for a timestamp nobody queries.
"""

from __future__ import annotations

import logging

import prometheus_client
from prometheus_client import Counter

log = logging.getLogger(__name__)

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

RECONCILE_ERRORS = Counter(
    "globalnet_reconcile_errors", "Reconciles that raised, by controller", ["controller"])


def serve(port: int, *, host: str = "0.0.0.0", what: str = "agent") -> bool:
    """Serve ``/metrics`` on ``host:port`` in a daemon thread; False when ``port`` is 0."""
    if not port:
        return False
    prometheus_client.start_http_server(port, addr=host)
    log.info("%s metrics on http://%s:%d/metrics", what, host, port)
    return True
