"""Conntrack replication between two gateway namespaces (datapath/ctsync.py, a real
conntrackd in each): a NATed TCP connection through gateway A keeps working when
its routes move to gateway B, because B holds A's entry (in its conntrackd's
external cache, committed into B's kernel when B takes over); and nothing B's
kernel does reaches A's kernel.

    client (242.1.0.2) ==== gwA ==== server (10.2.0.2)
                      \\=== gwB ===/        gwA -- sync link 10.9.0.1/.2 -- gwB

The client stands for a remote cluster's pod behind its global egress IP (already
translated by its own gateway); both gateways DNAT the global IP 242.2.0.10:7000 to
the server, as a cluster's ingress translation and kube-proxy would. After the
move the server speaks first, the case that resets connections without replication
(the reply reaches B, which has no entry for it): the control test shows it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from datapath import netns as nsutil
from datapath.ctsync import ConntrackSync, SyncLink, render_config
from kube.testing import await_condition
from lab import netns

pytestmark = pytest.mark.skipif(shutil.which("conntrackd") is None,
                                reason="conntrackd not installed (scripts/install-deps.sh)")

NAT_RULES = """
table ip gn-ctsync-test {
  chain pre {
    type nat hook prerouting priority -100;
    ip daddr 242.2.0.10 tcp dport 7000 dnat to 10.2.0.2
  }
}
"""


def _veth(a: str, a_if: str, a_ip: str, b: str, b_if: str, b_ip: str) -> None:
    netns.ensure_veth(netns=a, ifname=a_if, peer_netns=b, peer_ifname=b_if,
                      address=a_ip, peer_address=b_ip)


@contextmanager
def topology(make_netns: Callable[[str], str], tmp: Path, *, sync: bool,
             syncs: dict[str, ConntrackSync] | None = None) -> Iterator[dict[str, str]]:
    """The namespaces by role; with `sync`, a conntrackd on each gateway (in `syncs`
    by gateway when given)."""
    ns = {k: make_netns(k) for k in ("cl", "sv", "ga", "gb")}
    for n in ns.values():
        netns.run(n, ["ip", "link", "set", "lo", "up"])
    netns.run(ns["cl"], ["ip", "addr", "add", "242.1.0.2/32", "dev", "lo"])
    netns.run(ns["sv"], ["ip", "addr", "add", "10.2.0.2/32", "dev", "lo"])
    rules = tmp / "nat.nft"
    rules.write_text(NAT_RULES)
    for gw, i in (("ga", 1), ("gb", 2)):
        _veth(ns[gw], "to-cl", f"10.1.{i}.1/30", ns["cl"], f"to-{gw}", f"10.1.{i}.2/30")
        _veth(ns[gw], "to-sv", f"10.2.{i}.1/30", ns["sv"], f"to-{gw}", f"10.2.{i}.2/30")
        for cmd in (["sysctl", "-qw", "net.ipv4.ip_forward=1"],
                    ["ip", "route", "add", "10.2.0.2/32", "via", f"10.2.{i}.2"],
                    ["ip", "route", "add", "242.1.0.0/16", "via", f"10.1.{i}.2"],
                    ["nft", "-f", str(rules)]):
            netns.run(ns[gw], cmd)
    _veth(ns["ga"], "sync0", "10.9.0.1/24", ns["gb"], "sync0", "10.9.0.2/24")
    via("cl", "10.1.1.1", ns)
    via("sv", "10.2.1.1", ns)
    running = syncs if syncs is not None else {}
    if sync:
        for gw, me, peer in (("ga", "10.9.0.1", "10.9.0.2"), ("gb", "10.9.0.2", "10.9.0.1")):
            s = ConntrackSync(tmp / gw, netns=ns[gw])
            s.converge(SyncLink(me, (peer,), ("242.0.0.0/8",)))
            running[gw] = s
        await_condition(lambda: all(s.ready() for s in running.values()), timeout=10,
                        message="both conntrackd past their start")
    try:
        yield ns
    finally:
        for s in running.values():
            s.stop()


def via(node: str, gateway: str, ns: dict[str, str]) -> None:
    netns.run(ns[node], ["ip", "route", "replace", "default", "via", gateway])


def entries(ns_name: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns_name, "conntrack", "-L", "-p", "tcp"],
                          capture_output=True, text=True).stdout


def external_cache(sync: ConntrackSync) -> str:
    """What the node's conntrackd holds from its peers (conntrackd -e)."""
    return subprocess.run(["conntrackd", "-C", str(sync.run_dir / "conntrackd.conf"), "-e"],
                          capture_output=True, text=True, timeout=10).stdout


