"""`show endpoints`, `show connections`, `show gateways`: the cable ends, the active
gateway's cables and the gateway nodes' HA state.

The gateway Lease (`names.GATEWAY_LEASE`) decides which gateway is active; each
engine also reports what it believes in its Gateway object (`haStatus`, and while
active its `connections` with status and RTT, gateway/engine.py). The two are shown
side by side because a disagreement is the finding: an engine that reports active
without holding the Lease has stopped writing (or lost its API server), one that
holds the Lease but reports passive is taking over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datapath import cable_drivers
from kube import conditions, names
from kube import objects as o
from kube.leaderelection import LeaderElectionRecord, holder_of

JSON = dict[str, Any]
ACTIVE, PASSIVE = "active", "passive"
CONNECTED = "connected"  # a connection's status once its health pings answer


@dataclass(frozen=True)
class EndpointInfo:
    """One cluster's published cable end (the Broker syncer's copy)."""

    cluster_id: str
    local: bool
    hostname: str
    cable_name: str
    backend: str  # the cable driver
    private_ip: str
    public_ip: str
    health_check_ip: str
    nat: bool
    subnets: tuple[str, ...]


@dataclass(frozen=True)
class EndpointsView:
    local_cluster_id: str | None
    endpoints: tuple[EndpointInfo, ...]  # the local cluster's first


@dataclass(frozen=True)
class Rtt:
    """Health-ping round-trip times as the engine wrote them ("1.2ms"); "" unknown."""

    last: str
    min: str
    average: str
    max: str
    std_dev: str


@dataclass(frozen=True)
class ConnectionInfo:
    gateway: str  # the local gateway node that reports it
    cluster_id: str  # the remote cluster
    hostname: str  # the remote gateway node
    remote_ip: str  # the address the cable uses
    driver: str
    implementation: str  # who carries the packets (kernel, wireguard-go, charon)
    nat: bool
    subnets: tuple[str, ...]  # what the cable routes to
    status: str  # connected / connecting / error
    message: str
    rtt: Rtt


@dataclass(frozen=True)
class ConnectionsView:
    active_gateway: str  # "" when no gateway is active
    connections: tuple[ConnectionInfo, ...]


@dataclass(frozen=True)
class GatewayInfo:
    node: str
    ha_status: str  # what its engine reports: active / passive / "" (no report)
    holds_lease: bool
    labelled: bool  # the node carries the gateway label
    node_ready: bool | None  # None: not a labelled Node (a Gateway object left behind)
    health_check_ip: str
    connections: int
    connected: int
    summary: str
    # Conntrack replication to the other gateway nodes (established connections
    # survive a failover): running / idle / error, and to whom; "" when not reported.
    conntrack_sync: str = ""


@dataclass(frozen=True)
class GatewaysView:
    lease_holder: str  # "" when nobody holds the gateway Lease
    lease_renewed: str  # the holder's last renew (RFC 3339), "" if none
    lease_transitions: int
    gateways: tuple[GatewayInfo, ...]


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


# --- endpoints --------------------------------------------------------------------------

def endpoint_info(spec: JSON, *, local_cluster_id: str | None) -> EndpointInfo:
    cluster_id = str(spec.get("cluster_id") or "")
    return EndpointInfo(
        cluster_id=cluster_id, local=cluster_id == local_cluster_id,
        hostname=str(spec.get("hostname") or ""), cable_name=str(spec.get("cable_name") or ""),
        backend=cable_drivers.backend_of(spec), private_ip=str(spec.get("private_ip") or ""),
        public_ip=str(spec.get("public_ip") or ""),
        health_check_ip=str(spec.get("healthCheckIP") or ""),
        nat=bool(spec.get("nat_enabled")), subnets=_strings(spec.get("subnets")))


def endpoints_view(endpoints: list[JSON], *, local_cluster_id: str | None) -> EndpointsView:
    found = [endpoint_info(o.spec(ep), local_cluster_id=local_cluster_id) for ep in endpoints]
    found.sort(key=lambda e: (not e.local, e.cluster_id, e.hostname))
    return EndpointsView(local_cluster_id, tuple(found))


# --- connections ------------------------------------------------------------------------

def active_gateway(gateways: list[JSON], lease: JSON | None) -> str:
    """The active gateway: the Lease holder; with none, an engine reporting active."""
    holder = holder_of(lease)
    if holder:
        return holder
    reporting = sorted(o.name(g) for g in gateways if o.status(g).get("haStatus") == ACTIVE)
    return reporting[0] if reporting else ""


def connection_info(gateway: str, conn: JSON) -> ConnectionInfo:
    spec = conn.get("endpoint") or {}
    cable = conn.get("cable") or {}
    rtt = conn.get("latencyRTT") or {}
    return ConnectionInfo(
        gateway=gateway, cluster_id=str(spec.get("cluster_id") or ""),
        hostname=str(spec.get("hostname") or ""),
        remote_ip=str(conn.get("usingIP") or spec.get("private_ip") or ""),
        driver=str(cable.get("driver") or cable_drivers.backend_of(spec)),
        implementation=str(cable.get("implementation") or ""),
        nat=bool(conn.get("usingNAT")), subnets=_strings(spec.get("subnets")),
        status=str(conn.get("status") or ""), message=str(conn.get("statusMessage") or ""),
        rtt=Rtt(*(str(rtt.get(k) or "") for k in ("last", "min", "average", "max", "stdDev"))))


def connections_view(gateways: list[JSON], lease: JSON | None) -> ConnectionsView:
    active = active_gateway(gateways, lease)
    report = next((g for g in gateways if o.name(g) == active), None)
    conns = [connection_info(active, c) for c in o.status(report or {}).get("connections") or []
             if isinstance(c, dict)]
    conns.sort(key=lambda c: (c.cluster_id, c.hostname))
    return ConnectionsView(active, tuple(conns))


# --- gateways ---------------------------------------------------------------------------

def _node_ready(node: JSON) -> bool:
    return conditions.is_condition_true(o.status(node).get("conditions"), "Ready")


def gateway_summary(*, ha_status: str, holds_lease: bool, node_ready: bool | None,
                    connections: int, connected: int) -> str:
    """One line saying what state the gateway is in and whether that is consistent."""
    if not ha_status:
        text = "no Gateway status: is its gateway engine running?"
        if holds_lease:
            text = "holds the gateway Lease but has written no Gateway status yet"
    elif ha_status == ACTIVE and not holds_lease:
        text = "reports active but does not hold the gateway Lease (a stale report?)"
    elif ha_status != ACTIVE and holds_lease:
        text = f"holds the gateway Lease but reports {ha_status} (taking over?)"
    elif ha_status != ACTIVE:
        text = "passive: standing by"
    elif connections == 0:
        text = "active, no connections (no other cluster's Endpoint yet)"
    elif connected == connections:
        text = f"active, all {connections} connections established"
    else:
        text = f"active, {connected} of {connections} connections established"
    if node_ready is False:
        text += "; its node is not Ready"
    return text


def conntrack_sync_text(sync: object) -> str:
    """"running (to 172.18.0.11)", "idle", "error: <why>"; "" when not reported."""
    if not isinstance(sync, dict):
        return ""
    state = str(sync.get("state") or "")
    if state == "error":
        return f"error: {sync.get('statusMessage') or '?'}"
    peers = _strings(sync.get("peers"))
    return f"{state} (to {', '.join(peers)})" if peers and state else state


def gateway_info(name: str, *, report: JSON | None, node: JSON | None,
                 holder: str) -> GatewayInfo:
    status = o.status(report or {})
    ha_status = str(status.get("haStatus") or "")
    conns = [c for c in status.get("connections") or [] if isinstance(c, dict)]
    connected = sum(1 for c in conns if c.get("status") == CONNECTED)
    node_ready = None if node is None else _node_ready(node)
    health_ip = "" if node is None else o.annotations_of(node).get(
        names.GATEWAY_GLOBAL_IP_ANNOTATION, "")
    return GatewayInfo(
        conntrack_sync=conntrack_sync_text(status.get("conntrackSync")),
        node=name, ha_status=ha_status, holds_lease=name == holder, labelled=node is not None,
        node_ready=node_ready, health_check_ip=str(health_ip), connections=len(conns),
        connected=connected,
        summary=gateway_summary(ha_status=ha_status, holds_lease=name == holder,
                                node_ready=node_ready, connections=len(conns),
                                connected=connected))


def gateways_view(nodes: list[JSON], gateways: list[JSON], lease: JSON | None) -> GatewaysView:
    """Every gateway-labelled node and every Gateway object (a node that lost its
    label may still report)."""
    holder = holder_of(lease)
    by_node = {o.name(n): n for n in nodes}
    reports = {o.name(g): g for g in gateways}
    found = [gateway_info(name, report=reports.get(name), node=by_node.get(name), holder=holder)
             for name in sorted(set(by_node) | set(reports) | ({holder} - {""}))]
    record = LeaderElectionRecord.from_lease(lease) if lease else None
    return GatewaysView(holder, str(record.renew_time or "") if record else "",
                        record.lease_transitions if record else 0, tuple(found))
