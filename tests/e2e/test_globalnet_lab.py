"""Globalnet and Lighthouse end to end in the lab: two clusters with identical
CIDRs reach each other's exported services by global IP and by clusterset name.

Everything is real: API servers, the Broker's CIDR allocation, the Globalnet
agent on each gateway node programming nftables or eBPF (every scenario runs
against a lab of each backend: `[nftables]`, `[ebpf]`), kube-proxy (iptables mode) on
every node, the Lighthouse agent and DNS server on each gateway node (pods'
resolv.conf names it), the gateway engine with its VXLAN cable between the
gateways, route agents on every node, kubelet and containerd on every node
running the demo Deployments (web: gn-echo on port 80, client).
Address conventions: lab/topology.py; global CIDRs come from the Broker's
242.0.0.0/8 in /16 slices.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import netaddr
import pytest

from datapath import ipsec, vxlan, wireguard
from datapath.ebpf import tc
from datapath.ebpf.inspect import bpf_mounts
from datapath.ebpf.inspect import read_mappings as ebpf_mappings
from datapath.netns import NETNS_DIR
from datapath.nftables import read_mappings
from deploy import manifests as m
from globalnet.broker import BrokerGlobalnet
from kube import names, resources
from kube.client import new_api_client
from kube.testing import await_condition
from lab import netns
from lab.lab import Lab
from lab.ports import free_port_block
from lab.state import StateStore
from lab.topology import LabSpec, plan_lab, underlay_port
from tests.e2e.conftest import running_lab, unique_lab_name

pytestmark = [pytest.mark.e2e, pytest.mark.privileged]


# Every scenario on a lab of each backend and of each cable driver (eBPF needs an
# Ethernet cable device: VXLAN's).
LAB_KINDS = [("nftables", "vxlan"), ("ebpf", "vxlan"), ("nftables", "wireguard"),
             ("nftables", "ipsec")]


@pytest.fixture(scope="module", params=LAB_KINDS, ids=["-".join(k) for k in LAB_KINDS])
def lab(lab_root: Path, request: pytest.FixtureRequest) -> Iterator[Lab]:
    """One lab per (backend, cable driver) for the whole module (tests are grouped
    by it)."""
    datapath, driver = request.param
    with running_lab(lab_root, "g", globalnet=True, datapath=datapath,
                     cable_driver=driver) as running:
        yield running


CABLE_DEVICES = {"vxlan": vxlan.IFNAME, "wireguard": wireguard.IFNAME, "ipsec": "ipsec0"}
# What a cable puts on the underlay between gateways (UDP ports, both ways): IPsec
# is IKE and ESP in UDP, never bare ESP.
TUNNEL_PORTS = {"vxlan": (vxlan.PORT,), "wireguard": (wireguard.PORT,),
                "ipsec": (ipsec.IKE_PORT, ipsec.NATT_PORT)}


def cable_driver_of(lab: Lab) -> str:
    assert lab.state is not None
    return lab.state.spec.cable_driver


def datapath_of(lab: Lab) -> str:
    assert lab.state is not None
    return lab.state.spec.datapath


def installed_global_ips(lab: Lab, cluster: str) -> set[str]:
    """The ingress global IPs in the kernel of `cluster`'s gateway, read the way the
    lab's backend keeps them."""
    gateway = lab.plan.cluster(cluster).gateway.netns
    if datapath_of(lab) == "ebpf":
        assert lab.state is not None
        # The agent pod's pins, found through a process in the gateway's namespace.
        return {r.global_ip for r in ebpf_mappings(netns=gateway)}
    return {r.global_ip for r in read_mappings(gateway) if r.direction == "ingress"}


def gnctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True,
                          text=True, timeout=60)


