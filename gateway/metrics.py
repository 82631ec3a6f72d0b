"""Prometheus metrics of the gateway engine, the Broker syncer and the route agent.

The engine's follow upstream Submariner's names and labels, so its dashboards and
alerts work (``GatewayCollector``, built at scrape time from the status the engine
last computed, so a series can never outlive its connection):

* ``submariner_gateways``: gateway engines in this process (1; summed over a
  cluster's engines: its gateway nodes);
* ``submariner_gateway_creation_timestamp{local_cluster,local_hostname}``;
* ``submariner_connections{CONNECTION_LABELS,status}``: 1 per connection to another
  cluster's gateway, ``status`` connecting, connected or error; only the active
  gateway has connections;
* ``submariner_connections_short{cable_driver,status}``: connections per status;
* ``submariner_connection_latency_seconds{CONNECTION_LABELS}``: the last health
  ping's RTT;
* ``submariner_connection_established_timestamp{CONNECTION_LABELS}``: when the
  connection last became connected;
* ``submariner_gateway_rx_bytes`` / ``_tx_bytes{CONNECTION_LABELS}``: the cable's
  byte counters, for drivers that keep them (WireGuard, IPsec);
* ``submariner_gateway_sync_iterations_total``: engine rounds (upstream's name
  has no ``_total``; prometheus-client's counters always do);
* ``globalnet_gateway_active{local_cluster,local_hostname}``: 1 on the active
  gateway, 0 on a standby.

Labels are per remote cluster (bounded by the clusterset) and never per object.
The Broker syncer counts ``globalnet_broker_syncs_total{resource,operation}``, the
route agent ``globalnet_route_agent_routes``,
``globalnet_route_agent_converges_total{result}`` and
``globalnet_route_agent_route_changes_total{op}``. Reconcile errors are counted by
``kube.controller`` for every controller.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from kube.metrics import serve as serve  # every agent's --metrics-port (re-exported)

JSON = dict[str, Any]

CONNECTION_LABELS = ("cable_driver", "local_cluster", "local_hostname", "local_endpoint_ip",
                     "remote_cluster", "remote_hostname", "remote_endpoint_ip")
CONNECTED = "connected"

BROKER_SYNCS = Counter(
    "globalnet_broker_syncs", "Copies of Broker objects the Broker syncer wrote",
    ["resource", "operation"])
# The route agent's and the engine's own are registered by their processes
# (`register_route_agent`, `register_engine`): the engine must not export a route
# agent's 0 routes, nor a route agent `submariner_gateways 0`.
ROUTES = Gauge(
    "globalnet_route_agent_routes", "Routes this node holds toward the active gateway",
    registry=None)
ROUTE_CONVERGES = Counter(
    "globalnet_route_agent_converges", "Route table convergences, by result", ["result"],
    registry=None)
ROUTE_CHANGES = Counter(
    "globalnet_route_agent_route_changes", "Routes added or removed", ["op"], registry=None)
VIPS = Gauge(
    "globalnet_route_agent_clusterset_ip_vips", "ClusterSetIP VIPs this node translates",
    registry=None)
VIP_TABLE_APPLIES = Counter(
    "globalnet_route_agent_vip_table_applies",
    "VIP table plans applied (ok), refused as unreadable, or failed (error)", ["result"],
    registry=None)


def rtt_seconds(connection: JSON) -> float | None:
    """The connection's last RTT (``latencyRTT.last``, "0.123ms") in seconds."""
    last = str((connection.get("latencyRTT") or {}).get("last") or "")
    try:
        return float(last.removesuffix("ms")) / 1000 if last.endswith("ms") else None
    except ValueError:
        return None


@dataclass
class _Engine:
    """What one engine last reported."""

    cluster: str
    hostname: str
    driver: str
    endpoint_ip: str
    created: float
    status: JSON = field(default_factory=dict)
    rounds: int = 0
    # Connection labels -> when it last became connected.
    established: dict[tuple[str, ...], float] = field(default_factory=dict)

    def labels(self, connection: JSON) -> tuple[str, ...]:
        remote = connection.get("endpoint") or {}
        return (self.driver, self.cluster, self.hostname, self.endpoint_ip,
                str(remote.get("cluster_id", "")), str(remote.get("hostname", "")),
                str(remote.get("public_ip") or remote.get("private_ip") or ""))


