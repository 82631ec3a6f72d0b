"""Active/passive gateways in the lab, over VXLAN and WireGuard: two gateway nodes
per cluster, one active by the gateway Lease, the other a hot standby; failover
when the active one is cut off its underlay link or dies, and back.

A probe in c1's client pod opens a new TCP connection to c2's exported `web`
service (by global IP) every 50 ms (`lab.probe.ConnectProbe`); the gap is the longest time
between two answered probes around the event. The figures are printed (the
bench, `make bench-e2e`, measures them repeatedly); the tests assert the
behaviour: exactly one active gateway, traffic back, every node routing to the
new active gateway, nothing of the old one left in the way.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from datapath.nftables import read_mappings
from kube import names, resources
from kube.testing import await_condition
from lab import netns
from lab.globalnet import node_routes, routes_of
from lab.lab import Lab
from lab.probe import (
    ConnectProbe,
    Streams,
    echo_server_manifest,
    failures_around,
    gap_after,
    recovered,
)
from lab.topology import underlay_port
from tests.e2e.conftest import running_lab

pytestmark = [pytest.mark.e2e, pytest.mark.privileged]

# IPsec is not among them yet: 2 of 5 of its link-down failovers in `bench.failover`
# were followed by seconds of sporadic probe failures, measured before the passive
# gateway's conntrackd stopped writing into the active one's kernel (the cause of
# the same failures, connection resets, over VXLAN and WireGuard); not measured since.
@pytest.fixture(scope="module", params=("vxlan", "wireguard"))
def lab(lab_root: Path, request: pytest.FixtureRequest) -> Iterator[Lab]:
    """One lab per cable driver: every scenario over each (the SIGKILL one last, its
    node stays dead)."""
    with running_lab(lab_root, "f", globalnet=True, gateways=2,
                     cable_driver=request.param) as running:
        yield running


def active_gateway(lab: Lab, cluster: str) -> str:
    return lab.active_gateways().get(cluster, "")


def web_global_ip(lab: Lab) -> str:
    exports = lab.cluster("c2").client(resources.SERVICE_EXPORTS)
    if exports.get_or_none("web", namespace="default") is None:
        exports.create({"metadata": {"name": "web", "namespace": "default"}})
    giips = lab.cluster("c2").client(resources.GLOBAL_INGRESS_IPS)

    def allocated() -> str | None:
        obj = giips.get_or_none("web", namespace="default")
        return ((obj or {}).get("status") or {}).get("allocatedIP")

    return str(await_condition(allocated, timeout=30, message="a global IP for web"))


def probe(lab: Lab, ip: str, duration: float) -> ConnectProbe:
    """New connections from c1's client to `ip`, port 80, every 50 ms."""
    return ConnectProbe(lab.exec_argv("c1", "client", []), ip, duration)


def assert_one_active_and_routed(lab: Lab, cluster: str, dead: tuple[str, ...] = ()) -> str:
    """Exactly one active gateway (the Lease holder, the only Gateway saying so);
    every other node routes the remote global CIDRs to it; the passive gateway
    nodes hold no cable route. Nodes in `dead` (killed: their last word stays) are
    left out."""
    active = active_gateway(lab, cluster)
    assert active
    live = sorted(n.name for n in lab.plan.cluster(cluster).gateways if n.name not in dead)

    def statuses() -> dict[str, str]:
        return {g["metadata"]["name"]: (g.get("status") or {}).get("haStatus", "")
                for g in lab.cluster(cluster).client(resources.GATEWAYS).list(
                    namespace=names.CLUSTER_NAMESPACE).items
                if g["metadata"]["name"] not in dead}

    # Each live gateway node's engine reports (a standby's first report may still be on
    # its way when the lab is up): the Lease holder active, the others passive.
    wanted_statuses = {n: "active" if n == active else "passive" for n in live}
    await_condition(lambda: statuses() == wanted_statuses, timeout=10,
                    message=lambda: f"{active} active, the others passive: {statuses()}")
    assert lab.state is not None
    wanted = {ns: routes for ns, routes in
              node_routes(lab.plan, lab.state.global_cidrs, {cluster: active}).items()
              if ns.startswith(f"{lab.plan.prefix}{cluster}-")
              and not any(ns == n.netns for n in lab.plan.cluster(cluster).nodes
                          if n.name in dead)}

    def misrouted() -> dict[str, tuple[set[tuple[str, str]], set[tuple[str, str]]]]:
        """Node namespace -> (routes held, routes wanted), where they differ."""
        return {ns: (held, r) for ns, r in wanted.items() if (held := routes_of(ns)) != r}

    await_condition(lambda: not misrouted(), timeout=10,
                    message=lambda: f"every other node routing to {active}: {misrouted()}")
    for node in lab.plan.cluster(cluster).gateways:
        if node.name != active and node.name not in dead:
            routes = netns.run(node.netns, ["ip", "route", "show", "proto", "150"])
            assert routes.strip() == "", f"{node.name} still routes into its cable: {routes}"
    return active