def connect(ns: dict[str, str]) -> tuple[socket.socket, socket.socket, socket.socket]:
    with nsutil.entered(ns["sv"]):
        server = socket.create_server(("10.2.0.2", 7000))
    with nsutil.entered(ns["cl"]):
        client = socket.socket()
        client.bind(("242.1.0.2", 0))
    client.settimeout(3)
    client.connect(("242.2.0.10", 7000))
    peer, seen = server.accept()
    assert seen[0] == "242.1.0.2", seen
    peer.settimeout(3)
    client.sendall(b"before")
    assert peer.recv(16) == b"before"
    return server, client, peer


def move_to_b(ns: dict[str, str]) -> None:
    """gwA is gone: both ends route through gwB, gwA's links are down."""
    via("cl", "10.1.2.1", ns)
    via("sv", "10.2.2.1", ns)
    for ifname in ("to-cl", "to-sv"):
        netns.run(ns["ga"], ["ip", "link", "set", ifname, "down"])


def test_config_renders_unicast_for_one_peer_and_multicast_for_more(tmp_path: Path) -> None:
    one = render_config(SyncLink("10.9.0.1", ("10.9.0.2",), ("242.0.0.0/8",)), "eth0",
                        tmp_path)
    assert "IPv4_Destination_Address 10.9.0.2" in one and "Multicast" not in one
    assert "IPv4_address 242.0.0.0/8" in one and "DisableExternalCache off" in one
    many = render_config(SyncLink("10.9.0.1", ("10.9.0.2", "10.9.0.3"), ("242.1.0.0/16",)),
                         "eth0", tmp_path)
    assert "Multicast" in many and "IPv4_interface 10.9.0.1" in many


def test_bad_link_is_refused() -> None:
    from datapath.ctsync import ConntrackSyncError

    with pytest.raises(ConntrackSyncError, match="not an IPv4 address"):
        SyncLink("10.9.0.300", ("10.9.0.2",), ())
    with pytest.raises(ConntrackSyncError, match="not a CIDR"):
        SyncLink("10.9.0.1", ("10.9.0.2",), ("242.0.0.0/33",))


def test_connection_survives_moving_to_the_standby_gateway(
        make_netns: Callable[[str], str], tmp_path: Path) -> None:
    syncs: dict[str, ConntrackSync] = {}
    with topology(make_netns, tmp_path, sync=True, syncs=syncs) as ns:
        server, client, peer = connect(ns)
        deadline = time.monotonic() + 5
        while ("dport=7000" not in external_cache(syncs["gb"])
               and time.monotonic() < deadline):
            time.sleep(0.1)
        replicated = external_cache(syncs["gb"])
        assert "src=242.1.0.2 dst=242.2.0.10" in replicated, replicated
        assert "ESTABLISHED" in replicated
        assert "dport=7000" not in entries(ns["gb"])  # not in B's kernel while passive
        syncs["ga"].stand_by()
        took = syncs["gb"].take_over()
        assert took < 5.0
        committed = entries(ns["gb"])  # with A's translation: the reply to 10.2.0.2
        assert "src=242.1.0.2 dst=242.2.0.10" in committed, committed
        assert "ESTABLISHED" in committed and "src=10.2.0.2 dst=242.1.0.2" in committed
        move_to_b(ns)
        peer.sendall(b"after")  # the server first: a reply B must translate
        assert client.recv(16) == b"after"
        client.sendall(b"again")
        assert peer.recv(16) == b"again"
        for s in (client, peer, server):
            s.close()


