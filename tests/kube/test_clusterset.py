"""`gateway.clusterset` (what `gnctl deploy-broker`/`join`/`leave` do with global CIDRs
and Cluster objects) against a real API server.

The session's API server plays the Broker and both members, each in its own
namespace, so the test starts from an empty clusterset. The clusterset range is
242.50.0.0/16 with 256 global IPs (a /24) per cluster. The installer around it
(`deploy.install`, the CLI) is tested in tests/kube/test_install.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from gateway import clusterset
from gateway.clusterset import ClustersetError, JoinRequest
from globalnet.broker import BrokerClustersetIPs, BrokerGlobalnet
from kube import crud, names, resources

pytestmark = pytest.mark.kube

POOL = clusterset.ClustersetIPPool(cidr_range="244.50.0.0/16", cluster_size=1024)


class Set:
    def __init__(self, api: Any) -> None:
        tag = uuid.uuid4().hex[:6]
        self.api = api
        self.broker_ns = f"broker-{tag}"
        self.member_ns = {"east": f"east-{tag}", "west": f"west-{tag}", "north": f"north-{tag}"}

    def deploy(self, cidr_range: str = "242.50.0.0/16", *, globalnet: bool = True,
               pool: clusterset.ClustersetIPPool = POOL) -> clusterset.BrokerRecords:
        return clusterset.deploy_broker(self.api, globalnet=globalnet, cidr_range=cidr_range,
                                        cluster_size=256, clusterset_ips=pool,
                                        namespace=self.broker_ns)

    def join(self, cluster: str, **extra: Any) -> clusterset.Membership:
        request = JoinRequest(cluster_id=cluster, cluster_cidrs=("10.244.0.0/16",),
                              service_cidrs=("10.96.0.0/16",), **extra)
        return clusterset.join(self.api, self.api, request, broker_namespace=self.broker_ns,
                               cluster_namespace=self.member_ns[cluster])

    def leave(self, cluster: str) -> bool:
        return clusterset.leave(self.api, self.api, cluster, broker_namespace=self.broker_ns,
                                cluster_namespace=self.member_ns[cluster])

    def members(self, namespace: str) -> dict[str, list[str]]:
        items = crud.ResourceClient(self.api, resources.CLUSTERS).list(namespace=namespace).items
        return {c["metadata"]["name"]: c["spec"]["global_cidr"] for c in items}


@pytest.fixture
def cs(api_client: Any) -> Iterator[Set]:
    s = Set(api_client)
    yield s
    namespaces = crud.ResourceClient(api_client, resources.NAMESPACES)
    for ns in namespaces.list().items:
        if ns["metadata"]["name"].startswith((s.broker_ns, *s.member_ns.values())):
            namespaces.delete_if_exists(ns["metadata"]["name"])


def test_deploy_join_rejoin_and_leave(cs: Set) -> None:
    with pytest.raises(ClustersetError, match=r"no Broker here.*gnctl deploy-broker"):
        cs.join("east")
    with pytest.raises(ClustersetError):
        cs.deploy("242.50.0.0/33")
    assert crud.ResourceClient(cs.api, resources.NAMESPACES).get_or_none(cs.broker_ns) is None, \
        "a refused deploy-broker must create nothing"
    info = cs.deploy().globalnet
    assert info is not None and (info.cidr_range, info.cluster_size) == ("242.50.0.0/16", 256)

    assert cs.join("east").global_cidr == "242.50.0.0/24"
    assert cs.join("west").global_cidr == "242.50.1.0/24"
    assert cs.members(cs.broker_ns) == {"east": ["242.50.0.0/24"], "west": ["242.50.1.0/24"]}
    # West joined last and sees both; a rejoin of east keeps its CIDR and syncs.
    assert set(cs.members(cs.member_ns["west"])) == {"east", "west"}
    assert set(cs.members(cs.member_ns["east"])) == {"east"}
    assert cs.join("east").global_cidr == "242.50.0.0/24"
    assert set(cs.members(cs.member_ns["east"])) == {"east", "west"}

    # A taken CIDR is refused with the Broker's reason, and nothing changes.
    with pytest.raises(ClustersetError, match=r"242\.50\.1\.0/24"):
        cs.join("north", globalnet_cidr="242.50.1.0/24")
    assert set(cs.members(cs.broker_ns)) == {"east", "west"}

    assert cs.leave("west")
    record = BrokerGlobalnet(cs.api, namespace=cs.broker_ns).read()
    assert record is not None and set(record.clusters) == {"east"}
    assert set(cs.members(cs.broker_ns)) == {"east"}
    assert cs.members(cs.member_ns["west"]) == {}
    assert not cs.leave("west")
    # The released CIDR is handed out again.
    assert cs.join("west").global_cidr == "242.50.1.0/24"


def test_requests_are_checked_before_anything_is_written(cs: Set) -> None:
    for extra, message in (({"globalnet_cidr": "242.50.1.1/24"}, "host bits set"),
                           ({"globalnet_cluster_size": 0}, "must be positive")):
        with pytest.raises(ClustersetError, match=message):
            clusterset.validate_request(JoinRequest(
                cluster_id="east", cluster_cidrs=("10.244.0.0/16",),
                service_cidrs=("10.96.0.0/16",), **extra))
    with pytest.raises(ClustersetError, match="is not a DNS label"):
        clusterset.validate_request(JoinRequest(cluster_id="East", cluster_cidrs=("10.0.0.0/8",),
                                                service_cidrs=("10.96.0.0/16",)))


def test_a_broker_without_globalnet_joins_clusters_by_their_own_cidrs(cs: Set) -> None:
    cs.deploy(globalnet=False)
    with pytest.raises(ClustersetError, match="deployed without Globalnet"):
        cs.join("east", globalnet_cidr="242.50.0.0/24")
    assert cs.join("east").global_cidr is None
    assert cs.members(cs.broker_ns) == {"east": []}


def test_a_join_with_another_cable_driver_than_the_members_is_refused(cs: Set) -> None:
    """Gateways of different drivers can never connect: the second cluster learns it
    at join, in one line naming the members' driver, and nothing is written; a lone
    member may change its driver on a rejoin."""
    cs.deploy()
    cs.join("east", cable_driver="wireguard")
    cs.join("east", cable_driver="ipsec")  # alone: its own choice
    cs.join("east", cable_driver="wireguard")
    with pytest.raises(ClustersetError,
                       match=r"cable driver vxlan differs from the clusterset's "
                             r"\(east: wireguard\); join with --cable-driver wireguard"):
        cs.join("west", cable_driver="vxlan")
    with pytest.raises(ClustersetError, match="differs"):
        clusterset.preview_join(cs.api, JoinRequest(
            cluster_id="west", cluster_cidrs=("10.244.0.0/16",),
            service_cidrs=("10.96.0.0/16",), cable_driver="vxlan"),
            broker_namespace=cs.broker_ns)
    assert set(cs.members(cs.broker_ns)) == {"east"}
    assert cs.join("west", cable_driver="wireguard").global_cidr == "242.50.1.0/24"


def test_every_member_gets_a_clusterset_ip_slice_that_leave_releases(cs: Set) -> None:
    """The VIP pool is recorded beside the global range with keys of its own; join hands
    each member a slice (kept on a rejoin), leave gives it back."""
    records = cs.deploy(pool=clusterset.ClustersetIPPool(
        cidr_range="244.50.0.0/16", cluster_size=1000, enabled=True))
    assert (records.clusterset_ips.cidr_range, records.clusterset_ips.cluster_size,
            records.clusterset_ips.enabled) == ("244.50.0.0/16", 1000, True)
    assert cs.join("east").clusterset_ip_cidr == "244.50.0.0/22"
    west = cs.join("west")
    assert (west.clusterset_ip_cidr, west.clusterset_ip_enabled) == ("244.50.4.0/22", True)
    assert cs.join("east").clusterset_ip_cidr == "244.50.0.0/22"
    data = crud.ResourceClient(cs.api, resources.CONFIGMAPS).get(
        names.CLUSTERSET_IP_CONFIGMAP, namespace=cs.broker_ns)["data"]
    assert data[names.CLUSTERSET_IP_KEYS.cidr_range] == "244.50.0.0/16"
    assert data[names.CLUSTERSET_IP_KEYS.enabled] == "true"
    # A second deploy-broker keeps the record (a flag's other range is not taken).
    again = cs.deploy(pool=clusterset.ClustersetIPPool(cidr_range="244.60.0.0/16"))
    assert again.clusterset_ips.cidr_range == "244.50.0.0/16"
    assert again.clusterset_ips.enabled, "a second deploy-broker keeps the pool enabled"
    assert cs.leave("west")
    pool = BrokerClustersetIPs(cs.api, namespace=cs.broker_ns).read()
    assert pool is not None and set(pool.clusters) == {"east"}
    global_record = BrokerGlobalnet(cs.api, namespace=cs.broker_ns).read()
    assert global_record is not None and set(global_record.clusters) == {"east"}


def test_a_pool_overlapping_the_global_range_or_a_members_cidrs_is_refused(cs: Set) -> None:
    """A VIP inside the global range or a cluster's own CIDRs would be captured there:
    refused before anything is written (no namespace at deploy-broker; no global CIDR,
    no slice, no Cluster object at join)."""
    with pytest.raises(ClustersetError, match=r"ClusterSetIP CIDR range 242\.50\.128\.0/20 "
                                              r"overlaps the global CIDR range 242\.50\.0\.0/16"):
        cs.deploy(pool=clusterset.ClustersetIPPool(cidr_range="242.50.128.0/20",
                                                  cluster_size=256))
    assert crud.ResourceClient(cs.api, resources.NAMESPACES).get_or_none(cs.broker_ns) is None
    cs.deploy(pool=clusterset.ClustersetIPPool(cidr_range="10.96.0.0/12", cluster_size=256))
    with pytest.raises(ClustersetError, match=r"range 10\.96\.0\.0/12 overlaps the service "
                                              r"CIDR of east 10\.96\.0\.0/16"):
        cs.join("east")
    with pytest.raises(ClustersetError, match="overlaps the service CIDR"):
        clusterset.preview_join(cs.api, JoinRequest(
            cluster_id="east", cluster_cidrs=("10.244.0.0/16",),
            service_cidrs=("10.96.0.0/16",)), broker_namespace=cs.broker_ns)
    global_record = BrokerGlobalnet(cs.api, namespace=cs.broker_ns).read()
    assert global_record is not None and global_record.clusters == {}
    assert cs.members(cs.broker_ns) == {}
