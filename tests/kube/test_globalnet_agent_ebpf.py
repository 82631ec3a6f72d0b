"""The agent process with `--datapath ebpf`: established flows survive its restarts.

Two clusters with the same CIDRs (tests/netns/nat_topology.py). Cluster a's
gateway is programmed in this process (the eBPF backend, `nt.intent("a")`);
cluster b's by a real `python -m globalnet.agent --datapath ebpf --netns B-GW`
from API objects in the session's API server: a Service `web` (ClusterIP
10.96.0.10, the kube-proxy-shaped rules of the topology) exported, and a
Cluster object for a, which gives b its remote global CIDR.

Two established TCP flows are sampled continuously (one round trip every
10 ms each) while the agent is stopped (SIGTERM, then SIGKILL) and a fresh one
takes over:
  ingress  a/cl -> b's global IP of web (b's stateless rewrite, both ways);
  egress   b/cl, bound to port 700, -> a's web at 242.0.10.1: b's cluster
           egress group (8 global IPs for the whole cluster) translates it in
           the BPF connection table, and a port below 1024 is always replaced,
           so the far side sees a translated port only that table knows.
Checked: every request answered in order, no retransmission on either end,
the far side sees the same translated source address and port throughout,
the connection-table entry is the same one (its counters keep growing), and
the attached programs are the same (adopted from their pins, never reloaded).
Then `--uninstall` removes b's filters, programs and pins and nothing else:
not a foreign filter on the same device, not cluster a's pins in the same
bpffs, not a foreign pin or nftables table.
Address conventions: nat_topology.py; cluster b is "ebpf-b" (242.1.0.0/16).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from datapath.ebpf import EbpfDatapath, tc
from datapath.ebpf import names as n
from datapath.ebpf import structs as s
from datapath.ebpf.maps import PinnedMap, fdinfo, obj_get, obj_pin
from kube import crud, names, resources
from kube.testing import await_condition, temporary_namespace
from lab import netns
from tests.kube.agent_process import AgentProcess
from tests.netns import nat_topology as nt
from tests.netns.conformance import ebpf_bpffs

pytestmark = [pytest.mark.kube, pytest.mark.privileged]

CLUSTER_B = "ebpf-b"
GLOBAL_CIDR_B = f"{nt.GLOBAL['b']}.0.0/16"
LEASE_NS = "globalnet-agent-ebpf"
TUNNEL_DEV = "ul0"  # each gateway's device toward the router (the other cluster)
CLIENT_PORT = 700   # below names.PORT_MIN: the egress translation must pick another
WEB_A = str(nt.global_ip("a", "10.1"))


@dataclass
class Sampler:
    """Round trips on one flow every 10 ms in a thread, until stopped or one fails."""

    name: str
    flow: nt.EchoFlow
    samples: int = 0
    slowest: float = 0.0
    error: BaseException | None = None
    replies: set[tuple[str, str]] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            started = time.monotonic()
            try:
                self.replies.add(self.flow.echo(timeout=5))
            except BaseException as exc:
                self.error = exc
                return
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.samples += 1

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name=f"sample-{self.name}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def await_samples(self, count: int, what: str) -> None:
        target = self.samples + count
        await_condition(lambda: self.samples >= target or self.error is not None,
                        timeout=30, message=f"{count} round trips on {self.name} {what}")
        assert self.error is None, f"{self.name} failed {what}: {self.error!r}"


def far_side(topo: nt.Topology, cluster: str, pod: str, port: int,
             peer_ip: str) -> tuple[int, int]:
    """(peer port, retransmitted segments) of the one established connection the
    server in `pod` has on `port` from `peer_ip`, as the server's kernel sees it."""
    out = netns.run(topo.ns(cluster, pod),
                    ["ss", "-Htin", "state", "established", f"( sport = :{port} )"])
    found: list[tuple[int, int]] = []
    lines = out.splitlines()
    for i, line in enumerate(lines):
        fields = line.split()
        if len(fields) < 4 or not fields[-1].startswith(f"{peer_ip}:"):
            continue
        info = lines[i + 1] if i + 1 < len(lines) else ""
        m = re.search(r"\bretrans:\d+/(\d+)", info)
        found.append((int(fields[-1].rsplit(":", 1)[1]), int(m.group(1)) if m else 0))
    assert len(found) == 1, f"connections from {peer_ip} to {pod}:{port}: {out!r}"
    return found[0]


