"""`diagnose connections`: every cable of the active gateway up, with its RTT, and
every remote Endpoint reached by a cable of the same driver.

Reads the active gateway's Gateway status (`ops.gateways.connections_view`: its
`connections`, each `connected` once the health pings answer) and the Endpoints the
Broker syncer copied into the cluster (the local one's `backend` is this cluster's
cable driver).
"""

from __future__ import annotations

from ops import gateways
from ops.diagnose.model import Check, failed, passed, warned
from ops.diagnose.target import Target

GROUP = "connections"


def _rtt(c: gateways.ConnectionInfo) -> str:
    if not (c.rtt.last or c.rtt.average):
        return "RTT unknown"
    return f"RTT last {c.rtt.last or '?'}, avg {c.rtt.average or '?'}, max {c.rtt.max or '?'}"


def run(t: Target) -> list[Check]:
    state = t.state
    local_id = state.local_cluster_id()
    view = gateways.connections_view(state.gateways(), state.gateway_lease())
    endpoints = gateways.endpoints_view(state.endpoints(), local_cluster_id=local_id)
    remote = [e for e in endpoints.endpoints if not e.local]
    local = [e for e in endpoints.endpoints if e.local]
    out: list[Check] = []
    if not view.active_gateway:
        return [failed(GROUP, "active gateway", "no active gateway: no connection to check",
                       "see `gnctl diagnose deployment`", cluster=t.name)]
    by_cluster = {c.cluster_id: c for c in view.connections}
    for c in view.connections:
        name = f"connection to {c.cluster_id} ({c.hostname})"
        if c.status == gateways.CONNECTED:
            out.append(passed(GROUP, name, f"connected via {c.driver} to {c.remote_ip}, "
                              f"{_rtt(c)}", cluster=t.name))
        else:
            out.append(failed(GROUP, name, f"{c.status or 'no status'}: "
                              f"{c.message or 'no message'}",
                              f"check that UDP to {c.remote_ip} reaches the remote gateway "
                              "(`gnctl diagnose firewall`) and its engine's logs",
                              cluster=t.name))
    for e in remote:
        if e.cluster_id not in by_cluster:
            out.append(failed(GROUP, f"connection to {e.cluster_id} ({e.hostname})",
                              f"the active gateway {view.active_gateway} reports no "
                              "connection to this Endpoint", "check the gateway engine's logs",
                              cluster=t.name))
    if not remote:
        out.append(warned(GROUP, "remote clusters", "no remote Endpoint: nothing to connect to",
                          "has another cluster joined, and does the Broker syncer run?",
                          cluster=t.name))
    out += driver_checks(t.name, local, remote)
    return out


def driver_checks(cluster: str, local: list[gateways.EndpointInfo],
                  remote: list[gateways.EndpointInfo]) -> list[Check]:
    """The cable driver is the remote Endpoints' (a VXLAN end cannot talk WireGuard)."""
    if not local:
        return [failed(GROUP, "cable driver", "this cluster has published no Endpoint",
                       "is the active gateway engine running?", cluster=cluster)]
    mine = local[0].backend
    other = [f"{e.cluster_id} {e.backend}" for e in remote if e.backend != mine]
    if other:
        return [failed(GROUP, "cable driver", f"local {mine}, remote {', '.join(other)}",
                       "join every cluster with the same --cable-driver", cluster=cluster)]
    return [passed(GROUP, "cable driver", f"{mine} here and on all {len(remote)} remote "
                   "Endpoints", cluster=cluster)]