def show_nat(lab: Lab, cluster: str) -> Any:
    """`gnctl show nat --datapath BACKEND --netns GATEWAY -o json`, as a user runs it."""
    res = gnctl("show", "nat", "--datapath", datapath_of(lab), "--netns",
                lab.plan.cluster(cluster).gateway.netns, "-o", "json")
    assert res.returncode == 0, (res.stdout, res.stderr)
    return json.loads(res.stdout)


def export(lab: Lab, cluster: str, service: str) -> str:
    """Export `service` and return the global IP Globalnet gives it."""
    exports = lab.cluster(cluster).client(resources.SERVICE_EXPORTS)
    if exports.get_or_none(service, namespace="default") is None:
        exports.create({"metadata": {"name": service, "namespace": "default"}})
    giips = lab.cluster(cluster).client(resources.GLOBAL_INGRESS_IPS)

    def allocated() -> str | None:
        obj = giips.get_or_none(service, namespace="default")
        return ((obj or {}).get("status") or {}).get("allocatedIP")

    return str(await_condition(allocated, timeout=30, message=f"a global IP for {service}"))


def egress_ips(lab: Lab, cluster: str) -> set[str]:
    obj = lab.cluster(cluster).client(resources.CLUSTER_GLOBAL_EGRESS_IPS).get(
        names.CLUSTER_EGRESS_NAME)
    return set(obj["status"]["allocatedIPs"])


def curl(lab: Lab, cluster: str, url: str, max_time: float = 2) -> subprocess.CompletedProcess[str]:
    argv = lab.exec_argv(cluster, "client", ["curl", "-s", "--max-time", str(max_time), url])
    return subprocess.run(argv, capture_output=True, text=True, timeout=20)


def web_pods(lab: Lab, cluster: str) -> list[str]:
    return [p.name for p in lab.pods(cluster) if p.app == "web"]


def cluster_ip(lab: Lab, cluster: str, service: str) -> str:
    svc = lab.cluster(cluster).client(resources.SERVICES).get(service, namespace="default")
    return str(svc["spec"]["clusterIP"])


def web_log(lab: Lab, cluster: str, pod: str) -> str:
    """The pod's log (`kubectl logs`): gn-echo logs `client=IP:PORT "GET ..."`."""
    return subprocess.run(lab.kubectl_argv(cluster, ["logs", pod]), capture_output=True,
                          text=True, timeout=30).stdout


def clients_seen(log: str) -> set[str]:
    return {line.split()[0].removeprefix("client=").rsplit(":", 1)[0]
            for line in log.splitlines() if '"GET /' in line}


def members_in(lab: Lab, cluster: str) -> set[str]:
    items = lab.cluster(cluster).client(resources.CLUSTERS).list(
        namespace=names.CLUSTER_NAMESPACE).items
    return {c["metadata"]["name"] for c in items}


