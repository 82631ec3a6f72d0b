"""The nftables backend against FakeNft: golden ruleset, operation counts, restart,
failures, refusals and drift, all through the real constructor (no root).

Address conventions: see tests/unit/test_nft_fixtures.py (cluster c1, global CIDR
242.0.0.0/16, remote 242.1.0.0/16, pods 10.244.0.0/16, services 10.96.0.0/16).
"""

from __future__ import annotations

import dataclasses
import textwrap

import pytest

from datapath.nftables import NftablesDatapath, TransactionFailed
from datapath.nftables import names as n
from datapath.nftables.fake import FakeNft
from datapath.nftables.model import Element, Kind, Verb
from globalnet.datapath_api import IntentRejected
from globalnet.intent import GlobalIP, HealthCheck
from tests.unit import test_nft_fixtures as fx

BASE_RULES = textwrap.dedent("""\
    chain raw-prerouting {
    \tcomment "ingress: stateless global IP -> local rewrite, before conntrack"
    \ttype filter hook prerouting priority raw; policy accept;
    \tip saddr != @remote-global-cidrs return comment "only traffic from remote clusters is translated"
    \tip daddr set ip daddr map @ingress-ips accept comment "to one of our global IPs: all ports"
    \tmeta l4proto { tcp, udp, sctp } ip daddr set ip daddr . meta l4proto . th dport map @ingress-ports comment "to one of our global IPs: exported ports only"
    }
    chain nat-prerouting {
    \tcomment "new connections to our global IPs: health checks, nothing unmapped"
    \ttype nat hook prerouting priority dstnat; policy accept;
    \tmeta l4proto icmp ip daddr @health-check-ips redirect comment "ping to the health-check IP is answered by this gateway"
    \tip daddr @global-cidr drop comment "a global IP of ours without a mapping (or an unexported port) goes no further"
    \tip saddr @remote-global-cidrs meta l4proto { tcp, udp, sctp } ip daddr @ingress-admit-targets ip daddr . meta l4proto . th dport != @ingress-admit-ports drop comment "headless targets: only the exported ports admit new connections"
    }
    chain nat-postrouting {
    \tcomment "egress: SNAT pods to their global egress IPs; ingress: keep the remote source"
    \ttype nat hook postrouting priority srcnat - 10; policy accept;
    \tip saddr @remote-global-cidrs meta mark set meta mark & 0xffffbfff return comment "ingress: clear kube-proxy's masquerade bit 0x4000, the backend sees the remote source"
    \tip daddr != @remote-global-cidrs return comment "local and non-clusterset traffic is never translated"
    \tip saddr @egress-headless return comment "headless pods: 1:1 global IP, rewritten statelessly in filter-postrouting"
    \tsnat ip to ip saddr map @egress-pods comment "pod-selector and namespace groups, precedence resolved per pod"
    \tsnat ip to ip saddr map @egress-cidrs comment "everything else in the cluster: cluster global egress IPs"
    }
    chain filter-postrouting {
    \tcomment "toward remote clusters: MSS clamping, stateless local -> global IP rewrite"
    \ttype filter hook postrouting priority srcnat + 10; policy accept;
    \tip daddr != @remote-global-cidrs return comment "only traffic toward remote clusters is translated"
    \ttcp flags syn / syn,rst tcp option maxseg size set rt mtu comment "clamp MSS toward remote clusters (tunnel MTU)"
    \tip saddr set ip saddr map @ingress-reverse-ips accept comment "from a mapped target (replies, headless pods): all ports"
    \tmeta l4proto { tcp, udp, sctp } ip saddr set ip saddr . meta l4proto . th sport map @ingress-reverse-ports comment "replies from a mapped target: exported ports only"
    }
    """)  # noqa: E501

