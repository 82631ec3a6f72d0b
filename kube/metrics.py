"""Metrics every agent shares, and the one way an agent serves them.

* ``globalnet_reconcile_errors_total{controller}``: reconciles that raised, counted
  once for every work-queue controller by ``kube.controller`` (Globalnet's, the
  Broker syncer, Lighthouse's), so no controller can forget to count.

``serve(port)`` starts prometheus-client's HTTP server thread on ``port`` (0: off)
for the process's default registry; every agent's ``--metrics-port`` goes through
it. The agents run with host networking on every node, so each has a port of its
own (``deploy.manifests.METRICS_PORTS``). A port another process holds does not
stop the agent (its datapath matters more than its metrics): it says so and binds
in the background once the port is free, as kube-proxy does for its metrics
server. Counters carry no ``_created`` series: they would double the series for a
timestamp nobody queries.
"""

from __future__ import annotations

import logging
import threading
import time

import prometheus_client
from prometheus_client import Counter

log = logging.getLogger(__name__)

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

RECONCILE_ERRORS = Counter(
    "globalnet_reconcile_errors", "Reconciles that raised, by controller", ["controller"])


RETRY_SECONDS = 5.0


def serve(port: int, *, host: str = "0.0.0.0", what: str = "agent",
          retry_seconds: float = RETRY_SECONDS) -> bool:
    """Serve ``/metrics`` on ``host:port`` in a daemon thread; False when ``port`` is 0.

    When the port is taken the server is started by a background thread that
    tries again every ``retry_seconds``; the caller goes on either way.
    """
    if not port:
        return False
    try:
        _bind(port, host, what)
    except OSError as err:
        log.warning("%s metrics: cannot listen on %s:%d (%s); trying again every %g s",
                    what, host, port, err.strerror or err, retry_seconds)
        threading.Thread(target=_bind_when_free, args=(port, host, what, retry_seconds),
                         name=f"metrics-{port}", daemon=True).start()
    return True


def _bind(port: int, host: str, what: str) -> None:
    prometheus_client.start_http_server(port, addr=host)
    log.info("%s metrics on http://%s:%d/metrics", what, host, port)


def _bind_when_free(port: int, host: str, what: str, retry_seconds: float) -> None:
    while True:
        time.sleep(retry_seconds)
        try:
            _bind(port, host, what)
            return
        except OSError:
            continue
