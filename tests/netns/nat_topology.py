"""Two clusters with identical CIDRs joined by a router, for the NAT conformance suite.

Backend-agnostic: this module builds namespaces, kube-proxy-style ClusterIP rules,
servers and the NAT intents; which datapath realises the intents is the test's
choice. Everything it creates is named `gn-n<id>-...` and removed by `destroy()`.

Address conventions (identical in clusters a and b, except the global CIDRs):
  underlay      router 198.18.1.1 <-> a-gw 198.18.1.2;  router 198.18.2.1 <-> b-gw 198.18.2.2
  node network  172.18.0.0/24: gw .10, n2 .11 (a veth pair)
  pods          gw node 10.244.0.0/24, n2 10.244.1.0/24; node side of pod veths .1
                cl  10.244.0.10 (gw)  client, cluster egress
                ns  10.244.1.11 (n2)  client, namespace egress group
                sel 10.244.1.12 (n2)  client, namespace group + pod-selector group
                web 10.244.1.20 (n2)  servers: tcp 8080, udp 5353 ("web"), tcp 9090 ("secret")
                hl  10.244.1.30 (n2)  headless pod: tcp and udp 7070 and 9999 ("hl"), answers
                                      ping; exports tcp 7070 only
  services      10.96.0.10 web: tcp 80 -> web:8080, udp 53 -> web:5353 (exported)
                10.96.0.20 secret: tcp 80 -> web:9090 (NOT exported)
  global CIDR   a 242.0.0.0/16, b 242.1.0.0/16; offsets within it (G = 242.0 or 242.1):
                G.0.1-4 cluster egress, G.1.1-2 namespace group (ns, sel), G.2.1 pod
                selector (sel), G.3.30 headless hl (ingress and egress; new connections
                on tcp/7070 only), G.10.1 web (tcp/80, udp/53 only), G.255.254 gateway
                health check
  kube-proxy    iptables-nft rules shaped like kube-proxy 1.20's on both nodes: KUBE-SERVICES
                DNAT, KUBE-MARK-MASQ (0x4000) for sources outside 10.244.0.0/16,
                KUBE-POSTROUTING masquerade, KUBE-FORWARD accept on the mark.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from globalnet.intent import (
    EgressGroup,
    EgressKind,
    GlobalIP,
    HealthCheck,
    IngressMapping,
    IngressTarget,
    NatIntent,
    PortSpec,
    Protocol,
)
from lab import netns

POD_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
GLOBAL = {"a": "242.0", "b": "242.1"}
UNDERLAY = {"a": ("198.18.1.1", "198.18.1.2"), "b": ("198.18.2.1", "198.18.2.2")}
GW_IP, N2_IP = "172.18.0.10", "172.18.0.11"


@dataclass(frozen=True)
class PodSpec:
    name: str
    node: str  # "gw" or "n2"
    ip: str
    servers: tuple[str, ...] = ()  # "tcp:8080:web", "udp:5353:web"


PODS = (
    PodSpec("cl", "gw", "10.244.0.10"),
    PodSpec("ns", "n2", "10.244.1.11"),
    PodSpec("sel", "n2", "10.244.1.12"),
    PodSpec("web", "n2", "10.244.1.20", ("tcp:8080:web", "udp:5353:web", "tcp:9090:secret")),
    PodSpec("hl", "n2", "10.244.1.30", ("tcp:7070:hl", "udp:7070:hl", "tcp:9999:hl",
                                        "udp:9999:hl")),
)
POD = {p.name: p for p in PODS}
WEB_CLUSTER_IP, SECRET_CLUSTER_IP = "10.96.0.10", "10.96.0.20"


def global_ip(cluster: str, offset: str) -> GlobalIP:
    """`global_ip("b", "10.1")` -> 242.1.10.1."""
    return GlobalIP(f"{GLOBAL[cluster]}.{offset}")


def remote_of(cluster: str) -> str:
    return "b" if cluster == "a" else "a"


def intent(cluster: str, *, extra_ingress: tuple[IngressMapping, ...] = ()) -> NatIntent:
    """The cluster's NAT intent as the controllers would compute it."""
    g = GLOBAL[cluster]
    hl_owner = "GlobalIngressIP default/hl"
    return NatIntent.build(
        cluster_id=cluster,
        global_cidr=f"{g}.0.0/16",
        local_cidrs=[POD_CIDR, SERVICE_CIDR],
        remote_global_cidrs=[f"{GLOBAL[remote_of(cluster)]}.0.0/16"],
        egress=[
            EgressGroup(EgressKind.CLUSTER, "ClusterGlobalEgressIP cluster-egress.submariner.io",
                        tuple(global_ip(cluster, f"0.{i}") for i in range(1, 5))),
            EgressGroup(EgressKind.NAMESPACE, "GlobalEgressIP team/ns-egress",
                        (global_ip(cluster, "1.1"), global_ip(cluster, "1.2")),
                        frozenset({POD["ns"].ip, POD["sel"].ip})),
            EgressGroup(EgressKind.POD_SELECTOR, "GlobalEgressIP team/sel-egress",
                        (global_ip(cluster, "2.1"),), frozenset({POD["sel"].ip})),
            EgressGroup(EgressKind.HEADLESS_POD, hl_owner, (global_ip(cluster, "3.30"),),
                        frozenset({POD["hl"].ip})),
        ],
        ingress=[
            IngressMapping(global_ip(cluster, "10.1"), WEB_CLUSTER_IP,
                           IngressTarget.CLUSTER_IP_SERVICE, "GlobalIngressIP default/web",
                           (PortSpec(Protocol.TCP, 80), PortSpec(Protocol.UDP, 53))),
            IngressMapping(global_ip(cluster, "3.30"), POD["hl"].ip,
                           IngressTarget.HEADLESS_SERVICE_POD, hl_owner,
                           (PortSpec(Protocol.TCP, 7070),)),
            *extra_ingress,
        ],
        health_checks=[HealthCheck(global_ip(cluster, "255.254"), f"Gateway {cluster}-gw")],
    )