# One block per object of the base intent: set -> element lines.
BASE_ELEMENTS = {
    n.REMOTE_GLOBAL_CIDRS: ['242.1.0.0/16 comment "remote cluster global CIDR"'],
    n.GLOBAL_CIDR: ['242.0.0.0/16 comment "cluster c1"'],
    n.HEALTH_CHECK_IPS: ['242.0.255.254 comment "Gateway c1-gw"'],
    n.INGRESS_IPS: ['242.0.3.10 comment "GlobalIngressIP ns1/pod-db-0" : 10.244.1.30'],
    n.INGRESS_PORTS: ['242.0.10.1 . tcp . 80 comment "GlobalIngressIP ns1/web" : 10.96.0.10'],
    n.REVERSE_IPS: ['10.244.1.30 comment "GlobalIngressIP ns1/pod-db-0" : 242.0.3.10'],
    n.REVERSE_PORTS: ['10.96.0.10 . tcp . 80 comment "GlobalIngressIP ns1/web" : 242.0.10.1'],
    n.EGRESS_PODS: [
        '10.244.0.20 comment "GlobalEgressIP ns1/ns-egress" : 242.0.1.1-242.0.1.2',
        # pod-selector beats the namespace group for the same pod
        '10.244.0.21 comment "GlobalEgressIP ns1/db-egress" : 242.0.2.1-242.0.2.1',
    ],
    # the headless pod leaves by its own 1:1 global IP, statelessly
    n.EGRESS_HEADLESS: ['10.244.1.30 comment "GlobalIngressIP ns1/pod-db-0" : 242.0.3.10'],
    n.EGRESS_CIDRS: [
        '10.244.0.0/16 comment "ClusterGlobalEgressIP cluster-egress.submariner.io"'
        " : 242.0.0.1-242.0.0.8",
        '10.96.0.0/16 comment "ClusterGlobalEgressIP cluster-egress.submariner.io"'
        " : 242.0.0.1-242.0.0.8",
    ],
}


def chains_text(fake: FakeNft) -> str:
    """The chain blocks of the fake's dump, tab-indented from zero."""
    assert fake.table is not None
    out = []
    for c in fake.table.chains.values():
        out.append(f"chain {c.spec.name} {{")
        out += [f"\t{line}" for line in c.spec.decl_lines()]
        out += [f"\t{r}" for r in c.rules]
        out.append("}")
    return "\n".join(out) + "\n"


def elements_text(fake: FakeNft) -> dict[str, list[str]]:
    assert fake.table is not None
    return {name: [el.text() for el in sorted(s.elements.values())]
            for name, s in fake.table.sets.items() if s.elements}


@pytest.fixture
def fake() -> FakeNft:
    return FakeNft()


@pytest.fixture
def backend(fake: FakeNft) -> NftablesDatapath:
    return NftablesDatapath(client=fake)


def test_base_intent_gives_the_golden_ruleset(fake: FakeNft, backend: NftablesDatapath) -> None:
    result = backend.apply(fx.intent())
    assert chains_text(fake) == BASE_RULES
    assert elements_text(fake) == BASE_ELEMENTS
    # 1 table + 10 sets + 4 chains + 14 rules + 12 elements, in one transaction.
    assert len(fake.transactions) == 1
    assert result.operations == fake.last_operations == 1 + 12 + 4 + 15 + 12


def test_repeated_syncs_cost_only_their_change(fake: FakeNft, backend: NftablesDatapath) -> None:
    """Like kube-proxy's TestSyncProxyRulesRepeated: 42, then 0, then per-change counts."""
    base = fx.intent()
    assert backend.apply(base).operations == 44
    assert backend.apply(base).operations == 0
    assert len(fake.transactions) == 1  # nothing committed for a no-op

    one = fx.intent(ingress=(fx.mapping(1),))
    result = backend.apply(one)
    assert result.operations == 2  # forward + reverse element
    assert result.diff.ingress_added == (fx.mapping(1),)
    assert [(o.verb, o.kind, o.name) for o in fake.transactions[-1]] == [
        (Verb.ADD, Kind.ELEMENT, n.INGRESS_IPS), (Verb.ADD, Kind.ELEMENT, n.REVERSE_IPS)]

    assert backend.apply(base).operations == 2  # removed again
    # Same mapping, new owner: the comment changes, so delete + add of both elements.
    assert backend.apply(one).operations == 2
    assert backend.apply(fx.intent(ingress=(fx.mapping(1, owner="GlobalIngressIP x/y"),))
                         ).operations == 4
    # A port-restricted mapping with two ports: 2 forward + 2 reverse elements.
    two_ports = dataclasses.replace(fx.WEB, global_ip=GlobalIP("242.0.10.2"),
                                    target_ip="10.96.0.11",
                                    ports=(*fx.WEB.ports, dataclasses.replace(fx.WEB.ports[0],
                                                                              port=8080)))
    assert backend.apply(fx.intent(ingress=(two_ports,))).operations == 2 + 4
    # A health check replaced: 1 delete + 1 add.
    other = HealthCheck(GlobalIP("242.0.255.253"), "Gateway c1-gw2")
    assert backend.apply(fx.intent(ingress=(two_ports,), health=(other,))).operations == 2