def test_one_active_gateway_and_a_hot_standby(lab: Lab) -> None:
    """Both gateway nodes hold the same NAT mappings (the standby programs the
    leader's intent); only the active one translates toward the other clusters."""
    ip = web_global_ip(lab)
    for cluster in ("c1", "c2"):
        active = assert_one_active_and_routed(lab, cluster)
        by_node = {}
        for node in lab.plan.cluster(cluster).gateways:
            def programmed(ns: str = node.netns) -> set[str]:
                return {m.global_ip for m in read_mappings(ns) if m.direction == "ingress"}

            if cluster == "c2":
                def has_web(f: Callable[[], set[str]] = programmed) -> bool:
                    return ip in f()

                await_condition(has_web, timeout=20, message=f"{ip} programmed on {node.name}")
            by_node[node.name] = programmed()
            remote = netns.run(node.netns, ["nft", "-j", "list", "set", "inet", "globalnet",
                                            "remote-global-cidrs"])
            elements = json.loads(remote)["nftables"][1]["set"].get("elem", [])
            assert bool(elements) == (node.name == active), (node.name, active, elements)
        assert len({frozenset(v) for v in by_node.values()}) == 1, by_node


def test_failover_when_the_active_gateway_loses_its_underlay_link_and_back(lab: Lab) -> None:
    """The active gateway of c2 is cut off the underlay (its API server still
    answers it): it steps down at once, the standby takes the Lease, c1's cable
    follows the new Endpoint, c2's route agents the new next hop. Then the same
    to the new active gateway, with the first one's link back: failback."""
    ip = web_global_ip(lab)
    c2 = lab.plan.cluster("c2")
    for round_ in ("failover", "failback"):
        first = assert_one_active_and_routed(lab, "c2")
        port = underlay_port(c2, next(n for n in c2.gateways if n.name == first))
        running = probe(lab, ip, 8.0)
        time.sleep(3.0)
        cut = time.time()
        netns.run(lab.plan.underlay_netns, ["ip", "link", "set", port, "down"])
        try:
            results = running.results()
            assert recovered(results, cut), failures_around(results, cut)
            second = assert_one_active_and_routed(lab, "c2")
            assert second != first
            print(f"\n{round_}, underlay link of {first} down: gap "
                  f"{gap_after(results, cut):.3f} s, {second} active")
        finally:
            netns.run(lab.plan.underlay_netns, ["ip", "link", "set", port, "up"])