def attached_ids(ns: str) -> dict[str, int]:
    out = {}
    for direction in ("ingress", "egress"):
        a = tc.attached(ns, TUNNEL_DEV, direction)
        out[direction] = a.prog_id if a else 0
    return out


def ct_entry(bpffs: Path, gw: str, flow: nt.EchoFlow) -> s.CtValue | None:
    """The connection table's egress entry of `flow` (pod -> 242.0.10.1:80)."""
    pins = n.PinLayout(bpffs, n.scope_of(gw))
    table = PinnedMap(pins.map(n.CT), s.CtKey, s.CtValue)
    try:
        key = s.CtKey(saddr=s.be32(flow.local[0]), daddr=s.be32(WEB_A),
                      sport=s.be16(flow.local[1]), dport=s.be16(80), proto=6,
                      dir=int(n.CtDir.EGRESS), pad=0)
        return table.lookup(key)
    finally:
        table.close()


_libbpf = ctypes.CDLL("libbpf.so.1", use_errno=True)
_libbpf.bpf_prog_get_fd_by_id.argtypes = [ctypes.c_uint32]
_libbpf.bpf_map_get_fd_by_id.argtypes = [ctypes.c_uint32]


def bpf_object_exists(kind: str, object_id: int) -> bool:
    """Whether the kernel still has the program or map with this id."""
    get = _libbpf.bpf_prog_get_fd_by_id if kind == "prog" else _libbpf.bpf_map_get_fd_by_id
    fd = int(get(object_id))
    if fd < 0:
        return False
    os.close(fd)
    return True


def open_egress_flow(topo: nt.Topology) -> nt.EchoFlow:
    with netns.entered(topo.ns("b", "cl")):
        sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.settimeout(2)
    try:
        sock.bind(("0.0.0.0", CLIENT_PORT))
        sock.connect((WEB_A, 80))
    except OSError:
        sock.close()
        raise
    return nt.EchoFlow(sock)


@pytest.fixture
def topo() -> Iterator[nt.Topology]:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces and BPF")
    with nt.topology() as t:
        yield t


@pytest.fixture
def gateway_a(topo: nt.Topology) -> Iterator[EbpfDatapath]:
    backend = EbpfDatapath(netns=topo.gateway("a"), bpffs=ebpf_bpffs())
    backend.apply(nt.intent("a"))
    try:
        yield backend
    finally:
        backend.cleanup()


@pytest.fixture
def agent(control_plane: Any, topo: nt.Topology, tmp_path: Path) -> Iterator[AgentProcess]:
    a = AgentProcess(kubeconfig=control_plane.kubeconfig, netns=topo.gateway("b"),
                     log_dir=tmp_path, cluster_id=CLUSTER_B, global_cidr=GLOBAL_CIDR_B,
                     local_cidrs=(nt.POD_CIDR, nt.SERVICE_CIDR), lease_namespace=LEASE_NS,
                     datapath_args=("--datapath", "ebpf", "--bpffs", str(ebpf_bpffs())))
    try:
        yield a
    finally:
        a.stop()
        with contextlib.suppress(Exception):
            EbpfDatapath(netns=topo.gateway("b"), bpffs=ebpf_bpffs()).cleanup()