def test_bulk_add_and_remove_is_element_ops_only(fake: FakeNft, backend: NftablesDatapath) -> None:
    backend.apply(fx.intent())
    bulk = tuple(fx.mapping(i) for i in range(1000))
    assert backend.apply(fx.intent(ingress=bulk)).operations == 2000
    assert all(o.kind is Kind.ELEMENT for o in fake.transactions[-1])
    assert backend.apply(fx.intent()).operations == 2000
    assert elements_text(fake) == BASE_ELEMENTS


def test_egress_precedence_follows_group_changes(fake: FakeNft, backend: NftablesDatapath) -> None:
    backend.apply(fx.intent())
    # Dropping the pod-selector group hands pod .21 back to its namespace group.
    without = dataclasses.replace(fx.intent(), egress=tuple(
        g for g in fx.intent().egress if g is not fx.POD_EGRESS))
    assert backend.apply(without).operations == 2
    assert elements_text(fake)[n.EGRESS_PODS][1] == (
        '10.244.0.21 comment "GlobalEgressIP ns1/ns-egress" : 242.0.1.1-242.0.1.2')


def test_restart_converges_without_touching_the_kernel(fake: FakeNft,
                                                       backend: NftablesDatapath) -> None:
    backend.apply(fx.intent(ingress=(fx.mapping(7),)))
    before = fake.dump()
    restarted = NftablesDatapath(client=fake)  # a new process: same kernel, no memory
    assert restarted.need_full_sync
    result = restarted.apply(fx.intent(ingress=(fx.mapping(7),)))
    assert result.operations == 0
    assert fake.dump() == before
    # ...and the restarted backend continues incrementally.
    assert restarted.apply(fx.intent()).operations == 2


def test_restart_removes_what_the_old_intent_had_and_the_new_lacks(fake: FakeNft) -> None:
    NftablesDatapath(client=fake).apply(fx.intent(ingress=(fx.mapping(1), fx.mapping(2))))
    result = NftablesDatapath(client=fake).apply(fx.intent(ingress=(fx.mapping(2),)))
    assert result.operations == 2
    assert [o.verb for o in fake.transactions[-1]] == [Verb.DELETE, Verb.DELETE]


def test_failed_transaction_keeps_state_and_forces_full_sync(fake: FakeNft,
                                                            backend: NftablesDatapath) -> None:
    backend.apply(fx.intent())
    before = fake.dump()
    fake.fail_next()
    with pytest.raises(TransactionFailed):
        backend.apply(fx.intent(ingress=(fx.mapping(1),)))
    assert fake.pending_failures == 0
    assert fake.dump() == before
    assert backend.need_full_sync
    assert backend.apply(fx.intent(ingress=(fx.mapping(1),))).operations == 2
    assert not backend.need_full_sync