def bulk_mappings(cluster: str, count: int) -> tuple[IngressMapping, ...]:
    """`count` unrelated mappings: G.(100+i/256).(i%256) -> 10.97.x.y (no such service)."""
    out = []
    for i in range(count):
        hi, lo = 100 + i // 256, i % 256
        out.append(IngressMapping(global_ip(cluster, f"{hi}.{lo}"), f"10.97.{hi - 100}.{lo}",
                                  IngressTarget.CLUSTER_IP_SERVICE, f"GlobalIngressIP bulk/s{i}"))
    return tuple(out)


KUBE_PROXY_RULES = """\
*filter
:FORWARD ACCEPT [0:0]
:KUBE-FORWARD - [0:0]
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A KUBE-FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-SVC-WEBTCP - [0:0]
:KUBE-SVC-WEBUDP - [0:0]
:KUBE-SVC-SECRET - [0:0]
:KUBE-SEP-WEBTCP - [0:0]
:KUBE-SEP-WEBUDP - [0:0]
:KUBE-SEP-SECRET - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" \
-j MASQUERADE --random-fully
-A KUBE-SERVICES -d {web}/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-WEBTCP
-A KUBE-SERVICES -d {web}/32 -p udp -m udp --dport 53 -j KUBE-SVC-WEBUDP
-A KUBE-SERVICES -d {secret}/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-SECRET
-A KUBE-SVC-WEBTCP ! -s {pods} -d {web}/32 -p tcp -m tcp --dport 80 -j KUBE-MARK-MASQ
-A KUBE-SVC-WEBTCP -j KUBE-SEP-WEBTCP
-A KUBE-SVC-WEBUDP ! -s {pods} -d {web}/32 -p udp -m udp --dport 53 -j KUBE-MARK-MASQ
-A KUBE-SVC-WEBUDP -j KUBE-SEP-WEBUDP
-A KUBE-SVC-SECRET ! -s {pods} -d {secret}/32 -p tcp -m tcp --dport 80 -j KUBE-MARK-MASQ
-A KUBE-SVC-SECRET -j KUBE-SEP-SECRET
-A KUBE-SEP-WEBTCP -s {backend}/32 -j KUBE-MARK-MASQ
-A KUBE-SEP-WEBTCP -p tcp -m tcp -j DNAT --to-destination {backend}:8080
-A KUBE-SEP-WEBUDP -s {backend}/32 -j KUBE-MARK-MASQ
-A KUBE-SEP-WEBUDP -p udp -m udp -j DNAT --to-destination {backend}:5353
-A KUBE-SEP-SECRET -s {backend}/32 -j KUBE-MARK-MASQ
-A KUBE-SEP-SECRET -p tcp -m tcp -j DNAT --to-destination {backend}:9090
COMMIT
""".format(web=WEB_CLUSTER_IP, secret=SECRET_CLUSTER_IP, pods=POD_CIDR, backend=POD["web"].ip)

