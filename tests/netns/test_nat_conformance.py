"""NAT conformance: real packets between two clusters with the same CIDRs.

Every case runs once per datapath backend (`HARNESSES` in conformance.py:
nftables and ebpf) on one topology per backend (nat_topology.py): cluster a's pods
reach cluster b's exported service and headless pod through global IPs, and back.
kube-proxy's ClusterIP handling is emulated with kube-proxy-shaped iptables-nft
rules, including the 0x4000 masquerade mark for sources outside the pod CIDR.

Address conventions (full table in nat_topology.py):
  pods 10.244.0.0/16 and services 10.96.0.0/16 in both clusters
  a: global 242.0.0.0/16, b: global 242.1.0.0/16; router between the gateways
  G.0.1-4 cluster egress, G.1.1-2 namespace group, G.2.1 pod selector,
  G.3.30 headless pod hl (exports tcp/7070; serves tcp and udp 7070 and 9999),
  G.10.1 service web (tcp/80, udp/53), G.255.254 health check
  10.96.0.10 web (exported), 10.96.0.20 secret (not exported)
"""

from __future__ import annotations

import dataclasses
import functools
import os
import select
import time
from collections.abc import Iterator

import pytest

from globalnet.datapath_api import Datapath, IntentRejected
from globalnet.intent import GlobalIP, IngressMapping, IngressTarget, egress_for
from lab import netns
from tests.netns import nat_topology as nt
from tests.netns.conformance import HARNESSES, Harness

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


@pytest.fixture(scope="module", params=[pytest.param(h, id=h) for h in HARNESSES])
def harness(request: pytest.FixtureRequest) -> Harness:
    return HARNESSES[request.param]


@pytest.fixture(scope="module")
def topo(harness: Harness) -> Iterator[nt.Topology]:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces and nftables")
    with nt.topology() as t:
        yield t


@pytest.fixture(scope="module")
def gateways(harness: Harness, topo: nt.Topology) -> Iterator[dict[str, Datapath]]:
    """One backend per gateway node; tests may replace them (restart)."""
    backends = {c: harness.make(topo.gateway(c)) for c in ("a", "b")}
    for c, backend in backends.items():
        backend.apply(nt.intent(c))
    yield backends
    for backend in backends.values():
        backend.cleanup()


@pytest.fixture(autouse=True)
def base_intents(gateways: dict[str, Datapath]) -> None:
    """Every case starts from the clusters' base intents."""
    for c, backend in gateways.items():
        backend.apply(nt.intent(c))


def egress_ips(cluster: str, pod: str) -> set[str]:
    """The reference answer: which global IPs may a pod's traffic leave with."""
    group = egress_for(nt.intent(cluster), nt.POD[pod].ip)
    assert group is not None
    return set(group.global_ips)


WEB_B = nt.global_ip("b", "10.1")
HL_B = nt.global_ip("b", "3.30")


def test_tcp_to_remote_service_global_ip(topo: nt.Topology) -> None:
    flow = nt.wait_for("connection", lambda: topo.open_flow("a", "cl", WEB_B, 80))
    try:
        name, seen = flow.echo()
        assert name == "web"
        assert seen in egress_ips("a", "cl")
        # Ingress is translated before conntrack: b's gateway tracks (and kube-proxy
        # DNATs) the ClusterIP flow, never the global IP.
        gw = topo.gateway("b")
        tracked = netns.run(gw, ["conntrack", "-L", "-p", "tcp", "--dport", "80"])
        assert f"dst={nt.WEB_CLUSTER_IP} " in tracked and f"src={nt.POD['web'].ip} " in tracked
        assert WEB_B not in netns.run(gw, ["conntrack", "-L"])
    finally:
        flow.close()


def test_udp_to_remote_service_global_ip(topo: nt.Topology) -> None:
    name, seen, reply_from = nt.wait_for("udp echo", lambda: topo.udp_echo("a", "cl", WEB_B, 53))
    assert name == "web"
    assert seen in egress_ips("a", "cl")
    assert reply_from == (WEB_B, 53)  # the client sees the address it talked to