@pytest.mark.parametrize("bad", [
    pytest.param(lambda: fx.intent(ingress=(dataclasses.replace(
        fx.mapping(1), global_ip=GlobalIP("242.9.0.1")),)), id="outside-global-cidr"),
    pytest.param(lambda: fx.intent(ingress=(dataclasses.replace(
        fx.mapping(1), global_ip=fx.WEB.global_ip),)), id="duplicate-global-ip"),
    pytest.param(lambda: fx.intent(ingress=(dataclasses.replace(
        fx.mapping(1), target_ip=fx.WEB.target_ip),)), id="conflicting-target"),
    pytest.param(lambda: fx.intent(remote=["242.0.128.0/17"]), id="remote-overlaps-ours"),
])
def test_unsound_intent_is_refused_before_the_kernel(fake: FakeNft, backend: NftablesDatapath,
                                                     bad: object) -> None:
    backend.apply(fx.intent())
    before, count = fake.dump(), len(fake.transactions)
    assert callable(bad)
    with pytest.raises(IntentRejected) as err:
        backend.apply(bad())
    assert err.value.errors
    assert len(fake.transactions) == count and fake.dump() == before
    assert backend.apply(fx.intent()).operations == 0  # last good state still current


def test_unsound_first_intent_never_creates_the_table(fake: FakeNft,
                                                      backend: NftablesDatapath) -> None:
    with pytest.raises(IntentRejected):
        backend.apply(fx.intent(global_cidr="242.0.0.0/24"))  # egress IPs fall outside
    assert fake.table is None


def test_duplicate_mappings_keep_their_element(fake: FakeNft, backend: NftablesDatapath) -> None:
    """Two equal mappings want one element; removing one must keep it."""
    backend.apply(fx.intent(ingress=(fx.mapping(1), fx.mapping(1))))
    assert backend.apply(fx.intent(ingress=(fx.mapping(1),))).operations == 0
    assert '242.0.100.1 comment "GlobalIngressIP bulk/svc-1" : 10.96.100.1' in (
        elements_text(fake)[n.INGRESS_IPS])


def test_drift_in_elements_is_found_and_repaired(fake: FakeNft, backend: NftablesDatapath) -> None:
    backend.apply(fx.intent(ingress=(fx.mapping(1),)))
    assert not backend.check_drift().drifted
    fake.edit(lambda t: t.sets[n.INGRESS_IPS].elements.pop("242.0.100.1"))
    fake.edit(lambda t: t.sets[n.EGRESS_PODS].elements.__setitem__(
        "10.244.9.9", Element("10.244.9.9", "242.0.0.1-242.0.0.1", "by hand")))
    report = backend.check_drift()
    assert report.drifted and report.operations == 2
    assert backend.resync() == 2
    assert not backend.check_drift().drifted
    assert backend.resync() == 0


def test_drift_in_rules_flushes_and_rewrites_only_that_chain(
        fake: FakeNft, backend: NftablesDatapath) -> None:
    backend.apply(fx.intent())
    fake.edit(lambda t: t.chains[n.NAT_POSTROUTING].rules.pop(1))
    assert backend.resync() == 1 + 1 + 5  # add chain (no-op), flush, 5 rules
    assert chains_text(fake) == BASE_RULES


def test_deleted_table_and_foreign_objects_are_repaired(fake: FakeNft,
                                                        backend: NftablesDatapath) -> None:
    backend.apply(fx.intent())
    fake.delete_table()
    assert backend.resync() == 44
    assert elements_text(fake) == BASE_ELEMENTS
    # A chain someone added to our table: the table is recreated in one batch.
    from datapath.nftables.fake import _Chain
    from datapath.nftables.model import ChainSpec
    fake.edit(lambda t: t.chains.__setitem__("mine", _Chain(ChainSpec(
        "mine", "filter", "input", "0", "by hand"))))
    assert backend.resync() == 1 + 44
    assert fake.transactions[-1][0].kind is Kind.TABLE
    assert fake.transactions[-1][0].verb is Verb.DELETE
    assert chains_text(fake) == BASE_RULES


def test_cleanup_deletes_our_table_only(fake: FakeNft, backend: NftablesDatapath) -> None:
    backend.apply(fx.intent())
    backend.cleanup()
    assert fake.table is None
    backend.cleanup()  # idempotent
    assert backend.apply(fx.intent()).operations == 44
