"""The Broker syncer against a real API server: the cluster's Cluster objects
follow the Broker's - joins, changes, leaves - and hand edits are undone; the
Endpoints come from each member's own namespace on the Broker.

The session's API server plays both sides, each in a temporary namespace.
Address conventions: global CIDRs 242.60.x.0/24, underlay 198.18.60.x.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gateway.syncer import ClusterSyncer
from kube import crud, resources
from kube.testing import await_condition, broker_member, temporary_namespace

pytestmark = pytest.mark.kube


def cluster(name: str, global_cidr: str) -> dict[str, Any]:
    return {"apiVersion": "submariner.io/v1", "kind": "Cluster", "metadata": {"name": name},
            "spec": {"cluster_id": name, "cluster_cidr": ["10.244.0.0/16"],
                     "service_cidr": ["10.96.0.0/16"], "global_cidr": [global_cidr]}}


@pytest.fixture
def sides(api_client: Any) -> Iterator[tuple[str, str]]:
    with temporary_namespace(api_client, "broker") as broker_ns, \
            temporary_namespace(api_client, "member") as member_ns:
        yield broker_ns, member_ns


def test_cluster_objects_follow_the_broker(api_client: Any, sides: tuple[str, str]) -> None:
    broker_ns, member_ns = sides
    clusters = crud.ResourceClient(api_client, resources.CLUSTERS)
    clusters.create(cluster("east", "242.60.0.0/24"), namespace=broker_ns)
    # A leftover the Broker does not know: removed at start.
    clusters.create(cluster("ghost", "242.60.9.0/24"), namespace=member_ns)

    def mirrored() -> dict[str, list[str]]:
        return {c["metadata"]["name"]: c["spec"]["global_cidr"]
                for c in clusters.list(namespace=member_ns).items}

    def await_mirror(expected: dict[str, list[str]], what: str) -> None:
        await_condition(lambda: mirrored() == expected, timeout=15, interval=0.05,
                        message=what)

    syncer = ClusterSyncer(local_api=api_client, broker_api=api_client,
                           broker_namespace=broker_ns, cluster_namespace=member_ns).start()
    try:
        await_mirror({"east": ["242.60.0.0/24"]}, "east copied, ghost removed")
        clusters.create(cluster("west", "242.60.1.0/24"), namespace=broker_ns)
        await_mirror({"east": ["242.60.0.0/24"], "west": ["242.60.1.0/24"]}, "a later join")
        west = clusters.get("west", namespace=broker_ns)
        west["spec"]["global_cidr"] = ["242.60.2.0/24"]
        clusters.update(west, namespace=broker_ns)
        await_mirror({"east": ["242.60.0.0/24"], "west": ["242.60.2.0/24"]}, "a new CIDR")
        # Hand edits of the copies are undone.
        copy = clusters.get("east", namespace=member_ns)
        copy["spec"]["global_cidr"] = ["242.60.7.0/24"]
        clusters.update(copy, namespace=member_ns)
        clusters.delete("west", namespace=member_ns)
        await_mirror({"east": ["242.60.0.0/24"], "west": ["242.60.2.0/24"]}, "edits undone")
        clusters.delete("east", namespace=broker_ns)
        await_mirror({"west": ["242.60.2.0/24"]}, "a leave")
    finally:
        syncer.stop()


def endpoint(name: str, cluster: str, ip: str) -> dict[str, Any]:
    return {"apiVersion": "submariner.io/v1", "kind": "Endpoint", "metadata": {"name": name},
            "spec": {"cluster_id": cluster, "cable_name": f"vxlan-{name}", "hostname": name,
                     "private_ip": ip, "subnets": ["242.60.0.0/24"], "backend": "vxlan"}}


def test_endpoints_come_from_each_members_namespace_until_it_leaves(
        api_client: Any, sides: tuple[str, str]) -> None:
    broker_ns, member_ns = sides
    endpoints = crud.ResourceClient(api_client, resources.SUBMARINER_ENDPOINTS)
    clusters = crud.ResourceClient(api_client, resources.CLUSTERS)

    def mirrored() -> dict[str, str]:
        return {e["metadata"]["name"]: e["spec"]["private_ip"]
                for e in endpoints.list(namespace=member_ns).items}

    def await_mirror(expected: dict[str, str], what: str) -> None:
        await_condition(lambda: mirrored() == expected, timeout=15, interval=0.05,
                        message=lambda: f"{what}: have {mirrored()}")

    with broker_member(api_client, broker_ns, "east", global_cidr="242.60.0.0/24") as east, \
            broker_member(api_client, broker_ns, "west", global_cidr="242.60.1.0/24") as west:
        endpoints.create(endpoint("east-gw", "east", "198.18.60.1"), namespace=east)
        endpoints.create(endpoint("west-gw", "west", "198.18.60.2"), namespace=west)
        # Not read: west claiming to be east, and the shared namespace (no member's).
        endpoints.create(endpoint("east-gw2", "east", "198.18.60.9"), namespace=west)
        endpoints.create(endpoint("old-gw", "east", "198.18.60.8"), namespace=broker_ns)
        syncer = ClusterSyncer(local_api=api_client, broker_api=api_client,
                               broker_namespace=broker_ns, cluster_namespace=member_ns).start()
        try:
            await_mirror({"east-gw": "198.18.60.1", "west-gw": "198.18.60.2"},
                         "every member's own Endpoint")
            moved = endpoints.get("east-gw", namespace=east)
            moved["spec"]["private_ip"] = "198.18.60.3"
            endpoints.update(moved, namespace=east)
            await_mirror({"east-gw": "198.18.60.3", "west-gw": "198.18.60.2"}, "a gateway move")
            # west leaves (its Cluster object goes) while its Endpoint is still there.
            clusters.delete("west", namespace=broker_ns)
            await_mirror({"east-gw": "198.18.60.3"}, "west's Endpoint dropped with west")
            assert endpoints.get_or_none("west-gw", namespace=west) is not None
            assert {c["metadata"]["name"] for c in clusters.list(namespace=member_ns).items} \
                == {"east"}
        finally:
            syncer.stop()