SERVER_CODE = r"""
import socket, sys, threading
def tcp(s, name):
    def serve(c, peer):
        with c, c.makefile("rwb", buffering=0) as f:
            for line in f:
                f.write(f"{name} {peer[0]} {line.decode().strip()}\n".encode())
    while True:
        c, peer = s.accept()
        threading.Thread(target=serve, args=(c, peer), daemon=True).start()
def udp(s, name):
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(f"{name} {peer[0]} {data.decode().strip()}".encode(), peer)
for spec in sys.argv[1:]:
    proto, port, name = spec.split(":")
    if proto == "tcp":
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", int(port))); s.listen(128)
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", int(port)))
    threading.Thread(target=tcp if proto == "tcp" else udp, args=(s, name), daemon=True).start()
print("ready", flush=True)  # every socket is bound and listening
threading.Event().wait()
"""

_T = TypeVar("_T")


def wait_for(what: str, fn: Callable[[], _T | None], *, timeout: float = 5.0,
             step: float = 0.02) -> _T:
    """Poll `fn` until it returns a truthy value (exceptions count as not yet)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = fn()
            if value:
                return value
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}: {last!r}")
        time.sleep(step)


@dataclass
class Topology:
    """The namespaces of both clusters and the router; `ns(cluster, name)` names them."""

    prefix: str = field(default_factory=lambda: f"gn-n{uuid.uuid4().hex[:6]}")
    made: list[str] = field(default_factory=list)
    servers: list[subprocess.Popen[str]] = field(default_factory=list)

    def ns(self, cluster: str, name: str) -> str:
        """Namespace of node `gw`/`n2` or pod `cl`... in `cluster` ("rt": the router)."""
        return f"{self.prefix}-rt" if cluster == "rt" else f"{self.prefix}-{cluster}-{name}"

    def gateway(self, cluster: str) -> str:
        return self.ns(cluster, "gw")

    def _make(self, name: str) -> str:
        self.made.append(name)
        netns.ensure_netns(name)
        return name

    # -- build -------------------------------------------------------------------

    def build(self) -> Topology:
        router = self._make(self.ns("rt", ""))
        netns.set_sysctl(router, "net.ipv4.ip_forward", "1")
        for cluster in ("a", "b"):
            self._build_cluster(cluster, router)
        for cluster in ("a", "b"):
            gw_side = UNDERLAY[cluster][1]
            netns.ensure_route(router, f"{GLOBAL[cluster]}.0.0/16", gateway=gw_side)
        for spec in PODS:
            if spec.servers:
                for cluster in ("a", "b"):
                    self._start_server(self.ns(cluster, spec.name), spec.servers)
        return self

    def _build_cluster(self, cluster: str, router: str) -> None:
        gw, n2 = self._make(self.ns(cluster, "gw")), self._make(self.ns(cluster, "n2"))
        rt_ip, gw_ul = UNDERLAY[cluster]
        netns.ensure_veth(netns=router, ifname=f"ul-{cluster}", peer_netns=gw, peer_ifname="ul0",
                          address=f"{rt_ip}/24", peer_address=f"{gw_ul}/24")
        netns.ensure_veth(netns=gw, ifname="eth1", peer_netns=n2, peer_ifname="eth1",
                          address=f"{GW_IP}/24", peer_address=f"{N2_IP}/24")
        remote = f"{GLOBAL[remote_of(cluster)]}.0.0/16"
        for node in (gw, n2):
            netns.set_sysctl(node, "net.ipv4.ip_forward", "1")
        netns.ensure_route(gw, "10.244.1.0/24", gateway=N2_IP)
        netns.ensure_route(n2, "10.244.0.0/24", gateway=GW_IP)
        netns.ensure_route(gw, remote, gateway=rt_ip)  # the "tunnel" to the other cluster
        netns.ensure_route(n2, remote, gateway=GW_IP)  # route agent: remote globals via gw
        for spec in PODS:
            node = gw if spec.node == "gw" else n2
            pod = self._make(self.ns(cluster, spec.name))
            node_side = "10.244.0.1" if spec.node == "gw" else "10.244.1.1"
            ifname = f"p-{spec.name}"
            netns.ensure_veth(netns=node, ifname=ifname, peer_netns=pod, peer_ifname="eth0",
                              address=f"{node_side}/32", peer_address=f"{spec.ip}/32")
            netns.ensure_route(node, f"{spec.ip}/32", dev=ifname)
            netns.ensure_route(pod, f"{node_side}/32", dev="eth0")
            netns.ensure_route(pod, "default", gateway=node_side, dev="eth0")
        for node in (gw, n2):
            subprocess.run(netns.exec_argv(node, ["iptables-restore"]), input=KUBE_PROXY_RULES,
                           text=True, check=True, capture_output=True)

    def _start_server(self, pod_ns: str, specs: tuple[str, ...]) -> None:
        proc = subprocess.Popen(
            netns.exec_argv(pod_ns, [sys.executable, "-c", SERVER_CODE, *specs]),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        self.servers.append(proc)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        if not ready or proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"server in {pod_ns} did not start")

    def destroy(self) -> None:
        for proc in self.servers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, 9)
            proc.wait(5)
        for name in reversed(self.made):
            netns.delete_netns(name)
        self.made.clear()

    # -- traffic -----------------------------------------------------------------

    def tcp_echo(self, cluster: str, pod: str, ip: str, port: int, *,
                 timeout: float = 2.0) -> tuple[str, str]:
        """(server name, source IP the server saw) for one request from `pod`."""
        with netns.entered(self.ns(cluster, pod)):
            sock = socket.create_connection((ip, port), timeout=timeout)
        with sock, sock.makefile("rwb", buffering=0) as f:
            f.write(b"hello\n")
            name, seen, _ = f.readline().decode().split()
        return name, seen

    def udp_echo(self, cluster: str, pod: str, ip: str, port: int, *,
                 timeout: float = 1.0) -> tuple[str, str, tuple[str, int]]:
        """(server name, source IP the server saw, address the reply came from)."""
        with netns.entered(self.ns(cluster, pod)):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sock:
            sock.settimeout(timeout)
            sock.sendto(b"hello", (ip, port))
            data, src = sock.recvfrom(2048)
        name, seen, _ = data.decode().split()
        return name, seen, src

    def ping(self, cluster: str, pod: str, ip: str) -> bool:
        proc = subprocess.run(
            netns.exec_argv(self.ns(cluster, pod), ["ping", "-c", "1", "-W", "1", "-n", ip]),
            capture_output=True, text=True, timeout=5,
        )
        return proc.returncode == 0

    def open_flow(self, cluster: str, pod: str, ip: str, port: int) -> EchoFlow:
        with netns.entered(self.ns(cluster, pod)):
            sock = socket.create_connection((ip, port), timeout=2)
        return EchoFlow(sock)


class EchoFlow:
    """One long-lived TCP connection to an echo server: `echo()` round trips on it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file = sock.makefile("rwb", buffering=0)
        self.local = sock.getsockname()
        self.count = 0

    def send(self) -> None:
        self.count += 1
        self.file.write(f"n{self.count}\n".encode())

    def receive(self, timeout: float = 5.0) -> tuple[str, str]:
        self.sock.settimeout(timeout)
        name, seen, token = self.file.readline().decode().split()
        assert token == f"n{self.count}", "reply out of order"
        return name, seen

    def echo(self, timeout: float = 5.0) -> tuple[str, str]:
        self.send()
        return self.receive(timeout)

    def retransmissions(self) -> int:
        """Segments the kernel has retransmitted on this connection (`tcpi_total_retrans`
        of struct tcp_info: 8 one-byte fields, then the 24th 32-bit one): it grows
        when a send went unacknowledged for a whole retransmission timeout."""
        info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        return int(struct.unpack_from("I", info, 8 + 23 * 4)[0])

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def connect_all(topo: Topology, cluster: str, pod: str, targets: Sequence[tuple[str, int]], *,
                timeout: float = 1.0) -> dict[tuple[str, int], str]:
    """Try every (ip, port) at once; the server name that answered, or the error."""
    results: dict[tuple[str, int], str] = {}

    def one(target: tuple[str, int]) -> None:
        try:
            name, _ = topo.tcp_echo(cluster, pod, *target, timeout=timeout)
            results[target] = name
        except OSError as exc:
            results[target] = f"error: {exc.__class__.__name__}"

    threads = [threading.Thread(target=one, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 5)
    return results


@contextlib.contextmanager
def topology() -> Iterator[Topology]:
    topo = Topology()
    try:
        yield topo.build()
    finally:
        topo.destroy()