def test_clusters_get_disjoint_global_cidrs_from_the_broker(lab: Lab) -> None:
    status = lab.status()
    cidrs = {c["name"]: c["global_cidr"] for c in status["clusters"]}
    nets = [netaddr.IPNetwork(c) for c in cidrs.values()]
    assert all(n in netaddr.IPNetwork("242.0.0.0/8") and n.prefixlen == 16 for n in nets), cidrs
    assert not nets[0].first <= nets[1].last or not nets[1].first <= nets[0].last, cidrs
    info = BrokerGlobalnet(new_api_client(lab.broker_kubeconfig())).read()
    assert info is not None
    assert info.clusters == {k: (v,) for k, v in cidrs.items()}
    # gnctl join installed the agents as pods: the gateway DaemonSet's pod (engine,
    # Broker syncer, Globalnet) on the gateway node, a route agent on every node, one
    # Lighthouse agent; every container ready, none a bare process of the lab.
    for c in lab.plan.clusters:
        expected = sorted(
            [(m.GATEWAY_DAEMONSET, c.gateway.name), (m.LIGHTHOUSE_DEPLOYMENT, ANY_NODE),
             *((m.ROUTE_AGENT_DAEMONSET, n.name) for n in c.nodes)])
        await_agent_pods(lab, c.name, expected)
        pods = agent_pods(lab, c.name)
        assert sorted(pods) == expected, pods
        bare = {"globalnet", "engine", "syncer", "lighthouse", "routeagent"}
        assert not [p["name"] for p in status["processes"]
                    if p["name"].rsplit("/", 1)[-1].split("-")[0] in bare]
    # Each gateway runs the lab's backend, and only that one.
    assert {c["datapath"] for c in status["clusters"]} == {datapath_of(lab)}
    for c in lab.plan.clusters:
        gw = c.gateway.netns
        nft_table = subprocess.run(netns.exec_argv(gw, ["nft", "list", "table", "inet",
                                                        "globalnet"]), capture_output=True)
        filters = {d: tc.attached(gw, CABLE_DEVICES[cable_driver_of(lab)], d)
                   for d in ("ingress", "egress")}
        if datapath_of(lab) == "ebpf":
            assert nft_table.returncode != 0, "an eBPF gateway has no nftables NAT table"
            assert all(f is not None for f in filters.values()), filters
        else:
            assert nft_table.returncode == 0
            assert all(f is None for f in filters.values()), filters
    # c1 joined first; the Broker syncer told it of c2.
    for name in cidrs:
        def complete(cluster: str = name) -> bool:
            return members_in(lab, cluster) == set(cidrs)

        await_condition(complete, timeout=20, message=f"every member's Cluster object in {name}")


@pytest.mark.parametrize(("client", "server"), [("c1", "c2"), ("c2", "c1")])
def test_an_exported_service_answers_the_other_cluster_on_its_global_ip(
        lab: Lab, client: str, server: str) -> None:
    ip = export(lab, server, "web")
    assert lab.state is not None
    assert netaddr.IPAddress(ip) in netaddr.IPNetwork(lab.state.global_cidrs[server])
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    # kube-proxy on the server's gateway picks a backend at random: one web pod
    # lives on the gateway node, the other on the other node; both must answer.
    backends = set(web_pods(lab, server))
    while seen != backends and time.monotonic() < deadline:
        out = curl(lab, client, f"http://{ip}/").stdout
        if out.startswith(f"hello from {server}/"):
            seen.add(out.strip().rsplit("/", 1)[1])
        else:
            time.sleep(0.3)
    assert seen == backends and len(seen) == 2
    # The backends saw the client cluster's global egress IP, not a node address
    # or the client's own (overlapping) pod IP.
    sources = {ip for pod in backends for ip in clients_seen(web_log(lab, server, pod))}
    client_pod_ip = lab.pod(client, "client").ip
    assert sources & egress_ips(lab, client), sources
    assert client_pod_ip not in sources


def resolve(lab: Lab, cluster: str, name: str) -> str | None:
    """What the client pod of `cluster` resolves `name` to (its resolver is the
    cluster's Lighthouse DNS server)."""
    out = subprocess.run(lab.exec_argv(cluster, "client", ["getent", "ahostsv4", name]),
                         capture_output=True, text=True, timeout=20).stdout
    return out.split()[0] if out else None


def test_clusterset_names_resolve_to_where_the_service_is_reachable(lab: Lab) -> None:
    """Both clusters export web (the test above): a client gets its own cluster's
    ClusterIP for the plain name, and the other cluster's global IP for the
    cluster-specific name; both answer over HTTP."""
    c2_global = export(lab, "c2", "web")
    export(lab, "c1", "web")
    plain, pinned = "web.default.svc.clusterset.local", "c2.web.default.svc.clusterset.local"
    await_condition(lambda: resolve(lab, "c1", pinned) == c2_global, timeout=30,
                    message=f"{pinned} -> {c2_global}")
    assert resolve(lab, "c1", plain) == cluster_ip(lab, "c1", "web")
    for name, server in ((plain, "c1"), (pinned, "c2")):
        out = curl(lab, "c1", f"http://{name}/", max_time=3).stdout
        assert out.startswith(f"hello from {server}/"), (name, out)