def test_a_passive_gateways_kernel_never_reaches_the_active_ones(
        make_netns: Callable[[str], str], tmp_path: Path) -> None:
    """The passive gateway's kernel has an entry of its own for the tuple of a live
    connection through the active one (a leftover of its term, for a client port
    reused since) with another translation; that entry changing and going away is
    sent to the active gateway, which must keep its live entry: replaced or
    removed, the connection's next packet would make a new one, to another
    backend, which resets it."""
    syncs: dict[str, ConntrackSync] = {}
    with topology(make_netns, tmp_path, sync=True, syncs=syncs) as ns:
        server, client, peer = connect(ns)
        port = client.getsockname()[1]
        tuple_args = ["-p", "tcp", "-s", "242.1.0.2", "-d", "242.2.0.10",
                      "--sport", str(port), "--dport", "7000"]
        # (Had B a copy of the live entry in its kernel, it would go first.)
        subprocess.run(["ip", "netns", "exec", ns["gb"], "conntrack", "-D", *tuple_args],
                       capture_output=True)
        netns.run(ns["gb"], ["conntrack", "-I", *tuple_args, "--state", "ESTABLISHED",
                             "-r", "10.2.0.3", "-q", "242.1.0.2", "--reply-port-src", "7000",
                             "--reply-port-dst", str(port), "-t", "60", "-u", "SEEN_REPLY"])
        time.sleep(0.5)
        netns.run(ns["gb"], ["conntrack", "-D", *tuple_args])
        time.sleep(1.0)  # conntrackd sends within milliseconds
        live = entries(ns["ga"])
        assert f"sport={port} dport=7000" in live and "src=10.2.0.2 dst=242.1.0.2" in live, live
        client.sendall(b"still")
        assert peer.recv(16) == b"still"
        for s in (client, peer, server):
            s.close()


def test_without_replication_the_same_move_loses_the_connection(
        make_netns: Callable[[str], str], tmp_path: Path) -> None:
    with topology(make_netns, tmp_path, sync=False) as ns:
        server, client, peer = connect(ns)
        move_to_b(ns)
        peer.sendall(b"after")
        client.settimeout(2)
        with pytest.raises(OSError):  # timed out (or reset): nothing translates it
            assert client.recv(16) != b"after"
        for s in (client, peer, server):
            s.close()


def test_stop_ends_the_daemon_and_a_stale_lock_does_not_block_a_restart(
        make_netns: Callable[[str], str], tmp_path: Path) -> None:
    a, b = make_netns("cs"), make_netns("cs2")
    _veth(a, "sync0", "10.9.1.1/24", b, "sync0", "10.9.1.2/24")
    sync = ConntrackSync(tmp_path, netns=a)
    link = SyncLink("10.9.1.1", ("10.9.1.2",), ("242.0.0.0/8",))
    sync.converge(link)
    assert sync.running()
    pid = int((tmp_path / "conntrackd.pid").read_text())
    sync.converge(link)  # unchanged: the same daemon
    assert int((tmp_path / "conntrackd.pid").read_text()) == pid
    sync.stop()
    assert not sync.running() and not Path(f"/proc/{pid}").exists()
    (tmp_path / "conntrackd.lock").write_text("")  # left by a killed daemon
    sync.converge(link)
    time.sleep(0.5)
    assert sync.running(), (tmp_path / "conntrackd.log").read_text()
    sync.converge(None)
    assert not sync.running()


def test_a_passive_gateway_tracks_no_cross_cluster_traffic_and_an_active_one_does(
        make_netns: Callable[[str], str], tmp_path: Path) -> None:
    """`Standby` on gwB: a connection routed through it leaves no entry (an entry
    there would take the ports of the active gateway's translations); removed, the
    next connection is tracked (and translated) again."""
    from datapath.ctsync import STANDBY_TABLE, Standby

    with topology(make_netns, tmp_path, sync=False) as ns:
        standby = Standby(ns["gb"])
        standby.converge(("242.1.0.0/16", "242.2.0.0/16"))
        standby.converge(("242.1.0.0/16", "242.2.0.0/16"))  # again: nothing changes
        assert "notrack" in netns.run(ns["gb"], ["nft", "list", "table", "inet", STANDBY_TABLE])
        via("cl", "10.1.2.1", ns)
        via("sv", "10.2.2.1", ns)
        with nsutil.entered(ns["cl"]):
            probe = socket.socket()
            probe.bind(("242.1.0.2", 0))
        probe.settimeout(2)
        # Untracked, the DNAT does not apply: nothing answers at 242.2.0.10.
        with pytest.raises(OSError):
            probe.connect(("242.2.0.10", 7000))
        probe.close()
        assert "dport=7000" not in entries(ns["gb"])
        standby.converge(None)
        assert STANDBY_TABLE not in netns.run(ns["gb"], ["nft", "list", "tables"])
        server, client, peer = connect(ns)
        assert "src=242.1.0.2 dst=242.2.0.10" in entries(ns["gb"])
        standby.converge(None)  # already gone: no error
        for s in (client, peer, server):
            s.close()
