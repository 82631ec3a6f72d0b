"""The IPsec cable between two gateway namespaces on one veth underlay: IKEv2 with
a PSK, ping and TCP between the clusters' addresses through charon's
kernel-libipsec TUN device, only UDP 500/4500 on the wire (an nft counter on the
underlay's ingress), the same SAs and charon after an engine restart, nothing
left after teardown (process, device, routes, charon's rule, run files), and the
one-line refusals (no PSK, no charon, an external charon not there yet).

Addresses: underlay 198.18.30.1/.2, tunnel 243.18.30.1/.2, subnets
242.x.0.0/16 (a 242.x.0.1 address on each side's loopback stands for the
cluster). Each side's charon gets a private /run (`run_root` under tmp_path):
both gateways share this test's mount namespace and /run/charon.pid is fixed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from datapath import netns as nsutil
from datapath.cable import CableError, PeerState, RemoteGateway
from datapath.ipsec import IpsecCable, find_charon, tunnel_ip
from lab import netns
from tests.netns.cable_fixture import processes_in, tcp_echo, two_gateways

A_IP, B_IP = "198.18.30.1", "198.18.30.2"
A_NET, B_NET = "242.1.0.0/16", "242.2.0.0/16"
PSK = "clusterset-secret-for-tests"
# Counts the underlay's IPv4 arriving at B: IKE/NAT-T (UDP 500 and 4500) and the rest.
WIRE_RULES = """table netdev gnwire {
  counter ike { }
  counter other { }
  chain ingress {
    type filter hook ingress device "ul0" priority 0;
    ip protocol udp udp dport { 500, 4500 } counter name "ike" accept
    meta protocol ip counter name "other"
  }
}
"""


def remote(cable: IpsecCable, ip: str, subnet: str) -> RemoteGateway:
    return RemoteGateway(ip, (subnet,), tuple(sorted(cable.backend_config().items())))




def await_established(cable: IpsecCable, ip: str, timeout: float = 20.0) -> PeerState:
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = cable.peers().get(ip)
        if state is not None and state.state == "ESTABLISHED/INSTALLED":
            return state
        time.sleep(0.1)
    raise AssertionError(f"no IPsec SA to {ip} within {timeout} s: {state}")


def counters(ns: str) -> dict[str, int]:
    out = json.loads(netns.run(ns, ["nft", "-j", "list", "counters", "table", "netdev",
                                    "gnwire"]))
    return {c["counter"]["name"]: int(c["counter"]["packets"])
            for c in out["nftables"] if "counter" in c}




@pytest.fixture
def gateways(make_netns: Callable[[str], str]) -> Iterator[tuple[str, str]]:
    with two_gateways(make_netns, "ip", A_IP, B_IP) as pair:
        yield pair


def assert_nothing_left(ns: str, run_root: Path) -> None:
    assert "ipsec" not in netns.run(ns, ["ip", "link"])
    assert processes_in(ns) == []
    assert netns.run(ns, ["ip", "route", "show", "proto", "150"]).strip() == ""
    assert "lookup 220" not in netns.run(ns, ["ip", "rule"])
    assert not (run_root / "ipsec").exists() and not (run_root / "charon.pid").exists()


def test_tunnel_ip_is_on_its_own_slash_8() -> None:
    assert tunnel_ip("198.18.0.10") == "243.18.0.10"


def test_two_gateways_carry_ping_and_tcp_through_ipsec(
        gateways: tuple[str, str], tmp_path: Path) -> None:
    a, b = gateways

    def cable(side: str, ns: str, ip: str, subnet: str) -> IpsecCable:
        return IpsecCable(ip, psk=PSK, netns=ns, run_root=tmp_path / f"run-{side}",
                          local_subnets=(subnet,))

    subprocess.run(netns.exec_argv(b, ["nft", "-f", "-"]), input=WIRE_RULES, text=True,
                   check=True)
    cable_a, cable_b = cable("a", a, A_IP, A_NET), cable("b", b, B_IP, B_NET)
    try:
        # The responder (higher underlay IP) first; the initiator's converge starts IKE.
        cable_b.converge([remote(cable_a, A_IP, A_NET),
                          remote(cable_b, B_IP, B_NET)])  # itself: ignored
        first = cable_a.converge([remote(cable_b, B_IP, B_NET)])
        assert [r.dst for r in first.added] == [B_NET]
        state = await_established(cable_a, B_IP)
        await_established(cable_b, A_IP)
        assert cable_a.implementation() == "charon (kernel-libipsec)"

        out = netns.run(a, ["ping", "-c", "3", "-W", "2", "-I", "242.1.0.1", "242.2.0.1"])
        assert " 0% packet loss" in out
        assert tcp_echo(b, a, "242.1.0.1", "242.2.0.1") == b"pong ping"
        assert tcp_echo(a, b, "242.2.0.1", "242.1.0.1") == b"pong ping"
        assert netns.run(a, ["ping", "-c", "1", "-W", "2", tunnel_ip(B_IP)])
        route = netns.run(a, ["ip", "route", "show", B_NET])
        assert f"via {tunnel_ip(B_IP)} dev ipsec0" in route and "proto 150" in route
        assert "mtu 1400" in netns.run(a, ["ip", "link", "show", "ipsec0"])

        # On the wire: only IKE and ESP-in-UDP, however much crossed the tunnel.
        wire = counters(b)
        assert wire["other"] == 0 and wire["ike"] > 10, wire

        state = cable_a.peers()[B_IP]
        assert list(cable_a.peers()) == [B_IP]
        assert state.state == "ESTABLISHED/INSTALLED" and state.endpoint == f"{B_IP}:4500"
        assert state.rx_bytes > 0 and state.tx_bytes > 0
        assert 0 < time.time() - state.latest_handshake < 120
        before = cable_a.sas()[B_IP]
        pid = int((tmp_path / "run-a" / "ipsec" / "charon.globalnet.pid").read_text())

        # The engine restarts: charon and its SAs adopted as they are, nothing changed.
        again = cable("a", a, A_IP, A_NET)
        assert again.converge([remote(cable_b, B_IP, B_NET)]).changes == 0
        after = again.sas()[B_IP]
        assert (after.ike_id, after.child_id) == (before.ike_id, before.child_id)
        assert abs(again.peers()[B_IP].latest_handshake - state.latest_handshake) <= 1
        assert int((tmp_path / "run-a" / "ipsec" / "charon.globalnet.pid").read_text()) == pid
        assert tcp_echo(b, a, "242.1.0.1", "242.2.0.1") == b"pong ping"
        cable("b", b, B_IP, B_NET).converge([remote(cable_a, A_IP, A_NET)])  # responder too
        for side in ("a", "b"):  # loaded once: the restarts found nothing to change
            text = (tmp_path / f"run-{side}" / "ipsec" / "charon.log").read_text()
            assert text.count("vici connection: gn-") == 1, side

        # A remote gone: its connection, SA and route go too.
        gone = again.converge([])
        assert [r.dst for r in gone.removed] == [B_NET]
        assert again.peers() == {} and B_IP not in again.sas()
    finally:
        cable_a.remove()
        cable_b.remove()
    assert_nothing_left(a, tmp_path / "run-a")
    assert_nothing_left(b, tmp_path / "run-b")


def test_a_killed_charon_is_replaced_and_a_changed_remote_reloaded(
        gateways: tuple[str, str], tmp_path: Path) -> None:
    a, b = gateways

    def cable(side: str, ns: str, ip: str, subnet: str) -> IpsecCable:
        return IpsecCable(ip, psk=PSK, netns=ns, run_root=tmp_path / f"run-{side}",
                          local_subnets=(subnet,))

    cable_a, cable_b = cable("a", a, A_IP, A_NET), cable("b", b, B_IP, B_NET)
    try:
        cable_b.converge([remote(cable_a, A_IP, A_NET)])
        cable_a.converge([remote(cable_b, B_IP, B_NET)])
        await_established(cable_a, B_IP)
        # The initiator's charon dies hard: its TUN device goes with it, its table-220
        # rule stays; the next converge starts a new charon and a new SA.
        pid = int((tmp_path / "run-a" / "ipsec" / "charon.globalnet.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while cable_a.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not cable_a.exists()
        cable_a.converge([remote(cable_b, B_IP, B_NET)])
        assert int((tmp_path / "run-a" / "ipsec" / "charon.globalnet.pid").read_text()) != pid
        await_established(cable_a, B_IP)
        out = netns.run(a, ["ping", "-c", "3", "-W", "2", "-I", "242.1.0.1", "242.2.0.1"])
        assert " 0% packet loss" in out

        # B's subnets grow: both ends reload the connection and a new child carries both.
        netns.run(b, ["ip", "addr", "add", "242.3.0.1/32", "dev", "lo"])
        grown = RemoteGateway(B_IP, (B_NET, "242.3.0.0/16"),
                              tuple(sorted(cable_b.backend_config().items())))
        old = cable_a.sas()[B_IP]
        cable_b = IpsecCable(B_IP, psk=PSK, netns=b, run_root=tmp_path / "run-b",
                             local_subnets=(B_NET, "242.3.0.0/16"))
        cable_b.converge([remote(cable_a, A_IP, A_NET)])
        assert [r.dst for r in cable_a.converge([grown]).added] == ["242.3.0.0/16"]
        deadline = time.monotonic() + 20
        while (cable_a.sas().get(B_IP, old).ike_id == old.ike_id
               or cable_a.sas()[B_IP].child_state != "INSTALLED"):
            assert time.monotonic() < deadline, cable_a.sas()
            time.sleep(0.1)
        out = netns.run(a, ["ping", "-c", "3", "-W", "2", "-I", "242.1.0.1", "242.3.0.1"])
        assert " 0% packet loss" in out
    finally:
        cable_a.remove()
        cable_b.remove()
    assert_nothing_left(a, tmp_path / "run-a")
    assert_nothing_left(b, tmp_path / "run-b")


def test_a_gateway_without_a_psk_configures_nobody(
        gateways: tuple[str, str], tmp_path: Path) -> None:
    a, _ = gateways
    cable_a = IpsecCable(A_IP, psk=None, netns=a, run_root=tmp_path / "r")
    try:
        bare = RemoteGateway(B_IP, (B_NET,))
        assert cable_a.unusable(bare) == "no IPsec pre-shared key configured on this gateway"
        assert cable_a.converge([bare]).changes == 0
        assert cable_a.peers() == {} and cable_a.sas() == {}
        odd = RemoteGateway(B_IP, (B_NET,), (("ike-port", "http"),))
        assert IpsecCable(A_IP, psk=PSK).unusable(odd) == "its ike-port 'http' is not a port"
    finally:
        cable_a.remove()
    assert_nothing_left(a, tmp_path / "r")


def test_no_charon_is_one_line(gateways: tuple[str, str], tmp_path: Path) -> None:
    a, _ = gateways
    cable_a = IpsecCable(A_IP, psk=PSK, netns=a, run_root=tmp_path / "r",
                         charon=tmp_path / "empty" / "charon")
    with pytest.raises(CableError, match=r"^charon not found at .*: install strongswan-charon"
                       ) as info:
        cable_a.converge([])
    assert "\n" not in str(info.value)
    assert processes_in(a) == []
    with pytest.raises(CableError, match=r"^IPsec implementation 'kernel'"):
        IpsecCable(A_IP, psk=PSK, implementation="kernel")
    # A charon without its plugins beside it (libcharon-extra-plugins not installed).
    fake = tmp_path / "bare" / "charon"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    no_plugins = IpsecCable(A_IP, psk=PSK, netns=a, run_root=tmp_path / "r", charon=fake)
    with pytest.raises(CableError, match=r"^strongSwan plugin nonce missing under .*"
                                         r"\(install libstrongswan\)$"):
        no_plugins.converge([])
    assert processes_in(a) == []


def test_an_external_charon_is_waited_for_then_configured_and_left_running(
        gateways: tuple[str, str], tmp_path: Path) -> None:
    a, _ = gateways
    run_root = tmp_path / "r"
    cable_a = IpsecCable(A_IP, psk=PSK, netns=a, run_root=run_root, daemon="external")
    with pytest.raises(CableError, match=r"^waiting for charon \(no vici socket at "):
        cable_a.converge([remote(cable_a, B_IP, B_NET)])
    find_charon()
    with nsutil.entered(a):
        daemon = subprocess.Popen([sys.executable, "-m", "datapath.ipsec", "daemon",
                                   "--run-root", str(run_root), "--private-run"],
                                  cwd=Path(__file__).parents[2], start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                result = cable_a.converge([remote(cable_a, B_IP, B_NET)])
                break
            except CableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert [r.dst for r in result.added] == [B_NET]
        assert cable_a.exists()
        cable_a.remove()  # not ours to stop: the daemon keeps running, unconfigured
        assert daemon.poll() is None
        assert netns.run(a, ["ip", "route", "show", "proto", "150"]).strip() == ""
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(10)
    assert processes_in(a) == []
