"""How an exporter picks a ClusterSetIP VIP from its cluster's slice."""

from __future__ import annotations

import netaddr
import pytest

from lighthouse.agent.clustersetip import (
    PoolExhaustedError,
    VipClaims,
    choose_vip,
    usable_range,
)


def test_the_pick_is_in_the_slice_and_the_same_for_the_same_service() -> None:
    vip = choose_vip("244.0.4.0/22", "shop/web", set())
    assert netaddr.IPAddress(vip) in netaddr.IPNetwork("244.0.4.0/22")
    assert vip not in {"244.0.4.0", "244.0.7.255"}  # network and broadcast left out
    assert choose_vip("244.0.4.0/22", "shop/web", set()) == vip  # re-exported: same VIP
    others = {choose_vip("244.0.4.0/22", f"shop/svc-{i}", set()) for i in range(50)}
    assert len(others) > 40  # spread by the key's hash, not all at the first address


def test_a_held_vip_is_skipped_and_a_full_slice_is_a_clear_error() -> None:
    first = choose_vip("244.0.0.0/29", "a/x", set())
    second = choose_vip("244.0.0.0/29", "a/x", {first})
    assert second != first and netaddr.IPAddress(second) in netaddr.IPNetwork("244.0.0.0/29")
    lo, hi = usable_range("244.0.0.0/29")
    every = {str(netaddr.IPAddress(v)) for v in range(lo, hi + 1)}
    assert len(every) == 6
    with pytest.raises(PoolExhaustedError, match=r"slice 244\.0\.0\.0/29 is exhausted: "
                                                  r"all 6 VIPs are held"):
        choose_vip("244.0.0.0/29", "a/x", every)


def test_tiny_slices_use_every_address() -> None:
    assert choose_vip("244.0.0.8/32", "a/x", set()) == "244.0.0.8"
    assert usable_range("244.0.0.8/31") == (int(netaddr.IPAddress("244.0.0.8")),
                                             int(netaddr.IPAddress("244.0.0.9")))
    assert netaddr.IPAddress(choose_vip("244.0.0.0/24", "a/x", set())) not in netaddr.IPNetwork(
        "10.0.0.0/8")


def test_claims_keep_concurrent_picks_apart_and_remember_who_waits() -> None:
    """Two services picked before the Broker shows either get different VIPs; a
    service finding the slice full waits until it holds one."""
    claims = VipClaims("244.0.0.0/31")
    first = claims.pick("a/x", on_broker=())
    second = claims.pick("a/y", on_broker=())
    assert {first, second} == {"244.0.0.0", "244.0.0.1"}
    assert claims.picked("a/x") == first
    with pytest.raises(PoolExhaustedError):
        claims.pick("a/z", on_broker=())
    assert claims.starved() == ["a/z"]
    claims.forget("a/x")
    assert claims.pick("a/z", on_broker=()) == first and claims.starved() == []
    claims.hold("a/y", "244.0.0.9")  # adopted from an older export
    assert claims.picked("a/y") == "244.0.0.9"
