"""nftables-specific checks against the real kernel (the shared cases live in
test_nat_conformance.py): the kernel prints our rules exactly as we write them,
failed batches leave nothing behind, cleanup touches nothing but our table, and
the generation / event readers see what they should.

Address conventions: one gateway namespace; global CIDR 242.0.0.0/16, remote
242.1.0.0/16, pods 10.244.0.0/16, services 10.96.0.0/16 (tests/netns/nat_topology.py).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

import pytest

from datapath.nftables import NftablesDatapath, TransactionFailed, read_mappings
from datapath.nftables import names as n
from datapath.nftables.converge import structure_problems
from datapath.nftables.kernel import LibNftClient, parse_listing
from datapath.nftables.netlink import Commit, Events, NfTables
from lab import netns
from tests.netns import nat_topology as nt

pytestmark = pytest.mark.privileged


def test_kernel_prints_our_ruleset_exactly_as_written(make_netns: Callable[[str], str]) -> None:
    gw = make_netns("gw")
    NftablesDatapath(netns=gw).apply(nt.intent("a"))
    client = LibNftClient(gw)
    table = client.read_table()
    assert structure_problems(table) == ([], False)
    assert table is not None
    assert table.sets[n.EGRESS_CIDRS].elements["10.244.0.0/16"].value == "242.0.0.1-242.0.0.4"
    assert table.sets[n.INGRESS_PORTS].elements["242.0.10.1 . udp . 53"].value == nt.WEB_CLUSTER_IP


def test_inspection_reads_the_kernel(make_netns: Callable[[str], str]) -> None:
    gw = make_netns("gw")
    NftablesDatapath(netns=gw).apply(nt.intent("a"))
    rows = {(r.direction, r.global_ip, r.local, r.ports) for r in read_mappings(gw)}
    assert ("ingress", "242.0.10.1", nt.WEB_CLUSTER_IP, "tcp/80, udp/53") in rows
    assert ("ingress", "242.0.3.30", nt.POD["hl"].ip, "all") in rows
    assert ("egress", "242.0.3.30", nt.POD["hl"].ip, "all") in rows
    assert ("egress", "242.0.2.1", nt.POD["sel"].ip, "all") in rows
    assert ("health-check", "242.0.255.254", "gateway", "icmp") in rows
    assert read_mappings(make_netns("empty")) == []


def test_failed_batch_changes_nothing_and_next_apply_repairs(
        make_netns: Callable[[str], str]) -> None:
    gw = make_netns("gw")
    backend = NftablesDatapath(netns=gw)
    backend.apply(nt.intent("a"))
    # Someone puts a conflicting element where our next change adds one.
    netns.run(gw, ["nft", "add", "element", "inet", "globalnet", "ingress-ips",
                   "{ 242.0.100.0 : 10.1.1.1 }"])
    before = netns.run(gw, ["nft", "list", "table", "inet", "globalnet"])
    with pytest.raises(TransactionFailed):
        backend.apply(nt.intent("a", extra_ingress=nt.bulk_mappings("a", 3)))
    assert netns.run(gw, ["nft", "list", "table", "inet", "globalnet"]) == before
    assert backend.need_full_sync
    result = backend.apply(nt.intent("a", extra_ingress=nt.bulk_mappings("a", 3)))
    assert result.operations == 2 * 3 + 1  # our 6 elements, and the stranger deleted first
    assert backend.check_drift().drifted is False


def test_cleanup_removes_our_table_and_nothing_else(make_netns: Callable[[str], str]) -> None:
    gw = make_netns("gw")
    netns.run(gw, ["nft", "add", "table", "inet", "someone-else"])
    netns.run(gw, ["iptables", "-t", "nat", "-A", "POSTROUTING", "-j", "MASQUERADE"])
    backend = NftablesDatapath(netns=gw)
    backend.apply(nt.intent("a"))
    backend.cleanup()
    tables = netns.run(gw, ["nft", "list", "tables"])
    assert "globalnet" not in tables
    assert "table inet someone-else" in tables and "table ip nat" in tables
    backend.cleanup()  # nothing left to delete: no error


def test_programs_the_callers_own_namespace_when_given_none() -> None:
    """The test run sits in a throwaway namespace (run-tests.sh), so this is safe."""
    backend = NftablesDatapath(netns=None)
    try:
        backend.apply(nt.intent("a"))
        assert LibNftClient(None).read_table() is not None
    finally:
        backend.cleanup()


def test_a_context_made_for_a_namespace_stays_there_from_any_thread(
        make_netns: Callable[[str], str]) -> None:
    gw = make_netns("gw")
    backend = NftablesDatapath(netns=gw)
    worker = threading.Thread(target=backend.apply, args=(nt.intent("a"),))
    worker.start()
    worker.join()
    assert "table inet globalnet" in netns.run(gw, ["nft", "list", "tables"])
    assert LibNftClient(None).read_table() is None  # not in the caller's namespace


def test_generation_and_events_attribute_commits(make_netns: Callable[[str], str]) -> None:
    gw = make_netns("gw")
    gen = NfTables(gw)
    events = Events(gw, family="inet", table="globalnet")
    try:
        backend = NftablesDatapath(netns=gw)
        g0 = gen.generation()
        backend.apply(nt.intent("a"))
        assert gen.generation() == g0 + 1
        netns.run(gw, ["nft", "add", "table", "ip", "unrelated"])
        netns.run(gw, ["nft", "delete", "element", "inet", "globalnet", "ingress-ips",
                       "{ 242.0.3.30 }"])
        commits: list[Commit] = []

        def three() -> bool:
            commits.extend(events.read(0.1)[0])
            return len(commits) >= 3

        nt.wait_for("three commits", three)
        ours, unrelated, by_hand = commits[:3]
        assert ours.touched and ours.generation in backend.own_generations
        assert not unrelated.touched
        assert by_hand.touched and by_hand.task not in backend.own_tasks
    finally:
        events.close()
        gen.close()


def test_transactions_are_logged_at_debug(make_netns: Callable[[str], str],
                                          caplog: pytest.LogCaptureFixture) -> None:
    gw = make_netns("gw")
    with caplog.at_level(logging.DEBUG, logger="datapath.nftables"):
        NftablesDatapath(netns=gw).apply(nt.intent("a"))
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "add table inet globalnet" in text
    assert "add element inet globalnet ingress-ports" in text


def test_fast_reader_agrees_with_a_full_libnftables_listing(
        make_netns: Callable[[str], str]) -> None:
    """Elements dumped over netlink read the same as libnftables' JSON listing."""
    gw = make_netns("gw")
    backend = NftablesDatapath(netns=gw)
    backend.apply(nt.intent("a", extra_ingress=nt.bulk_mappings("a", 300)))
    fast = LibNftClient(gw).read_table()
    json_text = netns.run(gw, ["nft", "-j", "list", "table", "inet", "globalnet"])
    terse = netns.run(gw, ["nft", "-t", "list", "table", "inet", "globalnet"])
    full = parse_listing(json_text, terse)
    assert fast is not None
    assert {k: s.elements for k, s in fast.sets.items()} == {
        k: s.elements for k, s in full.sets.items()}
    assert {k: (c.decl, c.rules) for k, c in fast.chains.items()} == {
        k: (c.decl, c.rules) for k, c in full.chains.items()}