def test_icmp_to_headless_pod_and_health_check(topo: nt.Topology) -> None:
    nt.wait_for("ping headless pod", lambda: topo.ping("a", "cl", HL_B))
    nt.wait_for("ping health check", lambda: topo.ping("a", "cl", nt.global_ip("b", "255.254")))


@pytest.mark.parametrize("pod", ["cl", "ns", "sel", "hl"],
                         ids=["cluster", "namespace", "pod-selector", "headless-pod"])
def test_server_sees_the_expected_egress_global_ip(topo: nt.Topology, pod: str) -> None:
    for src, dst in (("a", "b"), ("b", "a")):
        name, seen = nt.wait_for("tcp echo", functools.partial(
            topo.tcp_echo, src, pod, nt.global_ip(dst, "10.1"), 80))
        assert name == "web"
        assert seen in egress_ips(src, pod), f"{src}/{pod} left as {seen}"


def test_headless_pod_reachable_through_its_global_ip(topo: nt.Topology) -> None:
    name, seen = nt.wait_for("tcp echo", lambda: topo.tcp_echo("a", "sel", HL_B, 7070))
    assert name == "hl"
    assert seen in egress_ips("a", "sel")


def test_non_exported_service_is_unreachable_through_any_global_ip(topo: nt.Topology) -> None:
    # Control: the service exists and answers locally in cluster b.
    assert nt.wait_for("secret locally", lambda: topo.tcp_echo(
        "b", "cl", nt.SECRET_CLUSTER_IP, 80))[0] == "secret"
    offsets = ["0.1", "1.1", "2.1", "3.30", "10.1", "10.2", "255.254", "20.20"]
    targets = [(nt.global_ip("b", o), port) for o in offsets for port in (80, 9090)]
    answers = nt.connect_all(topo, "a", "cl", targets)
    assert "secret" not in answers.values(), answers
    assert answers[(WEB_B, 80)] == "web"  # the exported port of the exported service works
    assert answers[(WEB_B, 9090)].startswith("error")  # ports it does not export do not


def test_only_exported_ports_are_reachable_through_global_ips(topo: nt.Topology) -> None:
    hl = nt.POD["hl"].ip
    # Control: inside cluster b the headless pod answers on every port it serves.
    assert nt.wait_for("hl locally", lambda: topo.tcp_echo("b", "cl", hl, 9999))[0] == "hl"
    for port in (7070, 9999):
        assert topo.udp_echo("b", "cl", hl, port)[0] == "hl"
    # Through the global IPs, from cluster a: the exported protocol and port only.
    assert nt.wait_for("tcp echo", lambda: topo.tcp_echo("a", "cl", HL_B, 7070))[0] == "hl"
    assert nt.wait_for("tcp echo", lambda: topo.tcp_echo("a", "cl", WEB_B, 80))[0] == "web"
    assert nt.wait_for("udp echo", lambda: topo.udp_echo("a", "cl", WEB_B, 53))[0] == "web"
    tcp = nt.connect_all(topo, "a", "cl", [(HL_B, 9999), (WEB_B, 8080), (WEB_B, 53)])
    assert all(a.startswith("error") for a in tcp.values()), tcp
    for ip, port in ((HL_B, 9999), (HL_B, 7070), (WEB_B, 5353), (WEB_B, 80)):
        with pytest.raises(OSError):
            topo.udp_echo("a", "cl", ip, port, timeout=0.7)


def test_local_traffic_is_unchanged(topo: nt.Topology) -> None:
    cl = nt.POD["cl"].ip
    assert nt.wait_for("pod to pod", lambda: topo.tcp_echo("a", "cl", nt.POD["web"].ip, 8080)
                       ) == ("web", cl)
    assert topo.tcp_echo("a", "cl", nt.WEB_CLUSTER_IP, 80) == ("web", cl)
    assert topo.tcp_echo("a", "ns", nt.WEB_CLUSTER_IP, 80) == ("web", nt.POD["ns"].ip)
    # Replies to local clients come from the address they asked.
    assert topo.udp_echo("a", "cl", nt.WEB_CLUSTER_IP, 53) == ("web", cl,
                                                                 (nt.WEB_CLUSTER_IP, 53))


