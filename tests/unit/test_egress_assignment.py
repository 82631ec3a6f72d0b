"""`assign_egress` (what every backend programs) agrees with `egress_for` (the
reference semantics) for every pod of any intent.

Addresses: pods in 10.244.0.0/24 (the local CIDR), global IPs in 242.0.0.0/24.
"""

from __future__ import annotations

import netaddr
from hypothesis import given, settings
from hypothesis import strategies as st

from globalnet.intent import (
    EgressGroup,
    EgressKind,
    GlobalIP,
    NatIntent,
    assign_egress,
    egress_for,
    longest_contiguous_run,
)

POD_IPS = [f"10.244.0.{i}" for i in range(1, 9)]

groups = st.builds(
    lambda kind, n, pods, first: EgressGroup(
        kind=kind, owner=f"{kind.name.lower()}-{n}",
        global_ips=tuple(GlobalIP(f"242.0.0.{first + i}") for i in range(2)),
        pod_ips=frozenset() if kind is EgressKind.CLUSTER else frozenset(pods)),
    st.sampled_from(list(EgressKind)), st.integers(0, 3),
    st.sets(st.sampled_from(POD_IPS), max_size=5), st.integers(1, 200),
)


def intent_of(egress: list[EgressGroup]) -> NatIntent:
    unique = {g.owner: g for g in egress}.values()
    return NatIntent.build(cluster_id="c1", global_cidr="242.0.0.0/24",
                           local_cidrs=["10.244.0.0/24"], egress=list(unique))


@settings(max_examples=300, deadline=None)
@given(st.lists(groups, max_size=6))
def test_every_pod_gets_the_group_egress_for_names(egress: list[EgressGroup]) -> None:
    intent = intent_of(egress)
    assignment = assign_egress(intent)
    for pod in POD_IPS:
        expected = egress_for(intent, pod)
        got = assignment.pods.get(pod, assignment.cluster)
        assert got == expected, pod


def test_the_pod_selector_group_beats_the_namespace_group_and_the_cluster() -> None:
    selector = EgressGroup(EgressKind.POD_SELECTOR, "GlobalEgressIP ns/sel",
                           (GlobalIP("242.0.0.1"),), frozenset({"10.244.0.1"}))
    namespace = EgressGroup(EgressKind.NAMESPACE, "GlobalEgressIP ns/all",
                            (GlobalIP("242.0.0.2"),), frozenset({"10.244.0.1", "10.244.0.2"}))
    cluster = EgressGroup(EgressKind.CLUSTER, "ClusterGlobalEgressIP cluster-egress",
                          (GlobalIP("242.0.0.3"),))
    assignment = assign_egress(intent_of([cluster, namespace, selector]))
    assert assignment.pods == {"10.244.0.1": selector, "10.244.0.2": namespace}
    assert assignment.cluster == cluster


def test_a_group_with_a_gap_translates_to_its_longest_contiguous_run() -> None:
    run = longest_contiguous_run(["242.0.0.9", "242.0.0.1", "242.0.0.2", "242.0.0.3"])
    assert run == (int(netaddr.IPAddress("242.0.0.1")), int(netaddr.IPAddress("242.0.0.3")))
    assert longest_contiguous_run(["242.0.0.7"]) == (int(netaddr.IPAddress("242.0.0.7")),) * 2