@pytest.mark.parametrize("edit", [
    ["insert", "rule", "inet", "globalnet", "filter-postrouting", "accept"],
    ["add", "chain", "inet", "globalnet", "extra"],
    ["add", "counter", "inet", "globalnet", "extra"],
    ["add", "element", "inet", "globalnet", "egress-pods", "{ 10.244.9.9 : 242.0.0.1-242.0.0.1 }"],
    ["delete", "element", "inet", "globalnet", "ingress-reverse-ips", "{ 10.244.1.30 }"],
    ["flush", "set", "inet", "globalnet", "remote-global-cidrs"],
], ids=["rule", "chain", "counter", "stray-element", "missing-element", "flushed-set"])
def test_hand_edits_are_found_and_undone(make_netns: Callable[[str], str],
                                         edit: list[str]) -> None:
    gw = make_netns("gw")
    backend = NftablesDatapath(netns=gw)
    backend.apply(nt.intent("a"))
    assert not backend.check_drift().drifted
    before = netns.run(gw, ["nft", "-j", "list", "table", "inet", "globalnet"])
    netns.run(gw, ["nft", *edit])
    report = backend.check_drift()
    assert report.drifted, report
    assert backend.resync() > 0
    assert not backend.check_drift().drifted
    assert not NftablesDatapath(netns=gw).check_drift().drifted  # a fresh reader agrees
    after = netns.run(gw, ["nft", "-j", "list", "table", "inet", "globalnet"])
    assert _elements(after) == _elements(before)


def _elements(json_text: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for obj in json.loads(json_text)["nftables"]:
        s = obj.get("set") or obj.get("map")
        if s:
            out[s["name"]] = sorted(json.dumps(e, sort_keys=True) for e in s.get("elem", []))
    return out