def test_the_clusterset_ip_is_answered_in_dns_and_routed_to_the_exporting_cluster(
        lab: Lab) -> None:
    """c2 alone exports `webvip` (web's pods) asking for its ClusterSetIP in DNS: c1's
    client resolves the clusterset name to the VIP (the aggregated ServiceImport's
    ips), its connections to the VIP reach c2's pods through the gateways (each
    node's VIP table, from the VIP table ConfigMap the Lighthouse agent writes), the
    node answers ping to the VIP, and the per-cluster name keeps c2's global IP.
    Unexported, the VIP leaves c1's nodes."""
    c2 = lab.cluster("c2")
    services = c2.client(resources.SERVICES)
    if services.get_or_none("webvip", namespace="default") is None:
        services.create({"metadata": {"name": "webvip", "namespace": "default"},
                         "spec": {"selector": {"app": "web"}, "ports": [
                             {"name": "http", "port": 80, "targetPort": 80,
                              "protocol": "TCP"}]}})
    exports = c2.client(resources.SERVICE_EXPORTS)
    exports.create({"metadata": {"name": "webvip", "namespace": "default", "annotations": {
        names.USE_CLUSTERSET_IP_ANNOTATION: "true"}}})
    try:
        global_ip = export(lab, "c2", "webvip")
        imports = lab.cluster("c1").client(resources.SERVICE_IMPORTS)
        vip = str(await_condition(
            lambda: ((imports.get_or_none("webvip", namespace="default") or {}).get("spec")
                     or {}).get("ips", [None])[0], timeout=60,
            message="c1's ServiceImport of webvip with its VIP"))
        name = "webvip.default.svc.clusterset.local"
        await_condition(lambda: resolve(lab, "c1", name) == vip, timeout=30,
                        message=f"{name} -> {vip}")
        assert resolve(lab, "c1", f"c2.{name}") == global_ip
        await_condition(lambda: curl(lab, "c1", f"http://{name}/").stdout.startswith(
            "hello from c2/"), timeout=30, message=f"c2's web answering c1 at {vip}")
        for _ in range(5):
            assert curl(lab, "c1", f"http://{vip}/").stdout.startswith("hello from c2/")
        ping = subprocess.run(lab.exec_argv("c1", "client", [
            "ping", "-c", "1", "-W", "2", vip]), capture_output=True, text=True, timeout=20)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        for node in lab.plan.cluster("c1").nodes:
            listing = netns.run(node.netns, ["nft", "list", "table", "ip",
                                             "globalnet-clusterset-ip"])
            assert f"dnat to {global_ip}" in listing, (node.name, listing)
    finally:
        exports.delete_if_exists("webvip", namespace="default")
    node = lab.plan.cluster("c1").nodes[0]

    def vip_gone() -> bool:
        return global_ip not in netns.run(node.netns, ["nft", "list", "tables"], check=False) \
            + netns.run(node.netns, ["nft", "list", "ruleset"], check=False)

    await_condition(vip_gone, timeout=30, message=f"webvip's VIP gone from {node.name}")


def test_unexporting_withdraws_the_global_ip_from_the_gateway(lab: Lab) -> None:
    ip = export(lab, "c2", "web")
    await_condition(lambda: curl(lab, "c1", f"http://{ip}/").stdout.startswith("hello"),
                    timeout=30, message="web reachable while exported")
    # `gnctl show nat` on the gateway shows the mapping (eBPF: with its counters,
    # the bpffs found without --bpffs).
    shown = show_nat(lab, "c2")
    if datapath_of(lab) == "ebpf":
        rows = [r for r in shown["mappings"] if r["global_ip"] == ip]
        assert rows and all(r["local"] == cluster_ip(lab, "c2", "web") for r in rows), shown
        assert sum(r["packets_in"] for r in rows) > 0 and sum(
            r["packets_out"] for r in rows) > 0, rows
    else:
        assert any(r["global_ip"] == ip and r["direction"] == "ingress" for r in shown), shown
    lab.cluster("c2").client(resources.SERVICE_EXPORTS).delete("web", namespace="default")
    await_condition(lambda: ip not in installed_global_ips(lab, "c2"),
                    timeout=30, message="the mapping gone from the gateway's kernel")
    assert curl(lab, "c1", f"http://{ip}/", max_time=1).stdout == ""


