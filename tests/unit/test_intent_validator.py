"""Change-sized diffing and validation agree with their whole-intent references.

`sequence_delta` must equal a multiset difference; `ClaimIndex` and the
`IncrementalValidator` over it must accept exactly what `NatIntent.validate()`
accepts, for any change from a sound intent.

Address conventions: global CIDR 242.0.0.0/24 with a small pool of global IPs
(242.0.0.1-6, plus 242.9.0.1 outside it), targets 10.96.0.1-4, owners o1-o3.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from globalnet.intent import (
    EgressGroup,
    EgressKind,
    GlobalIP,
    HealthCheck,
    IngressMapping,
    IngressTarget,
    NatIntent,
    sequence_delta,
)
from globalnet.intent_validator import ClaimIndex, IncrementalValidator
from tests.unit import test_nft_fixtures as fx


@given(st.lists(st.integers(0, 9)), st.lists(st.integers(0, 9)))
def test_sequence_delta_is_a_multiset_difference(a: list[int], b: list[int]) -> None:
    added, removed = sequence_delta(tuple(a), tuple(b))
    assert Counter(added) == Counter(b) - Counter(a)
    assert Counter(removed) == Counter(a) - Counter(b)


def test_sequence_delta_of_one_change_in_50k_shared_objects_is_fast() -> None:
    """The update path at 50,000 mappings: a few milliseconds, not a full hash."""
    old = tuple(fx.mapping(i) for i in range(50_000))
    new = (*old[:25_000], fx.mapping(60_000), *old[25_000:])
    start = time.perf_counter()
    added, removed = sequence_delta(old, new)
    elapsed = time.perf_counter() - start
    assert (added, removed) == ([fx.mapping(60_000)], [])
    assert elapsed < 0.05  # typically ~2 ms; generous for a loaded CI machine


_IPS = [f"242.0.0.{i}" for i in range(1, 7)] + ["242.9.0.1"]
_OWNERS = ["o1", "o2", "o3"]
_mappings = st.builds(
    lambda ip, target, owner: IngressMapping(GlobalIP(ip), target,
                                             IngressTarget.CLUSTER_IP_SERVICE, owner),
    st.sampled_from(_IPS), st.sampled_from([f"10.96.0.{i}" for i in range(1, 5)]),
    st.sampled_from(_OWNERS))
_groups = st.builds(
    lambda ips, owner: EgressGroup(EgressKind.NAMESPACE, owner,
                                   tuple(GlobalIP(i) for i in ips), frozenset({"10.244.0.1"})),
    st.lists(st.sampled_from(_IPS), max_size=2), st.sampled_from(_OWNERS))
_health = st.builds(lambda ip, owner: HealthCheck(GlobalIP(ip), owner),
                    st.sampled_from(_IPS), st.sampled_from(_OWNERS))


def _intent(ingress: list[IngressMapping], egress: list[EgressGroup],
            health: list[HealthCheck]) -> NatIntent:
    return NatIntent.build(cluster_id="c", global_cidr="242.0.0.0/24", local_cidrs=["10.0.0.0/8"],
                           ingress=ingress, egress=egress, health_checks=health)


_intents = st.builds(_intent, st.lists(_mappings, max_size=4), st.lists(_groups, max_size=2),
                     st.lists(_health, max_size=1))


@settings(max_examples=400, deadline=None)
@given(_intents, _intents)
def test_claim_index_accepts_exactly_what_validate_accepts(old: NatIntent,
                                                           new: NatIntent) -> None:
    if old.validate():
        return  # the backend only ever holds a sound intent
    index = ClaimIndex.build(old)
    added, removed = sequence_delta(old.ingress, new.ingress)
    staged, sound = index.stage(old, new, added, removed)
    assert sound == (new.validate() == []), new.validate()
    if sound:
        index.commit(staged)
        assert index.owners == ClaimIndex.build(new).owners
        assert index.globals_of == ClaimIndex.build(new).globals_of


@settings(max_examples=400, deadline=None)
@given(_intents, st.lists(_intents, min_size=1, max_size=4))
def test_incremental_validator_agrees_with_validate_along_a_stream(
        first: NatIntent, stream: list[NatIntent]) -> None:
    """Accepted intents advance the index; refused ones leave it where it was."""
    validator = IncrementalValidator()
    checked = validator.check(first)
    assert list(checked.errors) == first.validate()
    if not checked.sound:
        return
    validator.commit(checked)
    for new in stream:
        accepted = validator.accepted
        checked = validator.check(new)
        assert checked.sound == (new.validate() == []), new.validate()
        if checked.sound:
            validator.commit(checked)
            assert validator.accepted is new
        else:
            assert list(checked.errors) == new.validate()
            assert validator.accepted is accepted


def test_incremental_validator_refuses_to_accept_an_unsound_intent() -> None:
    outside = NatIntent.build(
        cluster_id="c", global_cidr="242.0.0.0/24", local_cidrs=["10.0.0.0/8"],
        ingress=[IngressMapping(GlobalIP("242.9.0.1"), "10.96.0.1",
                                IngressTarget.CLUSTER_IP_SERVICE, "o1")])
    validator = IncrementalValidator()
    checked = validator.check(outside)
    assert not checked.sound
    with pytest.raises(ValueError):
        validator.commit(checked)
    assert validator.accepted is None


def _bulk(i: int) -> IngressMapping:
    """Mapping number i of 50,001: 242.0.(20+i//256).(i%256) -> 10.97.(20+i//256).(i%256)."""
    hi, lo = 20 + i // 256, i % 256
    return IngressMapping(GlobalIP(f"242.0.{hi}.{lo}"), f"10.97.{hi}.{lo}",
                          IngressTarget.CLUSTER_IP_SERVICE, f"GlobalIngressIP bulk/svc-{i}")


def test_incremental_validator_checks_only_the_change_at_50k_mappings() -> None:
    """One added mapping next to 50,000 shared ones: milliseconds, not a full validate()."""
    old = fx.intent(ingress=tuple(_bulk(i) for i in range(50_000)))
    validator = IncrementalValidator()
    validator.commit(validator.check(old))
    added = _bulk(50_000)
    new = dataclasses.replace(old, ingress=tuple(sorted(
        (*old.ingress, added), key=lambda m: (m.global_ip, m.owner))))
    assert new.ingress.count(added) == 1 and new.validate() == []
    start = time.perf_counter()
    checked = validator.check(new)
    validator.commit(checked)
    elapsed = time.perf_counter() - start
    assert checked.sound and checked.staged is not None
    assert elapsed < 0.05  # typically ~2 ms; generous for a loaded CI machine
