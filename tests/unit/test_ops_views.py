"""The pure views of `ops` (what `gnctl show` prints), from hand-made objects.

tests/kube/test_gnctl_show.py reads them from a real API server; here are the cases
that are awkward to stage there: gateways that disagree with the Lease, no Lease at
all, addresses outside the pool, image references of every form.

Address convention: global CIDR 242.254.0.0/24, one address outside it 242.9.9.9;
gateway nodes gw0 and gw1.
"""

from __future__ import annotations

from typing import Any

import pytest

from cli import show_cmd
from ops import gateways, inventory, networks, pools, versions

JSON = dict[str, Any]


def gateway(name: str, ha_status: str, *statuses: str) -> JSON:
    return {"metadata": {"name": name}, "status": {
        "haStatus": ha_status,
        "connections": [{"status": s, "endpoint": {"cluster_id": f"c{i}"}}
                        for i, s in enumerate(statuses)]}}


def lease(holder: str) -> JSON:
    return {"metadata": {"name": "globalnet-gateway"},
            "spec": {"holderIdentity": holder, "leaseTransitions": 2,
                     "renewTime": "2026-12-02T05:00:00.000000Z"}}


def node(name: str, *, ready: bool = True) -> JSON:
    return {"metadata": {"name": name}, "status": {"conditions": [
        {"type": "Ready", "status": "True" if ready else "False"}]}}


@pytest.mark.parametrize(("ha_status", "holds", "expected"), [
    pytest.param("active", True, "active, all 2 connections established", id="consistent"),
    pytest.param("active", False, "reports active but does not hold", id="stale report"),
    pytest.param("passive", True, "holds the gateway Lease but reports passive",
                 id="taking over"),
    pytest.param("passive", False, "passive: standing by", id="standby"),
    pytest.param("", False, "no Gateway status", id="no engine"),
])
def test_a_gateway_summary_says_whether_report_and_lease_agree(
        ha_status: str, holds: bool, expected: str) -> None:
    summary = gateways.gateway_summary(ha_status=ha_status, holds_lease=holds,
                                       node_ready=True, connections=2, connected=2)
    assert summary.startswith(expected)


def test_a_gateway_summary_counts_connections_and_notes_a_node_not_ready() -> None:
    summary = gateways.gateway_summary(ha_status="active", holds_lease=True, node_ready=False,
                                       connections=3, connected=1)
    assert summary == "active, 1 of 3 connections established; its node is not Ready"


def test_gateways_view_joins_nodes_reports_and_the_lease() -> None:
    view = gateways.gateways_view(
        [node("gw0"), node("gw1", ready=False)],
        [gateway("gw0", "active", "connected", "error"), gateway("old", "passive")],
        lease("gw0"))
    assert (view.lease_holder, view.lease_transitions) == ("gw0", 2)
    by_node = {g.node: g for g in view.gateways}
    assert sorted(by_node) == ["gw0", "gw1", "old"]
    assert (by_node["gw0"].holds_lease, by_node["gw0"].connected,
            by_node["gw0"].connections) == (True, 1, 2)
    assert (by_node["gw1"].ha_status, by_node["gw1"].node_ready) == ("", False)
    assert (by_node["old"].labelled, by_node["old"].node_ready) == (False, None)


def test_without_a_lease_holder_the_engine_reporting_active_is_shown() -> None:
    reports = [gateway("gw1", "active", "connected"), gateway("gw0", "passive")]
    view = gateways.connections_view(reports, lease(""))
    assert view.active_gateway == "gw1"
    assert [(c.gateway, c.cluster_id, c.status) for c in view.connections] == [
        ("gw1", "c0", "connected")]
    assert gateways.connections_view([gateway("gw0", "passive")], None).active_gateway == ""


def test_an_endpoint_without_backend_is_vxlan() -> None:
    view = gateways.endpoints_view(
        [{"spec": {"cluster_id": "c2", "hostname": "h"}},
         {"spec": {"cluster_id": "c1", "hostname": "g", "backend": "wireguard"}}],
        local_cluster_id="c1")
    assert [(e.cluster_id, e.local, e.backend) for e in view.endpoints] == [
        ("c1", True, "wireguard"), ("c2", False, "vxlan")]


def test_networks_list_this_cluster_first() -> None:
    view = networks.networks_view(
        [{"metadata": {"name": "a"}, "spec": {"cluster_id": "a", "cluster_cidr": ["10.0.0.0/16"]}},
         {"metadata": {"name": "b"}, "spec": {"global_cidr": ["242.254.0.0/24"]}}],
        local_cluster_id="b", datapath="ebpf")
    assert [(c.cluster_id, c.local, c.globalnet) for c in view.clusters] == [
        ("b", True, True), ("a", False, False)]


def test_pool_usage_counts_distinct_addresses_and_names_strays() -> None:
    ok = [{"type": "Allocated", "status": "True", "reason": "Success"}]
    view = pools.globalnet_view(
        cluster_id="c1", global_cidrs=("242.254.0.0/24",),
        cluster_egress=[{"metadata": {"name": "cluster-egress.submariner.io"}, "spec": {},
                         "status": {"allocatedIPs": ["242.254.0.1", "242.254.0.2"],
                                    "conditions": ok}}],
        egress=[{"metadata": {"name": "none", "namespace": "n"}, "spec": {"numberOfIPs": 0}}],
        ingress=[{"metadata": {"name": "stray", "namespace": "n"}, "spec": {},
                  "status": {"allocatedIP": "242.9.9.9", "conditions": ok}},
                 {"metadata": {"name": "twin", "namespace": "n"}, "spec": {},
                  "status": {"allocatedIP": "242.254.0.2", "conditions": ok}}],
        gateway_nodes=[{"metadata": {"name": "gw0", "annotations": {
            "submariner.io/globalIp": "242.254.0.254"}}}])
    [pool] = view.pools
    assert (pool.size, pool.allocated, pool.available, pool.egress, pool.ingress,
            pool.gateway) == (254, 3, 251, 2, 1, 1)
    assert view.outside == ("242.9.9.9",)
    assert view.duplicates == ("242.254.0.2",)
    assert view.unallocated == ()  # numberOfIPs 0 asks for nothing
    assert (view.egress_objects, view.ingress_objects) == (2, 2)


def test_without_a_global_cidr_globalnet_is_off() -> None:
    view = pools.globalnet_view(cluster_id=None, global_cidrs=(), cluster_egress=[], egress=[],
                                ingress=[], gateway_nodes=[])
    assert (view.enabled, view.pools) == (False, ())


@pytest.mark.parametrize(("image", "expected"), [
    ("globalnet/globalnet:lab", ("globalnet/globalnet", "lab")),
    ("registry.example:5000/gn/globalnet:v1", ("registry.example:5000/gn/globalnet", "v1")),
    ("registry.example:5000/gn/globalnet", ("registry.example:5000/gn/globalnet", "latest")),
    ("gn@sha256:abc", ("gn", "sha256:abc")),
])
def test_image_references_split_into_repository_and_version(
        image: str, expected: tuple[str, str]) -> None:
    assert versions.split_image(image) == expected


def test_gnctl_shows_the_sections_ops_collects_in_their_order() -> None:
    assert list(show_cmd.VIEWS) == list(inventory.SECTIONS) == list(show_cmd.RENDERERS)