def test_established_flows_survive_agent_restarts_and_uninstall_removes_only_ours(
        api_client: Any, topo: nt.Topology, gateway_a: EbpfDatapath, agent: AgentProcess) -> None:
    services = crud.ResourceClient(api_client, resources.SERVICES)
    exports = crud.ResourceClient(api_client, resources.SERVICE_EXPORTS)
    giips = crud.ResourceClient(api_client, resources.GLOBAL_INGRESS_IPS)
    cgeips = crud.ResourceClient(api_client, resources.CLUSTER_GLOBAL_EGRESS_IPS)
    clusters = crud.ResourceClient(api_client, resources.CLUSTERS)
    gw_b = topo.gateway("b")
    bpffs = ebpf_bpffs()
    with temporary_namespace(api_client, "gwebpf") as ns:
        clusters.create({"apiVersion": "submariner.io/v1", "kind": "Cluster",
                         "metadata": {"name": "ebpf-a", "namespace": ns},
                         "spec": {"cluster_id": "ebpf-a",
                                  "global_cidr": [f"{nt.GLOBAL['a']}.0.0/16"]}})
        services.create({"metadata": {"name": "web", "namespace": ns},
                         "spec": {"clusterIP": nt.WEB_CLUSTER_IP,
                                  "ports": [{"port": 80, "protocol": "TCP"}]}})
        exports.create({"metadata": {"name": "web", "namespace": ns}})
        agent.start()

        def web_global_ip() -> str | None:
            obj = giips.get_or_none("web", namespace=ns)
            return ((obj or {}).get("status") or {}).get("allocatedIP")

        def egress_ips() -> list[str] | None:
            # Cluster-scoped and shared by every agent test: wait for b's own addresses.
            obj = cgeips.get_or_none(names.CLUSTER_EGRESS_NAME)
            ips = ((obj or {}).get("status") or {}).get("allocatedIPs") or []
            ours = [ip for ip in ips if ip.startswith(f"{nt.GLOBAL['b']}.")]
            return ours if ours and len(ours) == len(ips) else None

        try:
            web_b = str(await_condition(web_global_ip, timeout=60, message="web's global IP"))
            egress_b = set(await_condition(egress_ips, timeout=60,
                                           message="the cluster egress IPs") or ())
            ingress = Sampler("ingress", nt.wait_for(
                "the ingress flow", lambda: topo.open_flow("a", "cl", web_b, 80),
                timeout=60, step=0.2))
        except AssertionError as exc:
            pytest.fail(f"{exc}\nagent log:\n{agent.log()}")
        egress = Sampler("egress", nt.wait_for("the egress flow",
                                               lambda: open_egress_flow(topo), timeout=30))
        samplers = (ingress, egress)
        try:
            a_egress_ips = {str(ip) for g in nt.intent("a").egress for ip in g.global_ips}
            name, seen_by_b = ingress.flow.echo()
            assert name == "web" and seen_by_b in a_egress_ips
            name, seen_by_a = egress.flow.echo()
            assert name == "web" and seen_by_a in egress_b, (seen_by_a, egress_b)
            translation = ct_entry(bpffs, gw_b, egress.flow)
            assert translation is not None, "no connection-table entry for the egress flow"
            assert s.ip_of(translation.addr) == seen_by_a
            port = s.port_of(translation.port)
            assert port != CLIENT_PORT and port >= n.PORT_MIN
            egress_peer = far_side(topo, "a", "web", 8080, seen_by_a)
            assert egress_peer[0] == port
            ingress_peer = far_side(topo, "b", "web", 8080, seen_by_b)
            ids = attached_ids(gw_b)
            assert all(ids.values()), ids
            # (A SYN sent while the agent was still programming may have been retransmitted.)
            sent = {x.name: x.flow.retransmissions() for x in samplers}
            for x in samplers:
                x.start()

            for sig in (signal.SIGTERM, signal.SIGKILL):
                packets = translation.packets
                agent.stop(sig)
                for x in samplers:
                    x.await_samples(20, f"with no agent running after {sig.name}")
                agent.start()
                try:
                    await_condition(lambda: agent.applied_intents() >= 1, timeout=60,
                                    interval=0.1,
                                    message=f"the agent restarted after {sig.name} applying "
                                            "its first intent")
                except AssertionError as exc:
                    pytest.fail(f"{exc}\nagent log:\n{agent.log()}")
                for x in samplers:
                    x.await_samples(20, f"after the new agent's first full sync ({sig.name})")
                assert attached_ids(gw_b) == ids, f"programs reloaded after {sig.name}"
                assert ingress.replies == {("web", seen_by_b)}
                assert egress.replies == {("web", seen_by_a)}
                now = ct_entry(bpffs, gw_b, egress.flow)
                assert now is not None, f"connection-table entry lost after {sig.name}"
                assert (now.addr, now.port) == (translation.addr, translation.port)
                assert now.packets > packets, "the entry in use is not the one recorded"
                translation = now
                assert far_side(topo, "a", "web", 8080, seen_by_a) == egress_peer
                assert far_side(topo, "b", "web", 8080, seen_by_b) == ingress_peer
                retrans = {x.name: x.flow.retransmissions() for x in samplers}
                assert retrans == sent, f"segments lost around the {sig.name} restart"
            for x in samplers:
                print(f"\n{x.name}: {x.samples} round trips across SIGTERM and SIGKILL "
                      f"restarts, slowest {x.slowest * 1000:.1f} ms")
        finally:
            for x in samplers:
                x.stop()
                x.flow.close()
        for x in samplers:
            assert x.error is None, f"{x.name}: {x.error!r}"

        exports.delete("web", namespace=ns)
        await_condition(lambda: not giips.list(namespace=ns).items, timeout=30,
                        message="GlobalIngressIP withdrawn")
        agent.stop()

    # --uninstall: b's filters, programs and pins go; nothing else does.
    pins_b = n.PinLayout(bpffs, n.scope_of(gw_b))
    map_ids = []
    for m in n.MAPS:
        fd = obj_get(pins_b.map(m.macro))
        map_ids.append(int(fdinfo(fd)["map_id"]))
        os.close(fd)
    foreign_pin = bpffs / f"someone-else-{os.getpid()}" / "map"
    fd = obj_get(pins_b.map(n.STATS))
    try:
        obj_pin(fd, foreign_pin)
    finally:
        os.close(fd)
    try:
        netns.run(gw_b, ["tc", "filter", "add", "dev", TUNNEL_DEV, "ingress", "pref", "7",
                         "protocol", "all", "bpf", "bytecode", "1,6 0 0 0,"])
        netns.run(gw_b, ["nft", "add", "table", "inet", "someone-else"])
        a_pins = sorted(p.name for p in gateway_a.pins.root.rglob("*"))
        a_ids = attached_ids(topo.gateway("a"))
        out = subprocess.run(agent.argv("--uninstall"), capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        assert "removed the eBPF datapath's filters, pins and shim table" in out.stdout
        assert attached_ids(gw_b) == {"ingress": 0, "egress": 0}
        filters = netns.run(gw_b, ["tc", "filter", "show", "dev", TUNNEL_DEV, "ingress"])
        assert "pref 7 bpf" in filters, filters
        assert not pins_b.root.exists()
        assert foreign_pin.exists()
        assert sorted(p.name for p in gateway_a.pins.root.rglob("*")) == a_pins
        assert attached_ids(topo.gateway("a")) == a_ids
        tables = netns.run(gw_b, ["nft", "list", "tables"])
        assert "someone-else" in tables and "globalnet-ebpf" not in tables, tables
        # The kernel frees what nothing refers to any more (after an RCU grace period).
        stats_id = map_ids[[m.macro for m in n.MAPS].index(n.STATS)]
        left = {("prog", i) for i in ids.values()} | {("map", i) for i in map_ids
                                                       if i != stats_id}
        await_condition(lambda: not [o for o in left if bpf_object_exists(*o)], timeout=10,
                        message=lambda: "programs and maps freed: "
                        f"{[o for o in left if bpf_object_exists(*o)]} remain")
        assert bpf_object_exists("map", stats_id)  # the foreign pin keeps that one
    finally:
        foreign_pin.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            foreign_pin.parent.rmdir()