def test_the_remote_gateway_answers_its_health_check_ip(lab: Lab) -> None:
    nodes = lab.cluster("c2").client(resources.NODES)
    gateway = lab.plan.cluster("c2").gateway.name

    def health_ip() -> Any:
        return nodes.get(gateway)["metadata"].get("annotations", {}).get(
            names.GATEWAY_GLOBAL_IP_ANNOTATION)

    ip = await_condition(health_ip, timeout=30, message="a health-check IP on c2's gateway")
    ping = lab.exec_argv("c1", "client", ["ping", "-c", "1", "-W", "1", ip])
    await_condition(lambda: subprocess.run(ping, capture_output=True).returncode == 0,
                    timeout=20, message=f"ping {ip} answered")


ANY_NODE = "*"


def agent_pods(lab: Lab, cluster: str) -> list[tuple[str, str]]:
    """(app name, node) of every agent pod whose containers are all ready ("*" for the
    Lighthouse agent's node: the scheduler picks it)."""
    out = []
    for pod in lab.cluster(cluster).client(resources.PODS).list(
            namespace=names.CLUSTER_NAMESPACE).items:
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        if not statuses or not all(cs.get("ready") for cs in statuses):
            continue
        app = pod["metadata"]["labels"][m.NAME_LABEL]
        out.append((app, ANY_NODE if app == m.LIGHTHOUSE_DEPLOYMENT else pod["spec"]["nodeName"]))
    return out


def await_agent_pods(lab: Lab, cluster: str, expected: list[tuple[str, str]]) -> None:
    """Awaited, not read once: a container the kubelet is restarting is briefly not
    ready; the message says which one and why it last stopped."""
    await_condition(lambda: sorted(agent_pods(lab, cluster)) == expected, timeout=60,
                    interval=0.5, message=lambda: (
                        f"{cluster}: ready agent pods {agent_pods(lab, cluster)}, not "
                        f"{expected}; containers: {agent_container_states(lab, cluster)}"))


def agent_container_states(lab: Lab, cluster: str) -> list[str]:
    """Each agent container's node, readiness, restarts and last termination."""
    out = []
    for pod in lab.cluster(cluster).client(resources.PODS).list(
            namespace=names.CLUSTER_NAMESPACE).items:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            last = (cs.get("lastState") or {}).get("terminated") or {}
            out.append(f"{pod['spec'].get('nodeName')}/{cs.get('name')} ready={cs.get('ready')} "
                       f"restarts={cs.get('restartCount')} last exit={last.get('exitCode')} "
                       f"{last.get('reason') or ''}".strip())
    return out


def agent_pids(netns_name: str, module: str) -> list[int]:
    """PIDs of `python3 -m MODULE` processes (agent containers) in a node's namespace."""
    wanted = (NETNS_DIR / netns_name).stat().st_ino
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if module.encode() in argv and (proc / "ns" / "net").stat().st_ino == wanted:
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_lab_down_stops_the_agents(lab_root: Path) -> None:
    """A separate small lab: down removes the agents' containers with the nodes."""
    name = unique_lab_name("h")
    small = Lab(name, root=lab_root)
    spec = LabSpec(name=name, clusters=2, nodes=1, api_port_base=free_port_block(3),
                   globalnet=True)
    try:
        small.up(spec, workload=False, progress=lambda *_: None)
        agents = [pid for c in small.plan.clusters
                  for pid in agent_pids(c.gateway.netns, "globalnet.agent")]
        assert len(agents) == 2
    finally:
        small.down(progress=lambda *_: None)
    assert not [pid for pid in agents if Path(f"/proc/{pid}").exists()]
    assert not netns.list_names(f"gn-{name}-")