class GatewayCollector(Collector):
    """The engines' status as upstream's metrics; ``observe`` is called every round."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engines: dict[tuple[str, str], _Engine] = {}

    def observe(self, *, cluster: str, hostname: str, driver: str, endpoint_ip: str,
                status: JSON, now: float | None = None) -> None:
        """Record the status the engine computed this round (written or not)."""
        now = time.time() if now is None else now
        with self._lock:
            engine = self._engines.get((cluster, hostname))
            if engine is None:
                engine = _Engine(cluster, hostname, driver, endpoint_ip, created=now)
                self._engines[(cluster, hostname)] = engine
            engine.driver, engine.endpoint_ip = driver, endpoint_ip
            engine.status = status
            engine.rounds += 1
            connected = {engine.labels(c) for c in status.get("connections") or []
                         if c.get("status") == CONNECTED}
            engine.established = {k: engine.established.get(k, now) for k in connected}

    def forget(self, *, cluster: str, hostname: str) -> None:
        """An engine that stopped (tests run several in one process)."""
        with self._lock:
            self._engines.pop((cluster, hostname), None)

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        with self._lock:
            engines = list(self._engines.values())
            snapshot = [(e, dict(e.established)) for e in engines]
        local = ["local_cluster", "local_hostname"]
        labels = list(CONNECTION_LABELS)
        yield GaugeMetricFamily("submariner_gateways", "Number of gateways",
                                value=len(engines))
        created = GaugeMetricFamily("submariner_gateway_creation_timestamp",
                                    "Timestamp of gateway creation time", labels=local)
        active = GaugeMetricFamily("globalnet_gateway_active",
                                   "1 on the active gateway, 0 on a standby", labels=local)
        rounds = CounterMetricFamily("submariner_gateway_sync_iterations",
                                     "Gateway synchronization iterations")
        conns = GaugeMetricFamily(
            "submariner_connections", "Number of connections and corresponding status "
            "(by cable driver and cable)", labels=[*labels, "status"])
        latency = GaugeMetricFamily(
            "submariner_connection_latency_seconds",
            "Connection latency in seconds (last RTT, by cable driver and cable)", labels=labels)
        since = GaugeMetricFamily(
            "submariner_connection_established_timestamp",
            "Timestamp of last successful connection established (by cable driver and cable)",
            labels=labels)
        rx = GaugeMetricFamily("submariner_gateway_rx_bytes",
                               "Count of bytes received (by cable driver and cable)",
                               labels=labels)
        tx = GaugeMetricFamily("submariner_gateway_tx_bytes",
                               "Count of bytes transmitted (by cable driver and cable)",
                               labels=labels)
        short: dict[tuple[str, str], int] = {}
        total_rounds = 0
        for engine, established in snapshot:
            status = engine.status
            created.add_metric([engine.cluster, engine.hostname], engine.created)
            active.add_metric([engine.cluster, engine.hostname],
                              1.0 if status.get("haStatus") == "active" else 0.0)
            total_rounds += engine.rounds
            for c in status.get("connections") or []:
                key = engine.labels(c)
                state = str(c.get("status") or "connecting")
                conns.add_metric([*key, state], 1)
                short[(engine.driver, state)] = short.get((engine.driver, state), 0) + 1
                rtt = rtt_seconds(c)
                if rtt is not None:
                    latency.add_metric(list(key), rtt)
                if key in established:
                    since.add_metric(list(key), established[key])
                cable = c.get("cable") or {}
                if "rxBytes" in cable:
                    rx.add_metric(list(key), float(cable["rxBytes"]))
                if "txBytes" in cable:
                    tx.add_metric(list(key), float(cable["txBytes"]))
        rounds.add_metric([], total_rounds)
        by_status = GaugeMetricFamily(
            "submariner_connections_short",
            "Summary of connections and corresponding status without cable information",
            labels=["cable_driver", "status"])
        for (driver, state), count in sorted(short.items()):
            by_status.add_metric([driver, state], count)
        yield from (created, active, rounds, conns, by_status, latency, since, rx, tx)


GATEWAY = GatewayCollector()


def register_engine(registry: CollectorRegistry = REGISTRY) -> None:
    """Export the engine's metrics (once per process, from `gateway.engine`'s main)."""
    registry.register(GATEWAY)


def register_route_agent(registry: CollectorRegistry = REGISTRY) -> None:
    """Export the route agent's metrics (once per process, from its main)."""
    for metric in (ROUTES, ROUTE_CONVERGES, ROUTE_CHANGES, VIPS, VIP_TABLE_APPLIES):
        registry.register(metric)
