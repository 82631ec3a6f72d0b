"""The Broker syncer against a real API server: the cluster's Cluster objects
follow the Broker's - joins, changes, leaves - and hand edits are undone.

The session's API server plays both sides, each in a temporary namespace.
Address conventions: global CIDRs 242.60.x.0/24.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from gateway.syncer import ClusterSyncer
from kube import crud, resources
from kube.testing import await_condition, temporary_namespace

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
