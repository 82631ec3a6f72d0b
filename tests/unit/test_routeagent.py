"""The route agent's decisions (pure): which node is the gateway, which CIDRs are
remote, which routes a node needs. Address conventions: nodes 172.18.0.10+n,
global CIDRs 242.<i>.0.0/16, pods 10.244.0.0/16, services 10.96.0.0/16."""

from __future__ import annotations

from typing import Any

from datapath.routes import Route
from gateway.routeagent import active_gateway, desired_routes
from kube import names
from kube.objects import remote_cidrs


def node(name: str, ip: str, *, gateway: bool = False, created: str = "2026-01-01T00:00:00Z"
         ) -> dict[str, Any]:
    labels = {names.GATEWAY_LABEL: names.GATEWAY_LABEL_VALUE} if gateway else {}
    return {"metadata": {"name": name, "labels": labels, "creationTimestamp": created},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}


def cluster(cid: str, global_cidr: str | None) -> dict[str, Any]:
    return {"metadata": {"name": cid},
            "spec": {"cluster_id": cid, "cluster_cidr": ["10.244.0.0/16"],
                     "service_cidr": ["10.96.0.0/16"],
                     "global_cidr": [global_cidr] if global_cidr else []}}


NODES = [node("n0", "172.18.0.10", gateway=True), node("n1", "172.18.0.11")]
CLUSTERS = [cluster("c1", "242.0.0.0/16"), cluster("c2", "242.1.0.0/16"),
            cluster("c3", "242.2.0.0/16")]


def test_non_gateway_nodes_route_every_remote_global_cidr_via_the_gateway() -> None:
    assert desired_routes("n1", "c1", NODES, CLUSTERS) == {
        Route("242.1.0.0/16", "172.18.0.10"), Route("242.2.0.0/16", "172.18.0.10")}
    assert desired_routes("n0", "c1", NODES, CLUSTERS) == set()  # the gateway itself


def test_without_globalnet_the_remote_pod_and_service_cidrs_are_routed() -> None:
    assert remote_cidrs("c1", [cluster("c1", None), cluster("c2", None)]) == {
        "10.244.0.0/16", "10.96.0.0/16"}


def test_no_gateway_no_routes_and_the_active_or_oldest_gateway_wins() -> None:
    assert desired_routes("n1", "c1", [node("n1", "172.18.0.11")], CLUSTERS) == set()
    two = [node("g-new", "172.18.0.12", gateway=True, created="2026-02-01T00:00:00Z"),
           node("g-old", "172.18.0.13", gateway=True, created="2026-01-01T00:00:00Z")]
    assert active_gateway(two)["metadata"]["name"] == "g-old"  # type: ignore[index]
    active = [{"metadata": {"name": "g-new"}, "status": {"haStatus": "active"}},
              {"metadata": {"name": "g-old"}, "status": {"haStatus": "passive"}}]
    assert active_gateway(two, active)["metadata"]["name"] == "g-new"  # type: ignore[index]
    # A gateway without an address cannot be routed to.
    assert active_gateway([{"metadata": {"name": "x", "labels": {
        names.GATEWAY_LABEL: names.GATEWAY_LABEL_VALUE}}}]) is None


def test_the_gateway_lease_holder_is_the_active_gateway_first() -> None:
    """The engines' election decides (seen the moment it changes hands), before any
    Gateway status catches up; a holder that is no gateway node does not count."""
    two = [node("g0", "172.18.0.10", gateway=True, created="2026-01-01T00:00:00Z"),
           node("g1", "172.18.0.11", gateway=True, created="2026-02-01T00:00:00Z"),
           node("n2", "172.18.0.12")]
    stale = [{"metadata": {"name": "g0"}, "status": {"haStatus": "active"}}]
    assert desired_routes("n2", "c1", two, CLUSTERS, stale, lease_holder="g1") == {
        Route("242.1.0.0/16", "172.18.0.11"), Route("242.2.0.0/16", "172.18.0.11")}
    # The passive gateway node routes to the active one like any node; the active none.
    assert desired_routes("g0", "c1", two, CLUSTERS, stale, lease_holder="g1") == {
        Route("242.1.0.0/16", "172.18.0.11"), Route("242.2.0.0/16", "172.18.0.11")}
    assert desired_routes("g1", "c1", two, CLUSTERS, stale, lease_holder="g1") == set()
    assert active_gateway(two, stale, lease_holder="n2")["metadata"]["name"] == "g0"  # type: ignore[index]
