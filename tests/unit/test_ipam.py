"""Global IP pool: first fit, contiguous blocks, reservation after restart, release.

Address conventions: pools are small slices of 242.0.0.0/8 so edges are easy to see.
"""

from __future__ import annotations

import random

import pytest

from globalnet.ipam import AddressUnavailable, GlobalIPPool, PoolError, PoolExhausted


def test_network_and_broadcast_are_never_handed_out() -> None:
    pool = GlobalIPPool("242.0.0.0/29")
    assert pool.size == 6
    assert pool.allocate(6) == [f"242.0.0.{i}" for i in range(1, 7)]
    with pytest.raises(PoolExhausted):
        pool.allocate()


def test_blocks_are_contiguous_and_first_fit() -> None:
    pool = GlobalIPPool("242.0.0.0/24")
    a = pool.allocate(3)
    b = pool.allocate(2)
    assert a == ["242.0.0.1", "242.0.0.2", "242.0.0.3"] and b == ["242.0.0.4", "242.0.0.5"]
    pool.release(["242.0.0.2"])
    # A gap of one cannot hold a block of two: the block goes after the last run.
    assert pool.allocate(2) == ["242.0.0.6", "242.0.0.7"]
    assert pool.allocate(1) == ["242.0.0.2"]


def test_reserve_is_all_or_nothing() -> None:
    pool = GlobalIPPool("242.0.0.0/24")
    pool.reserve(["242.0.0.10"])
    with pytest.raises(AddressUnavailable, match="already allocated"):
        pool.reserve(["242.0.0.11", "242.0.0.10"])
    assert not pool.is_allocated("242.0.0.11")
    with pytest.raises(AddressUnavailable, match="not in pool"):
        pool.reserve(["242.0.1.1"])
    with pytest.raises(AddressUnavailable, match="invalid IP"):
        pool.reserve(["not-an-ip"])


def test_exhaustion_recovers_when_addresses_are_released() -> None:
    pool = GlobalIPPool("242.0.0.0/30")
    ips = pool.allocate(2)
    with pytest.raises(PoolExhausted, match="0 of 2 free"):
        pool.allocate()
    pool.release(ips[:1])
    assert pool.allocate() == ips[:1]


def test_memory_follows_fragmentation_not_pool_size() -> None:
    pool = GlobalIPPool("242.0.0.0/8")
    assert pool.intervals() == 0
    pool.allocate(1000)
    assert pool.intervals() == 1
    for ip in [f"242.0.0.{i}" for i in range(2, 200, 2)]:
        pool.release([ip])
    assert pool.intervals() == 100


def test_random_churn_matches_a_reference_set() -> None:
    rng = random.Random(7)
    pool = GlobalIPPool("242.0.0.0/26")
    held: set[str] = set()
    for _ in range(3000):
        if held and rng.random() < 0.45:
            ip = rng.choice(sorted(held))
            pool.release([ip])
            held.discard(ip)
        else:
            try:
                got = pool.allocate(rng.choice([1, 1, 2, 3]))
            except PoolExhausted:
                continue
            assert not held & set(got), "double allocation"
            held |= set(got)
        assert pool.allocated == len(held)
    assert all(pool.is_allocated(ip) for ip in held)


@pytest.mark.parametrize("cidr", ["242.0.0.0/31", "bogus", "242.0.0.0/33"])
def test_unusable_pools_are_refused(cidr: str) -> None:
    with pytest.raises(PoolError):
        GlobalIPPool(cidr)


def test_ipv6_needs_no_special_case() -> None:
    pool = GlobalIPPool("fd00:242::/120")
    assert pool.allocate(2) == ["fd00:242::1", "fd00:242::2"]
    with pytest.raises(AddressUnavailable, match="not an IPv6"):
        pool.reserve(["242.0.0.1"])
