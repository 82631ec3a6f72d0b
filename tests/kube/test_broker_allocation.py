"""Global CIDR allocation on a real Broker API server, under concurrency."""

from __future__ import annotations

import concurrent.futures
import uuid
from typing import Any

import netaddr
import pytest

from globalnet.broker import BrokerGlobalnet
from globalnet.cidr_allocation import CidrAllocationError

pytestmark = pytest.mark.kube


@pytest.fixture
def broker(api_client: Any) -> BrokerGlobalnet:
    # A namespace per test: each starts from an empty record.
    b = BrokerGlobalnet(api_client, namespace=f"broker-{uuid.uuid4().hex[:8]}")
    b.ensure_info(cidr_range="242.0.0.0/8", cluster_size=65536)
    return b


def test_twenty_concurrent_joins_get_twenty_disjoint_cidrs(
    broker: BrokerGlobalnet, control_plane: Any
) -> None:
    from kube.client import new_api_client

    def join(i: int) -> str:
        # Each joiner has its own connection, as separate clusters would.
        api = new_api_client(control_plane.kubeconfig)
        try:
            return BrokerGlobalnet(api, namespace=broker.namespace).join(f"cluster-{i}")
        finally:
            api.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        cidrs = list(pool.map(join, range(20)))
    nets = [netaddr.IPNetwork(c) for c in cidrs]
    assert len(set(cidrs)) == 20
    assert all(n.size == 65536 and n in netaddr.IPNetwork("242.0.0.0/8") for n in nets)
    assert netaddr.cidr_merge(nets) == [
        netaddr.IPNetwork("242.0.0.0/12"),
        netaddr.IPNetwork("242.16.0.0/14"),
    ]
    info = broker.read()
    assert info is not None
    assert {c: v[0] for c, v in info.clusters.items()} == {
        f"cluster-{i}": cidrs[i] for i in range(20)
    }


def test_rejoin_keeps_and_leave_frees_the_cidr(broker: BrokerGlobalnet) -> None:
    first = broker.join("east")
    assert broker.join("east") == first
    second = broker.join("west")
    broker.leave("east")
    info = broker.read()
    assert info is not None and "east" not in info.clusters
    assert broker.join("north") == first
    assert broker.join("west") == second


def test_explicit_overlapping_or_out_of_range_cidrs_are_refused(broker: BrokerGlobalnet) -> None:
    broker.join("east", requested_cidr="242.7.0.0/16")
    with pytest.raises(CidrAllocationError, match=r"overlaps 242\.7\.0\.0/16 of cluster east"):
        broker.join("west", requested_cidr="242.7.128.0/17")
    with pytest.raises(CidrAllocationError, match="outside the range"):
        broker.join("west", requested_cidr="10.0.0.0/16")
    info = broker.read()
    assert info is not None and set(info.clusters) == {"east"}


def test_join_without_a_deployed_broker_says_what_to_do(api_client: Any) -> None:
    b = BrokerGlobalnet(api_client, namespace=f"nothing-{uuid.uuid4().hex[:8]}")
    with pytest.raises(CidrAllocationError, match="deploy-broker --globalnet"):
        b.join("east")