def test_established_flow_survives_churn_restart_and_drift(
        harness: Harness, topo: nt.Topology, gateways: dict[str, Datapath]) -> None:
    flow = nt.wait_for("connection", lambda: topo.open_flow("a", "cl", WEB_B, 80))
    try:
        name, seen = flow.echo()
        assert name == "web" and seen in egress_ips("a", "cl")

        # 10,000 unrelated mappings added, then removed, on both gateways.
        for c, backend in gateways.items():
            result = backend.apply(nt.intent(c, extra_ingress=nt.bulk_mappings(c, 10_000)))
            assert len(result.diff.ingress_added) == 10_000
        assert flow.echo() == (name, seen)
        for c, backend in gateways.items():
            backend.apply(nt.intent(c))
        assert flow.echo() == (name, seen)

        # Controller restart: a fresh backend, same intent, full sync, nothing to change.
        before = {c: harness.snapshot(topo.gateway(c)) for c in gateways}
        for c in list(gateways):
            gateways[c] = harness.make(topo.gateway(c))
            assert gateways[c].apply(nt.intent(c)).operations == 0
            assert harness.snapshot(topo.gateway(c)) == before[c]
        assert flow.echo() == (name, seen)

        # Drift while nothing repairs: a request falls into the gap and is lost...
        harness.sabotage(topo.gateway("b"))
        sent = flow.retransmissions()
        flow.send()
        # The kernel retransmits it: a whole timeout passed without an ack, or an answer.
        nt.wait_for("the request retransmitted", lambda: flow.retransmissions() > sent)
        assert not select.select([flow.sock], [], [], 0)[0], "answered through the gap?"
        # ...then repair starts, converges within 2 s, and TCP's retransmission gets through.
        with harness.repairing(gateways["b"]):
            start = time.monotonic()
            nt.wait_for("drift repair", lambda: harness.snapshot(topo.gateway("b"))
                        == before["b"], timeout=2.0)
            assert time.monotonic() - start < 2.0
            assert flow.receive(timeout=5) == (name, seen)
        # Drift while the repair loop runs (the agent's normal state), mid-conversation.
        with harness.repairing(gateways["a"]):
            harness.sabotage(topo.gateway("a"))
            start = time.monotonic()
            flow.send()
            nt.wait_for("drift repair", lambda: harness.snapshot(topo.gateway("a"))
                        == before["a"], timeout=2.0)
            assert time.monotonic() - start < 2.0
            assert flow.receive(timeout=5) == (name, seen)
        assert flow.echo() == (name, seen)
    finally:
        flow.close()


def test_unsound_intent_is_refused_and_the_kernel_keeps_its_state(
        harness: Harness, topo: nt.Topology, gateways: dict[str, Datapath]) -> None:
    gw = topo.gateway("b")
    before = harness.snapshot(gw)
    extra = IngressMapping(nt.global_ip("b", "10.2"), "10.96.0.99",
                           IngressTarget.CLUSTER_IP_SERVICE, "GlobalIngressIP default/other")
    bad = {
        "outside the global CIDR": dataclasses.replace(extra, global_ip=GlobalIP("242.0.10.2")),
        "duplicate global IP": dataclasses.replace(extra, global_ip=WEB_B),
        "conflicting target": dataclasses.replace(extra, target_ip=nt.WEB_CLUSTER_IP),
    }
    for why, mapping in bad.items():
        for full in (False, True):
            with pytest.raises(IntentRejected):
                gateways["b"].apply(nt.intent("b", extra_ingress=(mapping,)), full=full)
            assert harness.snapshot(gw) == before, why
    # A fresh backend refuses too, before touching anything.
    with pytest.raises(IntentRejected):
        harness.make(gw).apply(nt.intent("b", extra_ingress=(bad["duplicate global IP"],)))
    assert harness.snapshot(gw) == before
    assert nt.wait_for("tcp echo", lambda: topo.tcp_echo("a", "cl", WEB_B, 80))[0] == "web"
    # And a sound change right after goes through.
    gateways["b"].apply(nt.intent("b", extra_ingress=(extra,)))
    assert harness.snapshot(gw) != before
