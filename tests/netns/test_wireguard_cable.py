"""The WireGuard cable between two gateway namespaces on one veth underlay: ping
and TCP between the clusters' addresses through the encrypted tunnel, the
connection state from `wg show dump`, the same key and daemon after an engine
restart, the cable rebuilt after its device is deleted by hand, and nothing left
after teardown (device, wireguard-go process, UAPI socket).

Addresses: underlay 198.18.10.1/.2, tunnel 241.18.10.1/.2, subnets
242.x.0.0/16 (a 242.x.0.1 address on each side's loopback stands for the
cluster). Each side's wireguard-go and `wg` get a private /run (`run_root`):
both gateways share this test's mount namespace and the UAPI socket path is fixed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from datapath.cable import CableError, RemoteGateway
from datapath.wireguard import IFNAME, KEY_FILE, WireguardCable, parse_dump, tunnel_ip
from lab import netns
from tests.netns.cable_fixture import processes_in, tcp_echo, two_gateways

A_IP, B_IP = "198.18.10.1", "198.18.10.2"


def remote(cable: WireguardCable, ip: str, subnet: str) -> RemoteGateway:
    return RemoteGateway(ip, (subnet,), tuple(sorted(cable.backend_config().items())))


def kernel_has_wireguard(ns: str) -> bool:
    made = subprocess.run(netns.exec_argv(ns, ["ip", "link", "add", "wgprobe", "type",
                                               "wireguard"]), capture_output=True).returncode
    if made == 0:
        netns.run(ns, ["ip", "link", "del", "wgprobe"])
    return made == 0






@pytest.fixture
def gateways(make_netns: Callable[[str], str]) -> Iterator[tuple[str, str]]:
    with two_gateways(make_netns, "wg", A_IP, B_IP) as pair:
        yield pair


def test_tunnel_ip_is_on_its_own_slash_8() -> None:
    assert tunnel_ip("198.18.0.10") == "241.18.0.10"


def test_parse_dump_reads_wgs_columns() -> None:
    dump = parse_dump("priv\tpub\t51820\toff\n"
                      "peerkey\t(none)\t198.18.0.2:51820\t242.2.0.0/16,241.18.0.2/32\t"
                      "1764600000\t1024\t2048\t10\n"
                      "idle\t(none)\t(none)\t(none)\t0\t0\t0\toff\n")
    assert (dump.private_key, dump.listen_port) == ("priv", 51820)
    peer = dump.peers["peerkey"]
    assert peer.allowed_ips == {"242.2.0.0/16", "241.18.0.2/32"}
    assert (peer.latest_handshake, peer.rx_bytes, peer.tx_bytes, peer.keepalive) == (
        1764600000, 1024, 2048, 10)
    assert dump.peers["idle"].endpoint == "" and dump.peers["idle"].keepalive == 0


def test_two_gateways_carry_ping_and_tcp_through_wireguard(
        gateways: tuple[str, str], tmp_path: Path) -> None:
    a, b = gateways
    kernel = kernel_has_wireguard(a)

    def cable(side: str, ns: str, ip: str) -> WireguardCable:
        return WireguardCable(ip, netns=ns, state_dir=tmp_path / f"state-{side}",
                              run_root=tmp_path / f"run-{side}")

    cable_a, cable_b = cable("a", a, A_IP), cable("b", b, B_IP)
    try:
        assert (tmp_path / "state-a" / KEY_FILE).stat().st_mode & 0o777 == 0o600
        assert cable_a.public_key != cable_b.public_key
        first = cable_a.converge([remote(cable_b, B_IP, "242.2.0.0/16")])
        assert [r.dst for r in first.added] == ["242.2.0.0/16"]
        cable_b.converge([remote(cable_a, A_IP, "242.1.0.0/16"),
                          remote(cable_b, B_IP, "242.2.0.0/16")])  # itself: ignored
        assert cable_a.implementation() == ("kernel" if kernel else "wireguard-go")
        out = netns.run(a, ["ping", "-c", "3", "-W", "2", "-I", "242.1.0.1", "242.2.0.1"])
        assert " 0% packet loss" in out
        assert tcp_echo(b, a, "242.1.0.1", "242.2.0.1") == b"pong ping"
        assert tcp_echo(a, b, "242.2.0.1", "242.1.0.1") == b"pong ping"
        assert netns.run(a, ["ping", "-c", "1", "-W", "2", tunnel_ip(B_IP)])
        route = netns.run(a, ["ip", "route", "show", "242.2.0.0/16"])
        assert f"via {tunnel_ip(B_IP)} dev {IFNAME}" in route and "proto 150" in route
        assert "mtu 1420" in netns.run(a, ["ip", "link", "show", IFNAME])
        (state,) = cable_a.peers().values()
        assert state.latest_handshake > 0 and state.rx_bytes > 0 and state.tx_bytes > 0
        assert state.endpoint == f"{B_IP}:51820"
        assert list(cable_a.peers()) == [B_IP]
        pid = int((tmp_path / "run-a" / "wireguard" / f"{IFNAME}.globalnet.pid").read_text())

        # The engine restarts: same key from its state dir, the device and its daemon
        # adopted as they are, nothing to change.
        again = cable("a", a, A_IP)
        assert again.public_key == cable_a.public_key
        assert again.converge([remote(cable_b, B_IP, "242.2.0.0/16")]).changes == 0
        if not kernel:
            assert (tmp_path / "run-a" / "wireguard" / f"{IFNAME}.globalnet.pid"
                    ).read_text().strip() == str(pid)

        # Deleted by hand: the next converge builds it again and traffic flows.
        netns.run(a, ["ip", "link", "del", IFNAME])
        assert not cable_a.exists()
        cable_a.converge([remote(cable_b, B_IP, "242.2.0.0/16")])
        out = netns.run(a, ["ping", "-c", "3", "-W", "2", "-I", "242.1.0.1", "242.2.0.1"])
        assert " 0% packet loss" in out

        # A remote gone: its peer and route go too.
        gone = cable_a.converge([])
        assert [r.dst for r in gone.removed] == ["242.2.0.0/16"]
        assert cable_a.peers() == {}
    finally:
        cable_a.remove()
        cable_b.remove()
    for ns, side in ((a, "a"), (b, "b")):
        assert IFNAME not in netns.run(ns, ["ip", "link"])
        assert processes_in(ns) == []
        assert list((tmp_path / f"run-{side}" / "wireguard").iterdir()) == []
    assert (tmp_path / "state-a" / KEY_FILE).exists()  # the key outlives the cable


def test_a_remote_without_a_key_is_not_configured(
        gateways: tuple[str, str], tmp_path: Path) -> None:
    a, _ = gateways
    cable_a = WireguardCable(A_IP, netns=a, state_dir=tmp_path / "s", run_root=tmp_path / "r")
    try:
        bare = RemoteGateway(B_IP, ("242.2.0.0/16",))
        assert cable_a.unusable(bare) == "no WireGuard public key in its Endpoint"
        assert cable_a.converge([bare]).changes == 0
        assert cable_a.peers() == {}
    finally:
        cable_a.remove()
    assert processes_in(a) == []


def test_kernel_wireguard_asked_for_where_there_is_none_is_one_line(
        gateways: tuple[str, str], tmp_path: Path) -> None:
    a, _ = gateways
    if kernel_has_wireguard(a):
        pytest.skip("this kernel has WireGuard")
    cable_a = WireguardCable(A_IP, netns=a, state_dir=tmp_path / "s", run_root=tmp_path / "r",
                             implementation="kernel")
    with pytest.raises(CableError, match=r"^kernel WireGuard: cannot create wg-globalnet"):
        cable_a.converge([])
    assert IFNAME not in netns.run(a, ["ip", "link"]) and processes_in(a) == []
