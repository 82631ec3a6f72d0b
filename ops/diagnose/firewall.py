"""`diagnose firewall`: the active gateway's datapath holds what the API allocated,
and the tunnels between gateways are up.

Every allocated GlobalIngressIP must have an ingress mapping in the active gateway's
datapath - the nftables table `inet globalnet` (datapath/nftables/names.py) or the
eBPF datapath's pinned maps - else traffic to it is dropped; FAIL lists the missing
ones. That needs the node (`target.NodeAccess`); without it, WARN "not checked".
The tunnels: each remote Endpoint's cable driver and UDP port(s), and whether the
active gateway's health check (its Gateway status) says connected: a firewall
between the gateways shows there first.
"""

from __future__ import annotations

from typing import Any

from datapath.nftables import names as nft_names
from globalnet.controllers import reasons as gr
from kube import conditions
from kube import objects as o
from ops import gateways
from ops.cluster import workload_flag
from ops.diagnose.model import Check, failed, passed, warned
from ops.diagnose.target import NotChecked, Target

JSON = dict[str, Any]
GROUP = "firewall"
# The UDP ports each cable driver uses (datapath/vxlan.py, wireguard.py, ipsec.py).
VXLAN_PORT, WIREGUARD_PORT, WIREGUARD_PORT_KEY = 4800, 51820, "udp-port"
IPSEC_PORTS = "500/4500"


def allocated_ingress_ips(ingress: list[JSON]) -> list[str]:
    """The global IPs the API says are in force: GlobalIngressIPs Allocated=True."""
    return sorted({ip for g in ingress
                   if conditions.is_condition_true(o.status(g).get("conditions"), gr.ALLOCATED)
                   and (ip := o.allocated_ip(g))})


def datapath_check(t: Target) -> Check:
    state = t.state
    datapath = workload_flag(state.workloads(), "datapath") or "nftables"
    node = gateways.active_gateway(state.gateways(), state.gateway_lease())
    what = ("nftables table " + nft_names.TABLE_REF if datapath == "nftables"
            else "eBPF pinned maps")
    if not node:
        return failed(GROUP, what, "no active gateway to look at",
                      "see `gnctl diagnose deployment`", cluster=t.name)
    expected = allocated_ingress_ips(state.ingress_ips())
    try:
        report = t.access.datapath(node, datapath, expected)
    except NotChecked as exc:
        return warned(GROUP, what, f"not checked on {node}: {exc}",
                      f"look on the node: nft list table {nft_names.TABLE_REF}"
                      if datapath == "nftables" else "look on the node: gnctl show nat "
                      "--datapath ebpf", cluster=t.name)
    if not report.present:
        return failed(GROUP, what, f"missing on the active gateway {node} ({t.access.how}): "
                      "nothing is translated", "check the Globalnet agent's logs there; it "
                      "rebuilds the datapath on restart", cluster=t.name)
    if report.missing:
        shown = ", ".join(report.missing[:10]) + (
            f" and {report.missing_total - 10} more" if report.missing_total > 10 else "")
        return failed(GROUP, what, f"on {node}, {report.missing_total} of {len(expected)} "
                      f"allocated GlobalIngressIPs have no ingress mapping: {shown}",
                      "check the Globalnet agent's logs on the active gateway",
                      cluster=t.name)
    return passed(GROUP, what, f"on {node}: all {len(expected)} allocated GlobalIngressIPs "
                  f"mapped ({report.mappings} ingress mappings, {t.access.how})",
                  cluster=t.name)


def ports_of(spec: JSON) -> str:
    backend = str(spec.get("backend") or "vxlan")
    if backend == "wireguard":
        port = (spec.get("backend_config") or {}).get(WIREGUARD_PORT_KEY) or WIREGUARD_PORT
        return f"UDP {port}"
    if backend == "ipsec":
        return f"UDP {IPSEC_PORTS}"
    return f"UDP {VXLAN_PORT}"


def tunnel_checks(t: Target) -> list[Check]:
    state = t.state
    local_id = state.local_cluster_id()
    view = gateways.connections_view(state.gateways(), state.gateway_lease())
    status = {c.cluster_id: c for c in view.connections}
    out = []
    for ep in state.endpoints():
        spec = o.spec(ep)
        cluster_id = str(spec.get("cluster_id") or "")
        if not cluster_id or cluster_id == local_id:
            continue
        backend = str(spec.get("backend") or "vxlan")
        where = f"{backend} {ports_of(spec)} to {spec.get('private_ip') or '?'}"
        name = f"tunnel to {cluster_id} ({spec.get('hostname') or '?'})"
        conn = status.get(cluster_id)
        if conn is not None and conn.status == gateways.CONNECTED:
            out.append(passed(GROUP, name, f"{where}: health check connected", cluster=t.name))
        else:
            said = f"{conn.status}: {conn.message}" if conn else "no connection reported"
            out.append(failed(GROUP, name, f"{where}: health check {said}",
                              f"allow {ports_of(spec)} between the gateways' addresses",
                              cluster=t.name))
    return out


def run(t: Target) -> list[Check]:
    return [datapath_check(t), *tunnel_checks(t)]
