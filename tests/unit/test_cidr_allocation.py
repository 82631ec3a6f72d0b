"""Broker CIDR allocation: aligned first-fit slices, rejoin, leave, refusals."""

from __future__ import annotations

import pytest

from globalnet.cidr_allocation import (
    CidrAllocationError,
    GlobalnetInfo,
    allocate_cluster_cidr,
    release_cluster_cidr,
    validate_range,
)


def join_all(info: GlobalnetInfo, *ids: str, size: int | None = None) -> GlobalnetInfo:
    for cid in ids:
        _, info = allocate_cluster_cidr(info, cid, size=size)
    return info


def test_clusters_get_consecutive_aligned_slices_by_default() -> None:
    info = join_all(GlobalnetInfo(), "c1", "c2", "c3")
    assert info.clusters == {"c1": ("242.0.0.0/16",), "c2": ("242.1.0.0/16",),
                             "c3": ("242.2.0.0/16",)}


def test_rejoin_returns_the_same_cidr_and_leave_frees_it() -> None:
    info = join_all(GlobalnetInfo(), "c1", "c2")
    again, same = allocate_cluster_cidr(info, "c1")
    assert again == "242.0.0.0/16" and same == info
    info = release_cluster_cidr(info, "c1")
    cidr, _ = allocate_cluster_cidr(info, "c9")
    assert cidr == "242.0.0.0/16"


def test_sizes_round_up_to_a_power_of_two_and_stay_aligned() -> None:
    info = GlobalnetInfo()
    small, info = allocate_cluster_cidr(info, "small", size=1000)
    big, info = allocate_cluster_cidr(info, "big", size=65536)
    assert small == "242.0.0.0/22"
    assert big == "242.1.0.0/16"  # aligned: not 242.0.4.0
    tiny, info = allocate_cluster_cidr(info, "tiny", size=3)
    assert tiny == "242.0.4.0/30"


@pytest.mark.parametrize(
    ("cidr", "message"),
    [
        pytest.param("242.0.128.0/17", "overlaps 242.0.0.0/16 of cluster c1", id="overlap"),
        pytest.param("10.0.0.0/16", "outside the range", id="out-of-range"),
        pytest.param("242.5.0.1/16", "expected a network", id="host-bits"),
        pytest.param("242.5.0.0/40", "invalid global CIDR", id="bad-prefix"),
    ],
)
def test_explicit_cidrs_are_checked(cidr: str, message: str) -> None:
    info = join_all(GlobalnetInfo(), "c1")
    with pytest.raises(CidrAllocationError, match=message):
        allocate_cluster_cidr(info, "c2", requested_cidr=cidr)


def test_an_explicit_free_cidr_is_granted_and_skipped_by_later_joins() -> None:
    cidr, info = allocate_cluster_cidr(GlobalnetInfo(), "x", requested_cidr="242.0.0.0/16")
    assert cidr == "242.0.0.0/16"
    assert join_all(info, "y").clusters["y"] == ("242.1.0.0/16",)


def test_a_full_range_is_refused_clearly() -> None:
    info = GlobalnetInfo(cidr_range="242.0.0.0/14", cluster_size=65536)
    info = join_all(info, "a", "b")
    with pytest.raises(CidrAllocationError, match="more than half"):
        allocate_cluster_cidr(info, "c", size=(1 << 17) + 1)
    info = join_all(info, "c", "d")
    with pytest.raises(CidrAllocationError, match="no free block"):
        allocate_cluster_cidr(info, "e")


def test_configmap_round_trip_and_malformed_data() -> None:
    info = join_all(GlobalnetInfo(), "c1", "c2")
    data = info.to_configmap_data()
    assert data["globalnetCidrRange"] == "242.0.0.0/8"
    assert GlobalnetInfo.from_configmap_data(data) == info
    with pytest.raises(CidrAllocationError, match="malformed"):
        GlobalnetInfo.from_configmap_data({"clusterinfo": "{not json"})


def test_rejoin_with_another_explicit_cidr_is_refused() -> None:
    info = join_all(GlobalnetInfo(), "c1")
    with pytest.raises(CidrAllocationError, match="already holds"):
        allocate_cluster_cidr(info, "c1", requested_cidr="242.9.0.0/16")


def test_range_validation_for_deploy_broker() -> None:
    assert str(validate_range("242.0.0.0/8", 65536)) == "242.0.0.0/8"
    with pytest.raises(CidrAllocationError, match=r"^global CIDR range 242\.0\.0\.0/16: cluster "
                                                  r"size 65536 .* more than half"):
        validate_range("242.0.0.0/16", 65536)
    with pytest.raises(CidrAllocationError, match=r"^invalid ClusterSetIP CIDR range 'x'"):
        validate_range("x", 16, what="ClusterSetIP CIDR")


def test_a_record_without_range_or_size_reads_as_its_pools_defaults() -> None:
    from globalnet.broker import BrokerClustersetIPs, BrokerGlobalnet

    for pool, range_, size in ((BrokerGlobalnet, "242.0.0.0/8", 65536),
                               (BrokerClustersetIPs, "244.0.0.0/8", 4096)):
        info = GlobalnetInfo.from_configmap_data(
            {}, pool.keys, default_range=pool.default_range,
            default_cluster_size=pool.default_cluster_size)
        assert (info.cidr_range, info.cluster_size) == (range_, size)