def test_lab_down_cleans_up_even_after_a_killed_up(lab_root: Path) -> None:
    """`gnctl lab up --globalnet --datapath ebpf` killed once its agents run: `lab
    down` stops them and deletes the namespaces; the host gains no bpffs (each node's
    is private to the node's mount namespace and goes with it)."""
    name = unique_lab_name("x")
    env = {**os.environ, "GLOBALNET_LAB_DIR": str(lab_root)}
    before = [mnt for mnt in bpffs_mounts() if not mnt.startswith(str(lab_root))]
    up = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "lab", "up", "--name", name, "--clusters", "2",
         "--nodes", "1", "--no-workload", "--api-port", str(free_port_block(3)),
         "--globalnet", "--datapath", "ebpf"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = StateStore(name, lab_root)
    agents: list[int] = []
    gateways = [c.gateway.netns for c in plan_lab(LabSpec(
        name=name, clusters=2, nodes=1, globalnet=True)).clusters]
    try:
        def agents_running() -> bool:
            found = [pid for ns in gateways if Path(NETNS_DIR / ns).exists()
                     for pid in agent_pids(ns, "globalnet.agent")]
            agents[:] = found
            return len(found) == 2

        await_condition(agents_running, timeout=240, interval=0.2,
                        message="both eBPF agents started")
        assert all("--datapath=ebpf" in Path(f"/proc/{pid}/cmdline").read_text().split("\0")
                   for pid in agents)
        assert store.load() is not None
        up.send_signal(signal.SIGKILL)
        up.wait()
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
        down = subprocess.run([sys.executable, "-m", "cli.main", "lab", "down", "--name", name],
                              env=env, capture_output=True, text=True, timeout=180)
    assert down.returncode == 0, down.stderr
    assert not [pid for pid in agents if Path(f"/proc/{pid}").exists()]
    assert not netns.list_names(f"gn-{name}-")
    assert not [mnt for mnt in bpffs_mounts() if mnt.startswith(str(lab_root / name))]
    assert [mnt for mnt in bpffs_mounts() if not mnt.startswith(str(lab_root))] == before
    assert not (lab_root / name).exists()


def bpffs_mounts() -> list[str]:
    return [str(p) for p in bpf_mounts()]


def pod_curl(lab: Lab, cluster: str, pod: str, url: str) -> str:
    argv = lab.exec_argv(cluster, pod, ["curl", "-s", "--max-time", "2", url])
    return subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout


