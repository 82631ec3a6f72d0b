"""The gateway engine against a real API server, its cable in a namespace.

The session's API server plays the cluster and the Broker (temporary
namespaces; east joined on the Broker side as `gnctl join` does). Checked: the
engine leads, withdraws the Endpoint an earlier gateway of its cluster left in
its member namespace on the Broker, publishes its own there, builds the cable
to the other cluster's Endpoint and reports the connection in its Gateway
status - `error` while nobody answers at the far end; another member's Broker
syncer copies the published Endpoint in. Addresses: underlay 198.18.7.1 (ours)
and 198.18.7.2 (remote), global CIDRs 242.80/81.0.0/16.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from datapath.vxlan import VxlanCable
from gateway.engine import EngineConfig, GatewayEngine
from gateway.syncer import ClusterSyncer
from kube import crud, resources
from kube.testing import await_condition, broker_member, temporary_namespace
from lab import netns

pytestmark = pytest.mark.kube


def endpoint(name: str, cluster: str, ip: str, subnet: str) -> dict[str, Any]:
    return {"apiVersion": "submariner.io/v1", "kind": "Endpoint", "metadata": {"name": name},
            "spec": {"cluster_id": cluster, "cable_name": f"vxlan-{name}", "hostname": name,
                     "private_ip": ip, "subnets": [subnet], "backend": "vxlan"}}


def test_the_engine_publishes_cables_and_reports(
        api_client: Any, make_netns: Callable[[str], str]) -> None:
    gw = make_netns("eng")
    netns.ensure_veth(netns=gw, ifname="ul0", peer_netns=make_netns("far"), peer_ifname="ul0",
                      address="198.18.7.1/24", peer_address="198.18.7.2/24")
    endpoints = crud.ResourceClient(api_client, resources.SUBMARINER_ENDPOINTS)
    with temporary_namespace(api_client, "broker") as broker_ns, \
            temporary_namespace(api_client, "member") as member_ns, \
            temporary_namespace(api_client, "westside") as west_side, \
            broker_member(api_client, broker_ns, "east", global_cidr="242.80.0.0/16") as east:
        endpoints.create(endpoint("east-old-gw", "east", "198.18.7.9", "242.80.0.0/16"),
                         namespace=east)
        # What the syncer would have copied in: the other cluster's Endpoint.
        endpoints.create(endpoint("west-gw", "west", "198.18.7.2", "242.81.0.0/16"),
                         namespace=member_ns)
        cfg = EngineConfig(cluster_id="east", node_name="east-gw", private_ip="198.18.7.1",
                           subnets=("242.80.0.0/16",), namespace=member_ns,
                           broker_namespace=broker_ns, lease_duration=2.0,
                           renew_deadline=1.5, retry_period=0.25, health_period=0.2)
        engine = GatewayEngine(local_api=api_client, broker_api=api_client, cfg=cfg,
                               cable=VxlanCable("198.18.7.1", netns=gw)).start()
        try:
            def published() -> set[str] | None:
                names = {e["metadata"]["name"]
                         for e in endpoints.list(namespace=east).items}
                return names if names == {"east-east-gw"} else None

            await_condition(published, timeout=20, message="ours published, the stale gone")
            assert endpoints.list(namespace=broker_ns).items == []
            # Another member's syncer (west's cluster namespace here) copies it in.
            syncer = ClusterSyncer(local_api=api_client, broker_api=api_client,
                                   broker_namespace=broker_ns, cluster_namespace=west_side)
            syncer.start()
            try:
                await_condition(
                    lambda: [e["spec"]["private_ip"] for e in endpoints.list(
                        namespace=west_side).items] == ["198.18.7.1"],
                    timeout=20, message="east's Endpoint copied into west")
            finally:
                syncer.stop()
            gateways = crud.ResourceClient(api_client, resources.GATEWAYS)

            def reported() -> dict[str, Any] | None:
                obj = gateways.get_or_none("east-gw", namespace=member_ns)
                status = (obj or {}).get("status") or {}
                return status if status.get("connections") else None

            status = await_condition(reported, timeout=20, message="a Gateway status")
            assert status is not None and status["haStatus"] == "active"
            (conn,) = status["connections"]
            assert conn["endpoint"]["cluster_id"] == "west"
            assert conn["status"] == "error"  # no engine at the far end answers
            route = netns.run(gw, ["ip", "route", "show", "242.81.0.0/16"])
            assert "via 240.18.7.2 dev vx-globalnet" in route and "proto 150" in route
        finally:
            engine.stop()