def test_established_connections_survive_a_failover(lab: Lab) -> None:
    """Connections from c1 to an echo server in c2 keep echoing when c2's active
    gateway loses its underlay link: the standby's kernel holds their conntrack
    state (replicated by conntrackd) and tracked nothing of them itself while
    passive. The server runs on the standby gateway node, the hard case: the
    connections pass through it before the failover."""
    active = assert_one_active_and_routed(lab, "c2")
    standby = next(n.name for n in lab.plan.cluster("c2").gateways if n.name != active)
    subprocess.run(lab.kubectl_argv("c2", ["apply", "-f", "-"]), check=True,
                   capture_output=True, text=True, input=echo_server_manifest(node=standby))
    await_condition(lambda: any(p.name == "echo" and p.pid for p in lab.pods("c2")),
                    timeout=60, message="the echo server running")
    exports = lab.cluster("c2").client(resources.SERVICE_EXPORTS)
    exports.create({"metadata": {"name": "echo", "namespace": "default"}})
    giips = lab.cluster("c2").client(resources.GLOBAL_INGRESS_IPS)
    ip = str(await_condition(lambda: ((giips.get_or_none("echo", namespace="default") or {})
                                      .get("status") or {}).get("allocatedIP"),
                             timeout=30, message="a global IP for echo"))
    gateways = lab.cluster("c2").client(resources.GATEWAYS)
    for node in (active, standby):
        await_condition(lambda n=node: ((gateways.get_or_none(n, namespace=names.CLUSTER_NAMESPACE)
                                         or {}).get("status") or {}).get(
            "conntrackSync", {}).get("state") == "running", timeout=30,
            message=f"conntrack sync running on {node}")
    time.sleep(2.0)  # the echo mapping programmed on both gateways
    c2 = lab.plan.cluster("c2")
    port = underlay_port(c2, next(n for n in c2.gateways if n.name == active))
    streams = Streams(lab.exec_argv("c1", "client", []), ip, 10)
    try:
        time.sleep(3.0)
        netns.run(lab.plan.underlay_netns, ["ip", "link", "set", port, "down"])
        try:
            await_condition(lambda: active_gateway(lab, "c2") == standby, timeout=20,
                            message=f"{standby} active")
            time.sleep(4.0)
        finally:
            netns.run(lab.plan.underlay_netns, ["ip", "link", "set", port, "up"])
    finally:
        reports = streams.stop()
    alive = [r for r in reports if r["error"] is None and r["echoed"] > 0]
    print(f"\n{len(alive)}/{len(reports)} established connections survived the failover; "
          f"longest wait {max(r['worst_s'] for r in reports):.2f} s")
    assert len(alive) == len(reports), reports


def test_failover_when_every_process_of_the_active_gateway_node_is_killed(lab: Lab) -> None:
    """SIGKILL of kubelet, containerd and every container of c2's active gateway
    node (last in the module: the node stays dead). c2's web pods are moved off it
    first, so the gap is the gateway's, not a dead backend's."""
    ip = web_global_ip(lab)
    victim = assert_one_active_and_routed(lab, "c2")
    kubectl = lab.kubectl_argv
    subprocess.run(kubectl("c2", ["cordon", victim]), check=True, capture_output=True)
    for pod in [p for p in lab.pods("c2") if p.app == "web" and p.node == victim]:
        subprocess.run(kubectl("c2", ["delete", "pod", pod.name, "--wait=true"]), check=True,
                       capture_output=True, timeout=60)

    def web_ready() -> bool:
        pods = [p for p in lab.pods("c2") if p.app == "web"]
        return len(pods) == 2 and all(p.pid and p.node != victim for p in pods)

    await_condition(web_ready, timeout=60, message="c2's web pods off the victim node")
    await_condition(lambda: subprocess.run(
        lab.exec_argv("c1", "client", ["curl", "-s", "--max-time", "2", f"http://{ip}/"]),
        capture_output=True, text=True).stdout.startswith("hello"), timeout=30,
        message="web answering c1 again")
    running = probe(lab, ip, 8.0)
    time.sleep(3.0)
    killed_at = time.time()
    assert lab.kill_node("c2", victim)
    results = running.results()
    assert recovered(results, killed_at), failures_around(results, killed_at)
    survivor = assert_one_active_and_routed(lab, "c2", dead=(victim,))
    assert survivor != victim
    print(f"\nevery process of {victim} killed: gap {gap_after(results, killed_at):.3f} s, "
          f"{survivor} active")