def test_headless_pods_have_their_own_global_ips_both_ways(lab: Lab) -> None:
    """A headless service of c2 exported: each pod gets a global IP, the clusterset
    name resolves to them in c1, each answers there - and a pod's own connections
    to c1 leave with that same global IP (1:1, not the cluster egress IPs)."""
    c2 = lab.cluster("c2")
    c2.client(resources.SERVICES).create({
        "metadata": {"name": "webhl", "namespace": "default"},
        "spec": {"clusterIP": "None", "selector": {"app": "web"},
                 "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
    c2.client(resources.SERVICE_EXPORTS).create(
        {"metadata": {"name": "webhl", "namespace": "default"}})
    giips = c2.client(resources.GLOBAL_INGRESS_IPS)
    c2_web = web_pods(lab, "c2")
    web0 = c2_web[0]

    def pod_ips() -> dict[str, str] | None:
        found = {g["metadata"]["name"]: (g.get("status") or {}).get("allocatedIP")
                 for g in giips.list(namespace="default").items
                 if g["spec"].get("target") == "HeadlessServicePod"}
        return found if set(found) == {f"pod-{p}" for p in c2_web} and all(
            found.values()) else None

    ips = await_condition(pod_ips, timeout=30, message="a global IP per web pod")
    assert ips is not None
    name = "webhl.default.svc.clusterset.local"

    def resolved() -> set[str] | None:
        out = subprocess.run(lab.exec_argv("c1", "client", ["getent", "ahostsv4", name]),
                             capture_output=True, text=True, timeout=20).stdout
        got = {line.split()[0] for line in out.splitlines()}
        return got if got == set(ips.values()) else None

    await_condition(resolved, timeout=30, message=f"{name} -> both pods' global IPs")
    for pod, ip in ips.items():
        out = curl(lab, "c1", f"http://{ip}/", max_time=3).stdout
        assert out.strip() == f"hello from c2/{pod.removeprefix('pod-')}", (pod, out)

    # A web pod of c2 calls c1's exported web: c1's backends see its own global IP.
    c1_web = export(lab, "c1", "web")
    out = pod_curl(lab, "c2", web0, f"http://{c1_web}/")
    assert out.startswith("hello from c1/"), out
    seen = {ip for pod in web_pods(lab, "c1") for ip in clients_seen(web_log(lab, "c1", pod))}
    assert ips[f"pod-{web0}"] in seen, seen


def test_a_namespace_egress_ip_is_what_remote_servers_see(lab: Lab) -> None:
    """A GlobalEgressIP for c1's namespace replaces the cluster egress IPs for its pods."""
    c1 = lab.cluster("c1")
    egress = c1.client(resources.GLOBAL_EGRESS_IPS)
    egress.create({"metadata": {"name": "ns-egress", "namespace": "default"},
                   "spec": {"numberOfIPs": 1}})
    try:
        def allocated() -> list[str] | None:
            obj = egress.get("ns-egress", namespace="default")
            return (obj.get("status") or {}).get("allocatedIPs") or None

        ns_ips = await_condition(allocated, timeout=30, message="the namespace's egress IP")
        assert ns_ips is not None and len(ns_ips) == 1
        target = export(lab, "c2", "web")
        before = {pod: len(web_log(lab, "c2", pod)) for pod in web_pods(lab, "c2")}

        def seen_from_namespace_ip() -> bool:
            curl(lab, "c1", f"http://{target}/")
            return any(f"client={ns_ips[0]}:" in web_log(lab, "c2", pod)[offset:]
                       for pod, offset in before.items())

        await_condition(seen_from_namespace_ip, timeout=30,
                        message=f"c2's web sees {ns_ips[0]}")
    finally:
        egress.delete_if_exists("ns-egress", namespace="default")


def gateway_status(lab: Lab, cluster: str) -> dict[str, Any]:
    gw = lab.cluster(cluster).client(resources.GATEWAYS).get(
        lab.plan.cluster(cluster).gateway.name, namespace=names.CLUSTER_NAMESPACE)
    return dict(gw.get("status") or {})


def test_gateways_are_connected_through_the_cable(lab: Lab) -> None:
    """Each active gateway reports the other connected (health ping with RTT, and
    the driver's own view), the remote global CIDR is routed into the cable, and
    a cable deleted by hand is rebuilt."""
    driver = cable_driver_of(lab)
    device = CABLE_DEVICES[driver]
    for cluster, other in (("c1", "c2"), ("c2", "c1")):
        status = gateway_status(lab, cluster)
        assert status["haStatus"] == "active"
        assert status["localEndpoint"]["backend"] == driver
        (conn,) = status["connections"]
        assert conn["status"] == "connected" and conn["endpoint"]["cluster_id"] == other
        assert conn["latencyRTT"]["last"].endswith("ms")
        assert conn["cable"]["driver"] == driver
        if driver == "wireguard":
            # No kernel WireGuard here: wireguard-go in the gateway pod's cable container.
            assert conn["cable"]["implementation"] == "wireguard-go"
            assert conn["cable"]["latestHandshake"] and conn["cable"]["rxBytes"] > 0
        if driver == "ipsec":
            # No kernel ESP here: charon's kernel-libipsec in the cable container.
            assert conn["cable"]["implementation"] == "charon (kernel-libipsec)"
            assert conn["cable"]["state"].startswith("ESTABLISHED")
        assert lab.state is not None
        route = netns.run(lab.plan.cluster(cluster).gateway.netns,
                          ["ip", "route", "show", lab.state.global_cidrs[other]])
        assert f"dev {device}" in route and "proto 150" in route, route
    # A route agent's route deleted by hand comes back at once (netlink notifications).
    node = lab.plan.cluster("c1").nodes[1].netns
    assert lab.state is not None
    c2_cidr = lab.state.global_cidrs["c2"]
    netns.run(node, ["ip", "route", "del", c2_cidr])
    await_condition(lambda: "proto 149" in netns.run(node, ["ip", "route", "show", c2_cidr]),
                    timeout=5, interval=0.1, message="the route agent's route back")
    ip = export(lab, "c2", "web")
    # VXLAN: the engine makes the device anew. WireGuard: wireguard-go exits with
    # its device, kubelet restarts the cable container, the engine configures it.
    netns.run(lab.plan.cluster("c1").gateway.netns, ["ip", "link", "del", device])
    await_condition(lambda: curl(lab, "c1", f"http://{ip}/").stdout.startswith("hello"),
                    timeout=30, message="traffic through a rebuilt cable")


def test_the_underlay_carries_only_the_tunnel_between_gateways(lab: Lab) -> None:
    """Counted on the wire, at the underlay bridge's port of c1's gateway while c1
    fetches from c2: every IPv4 packet between the gateways is the cable's (UDP to
    or from its port); the only other traffic on that port is the Broker's."""
    assert lab.state is not None and lab.plan.broker_ip is not None
    c1, c2 = lab.plan.cluster("c1"), lab.plan.cluster("c2")
    port = underlay_port(c1, c1.gateway)
    ports = ", ".join(str(p) for p in TUNNEL_PORTS[cable_driver_of(lab)])
    a, b = c1.gateway.underlay_ip, c2.gateway.underlay_ip
    table = "e2e-wire"
    subprocess.run(netns.exec_argv(lab.plan.underlay_netns, ["nft", "-f", "-"]), check=True,
                   text=True, input=(
        f"table netdev {table} {{\n"
        f"  counter tunnel {{ }}\n  counter other {{ }}\n"
        f"  chain in {{ type filter hook ingress device {port} priority 0; policy accept;\n"
        # The cable's packets (and ICMP errors about them, as while a cable device
        # is rebuilt) between the two gateways, the Broker's API: nothing else.
        f"    ip saddr {a} ip daddr {b} udp dport {{ {ports} }} counter name tunnel accept\n"
        f"    ip saddr {a} ip daddr {b} udp sport {{ {ports} }} counter name tunnel accept\n"
        f"    ip saddr {a} ip daddr {b} icmp type {{ destination-unreachable, time-exceeded }} "
        "accept\n"
        f"    ip daddr {lab.plan.broker_ip} accept\n"
        "    meta protocol ip counter name other\n"
        f"  }}\n}}\n"))
    try:
        ip = export(lab, "c2", "web")
        for _ in range(5):
            assert curl(lab, "c1", f"http://{ip}/").stdout.startswith("hello")

        def packets(name: str) -> int:
            out = json.loads(netns.run(lab.plan.underlay_netns, [
                "nft", "-j", "list", "counter", "netdev", table, name]))
            return int(next(x["counter"]["packets"] for x in out["nftables"]
                            if "counter" in x))

        assert packets("tunnel") >= 5 * 4, "the fetches crossed the underlay in the cable"
        assert packets("other") == 0, "something besides the cable and the Broker's API"
    finally:
        netns.run(lab.plan.underlay_netns, ["nft", "delete", "table", "netdev", table])
