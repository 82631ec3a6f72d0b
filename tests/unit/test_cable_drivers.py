"""The cable drivers by name, the refusal between drivers, and what the engine
publishes and reports per driver (no kernel touched: constructors only)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from datapath import cable_drivers
from datapath.cable import CableError, PeerState, RemoteGateway
from datapath.ipsec import IpsecCable
from datapath.vxlan import VxlanCable
from datapath.wireguard import KEY_FILE, WireguardCable, load_or_create_key
from gateway.engine import EngineConfig, _without_rtt, cable_state, endpoint_spec, remote_gateway


def test_the_registry_knows_vxlan_wireguard_and_ipsec(tmp_path: Path) -> None:
    assert cable_drivers.names() == ("vxlan", "wireguard", "ipsec")
    opts = cable_drivers.CableOptions("198.18.0.10", state_dir=tmp_path)
    vx = cable_drivers.new_cable("vxlan", opts)
    wg = cable_drivers.new_cable("wireguard", opts)
    assert isinstance(vx, VxlanCable) and vx.driver == "vxlan"
    assert isinstance(wg, WireguardCable) and wg.driver == "wireguard"
    assert wg.mtu == 1420 and vx.tunnel_ip("198.18.0.10") == "240.18.0.10"
    assert wg.tunnel_ip("198.18.0.10") == "241.18.0.10"
    ipsec = cable_drivers.new_cable("ipsec", cable_drivers.CableOptions("198.18.0.10",
                                                                         psk="secret"))
    assert isinstance(ipsec, IpsecCable) and ipsec.driver == "ipsec" and ipsec.psk == "secret"
    assert ipsec.tunnel_ip("198.18.0.10") == "243.18.0.10" and ipsec.mtu == 1400
    assert ipsec.backend_config() == {"ike-port": "500", "udp-port": "4500"}
    with pytest.raises(CableError, match=r"^unknown cable driver 'geneve' \(known: vxlan, "
                                         r"wireguard, ipsec\)$"):
        cable_drivers.new_cable("geneve", opts)


def test_drivers_that_differ_refuse_with_one_line() -> None:
    assert cable_drivers.mismatch("wireguard", "wireguard") is None
    assert cable_drivers.mismatch("wireguard", "vxlan") == (
        "cable driver mismatch: local wireguard, remote vxlan")
    assert cable_drivers.backend_of({"backend": "wireguard"}) == "wireguard"
    assert cable_drivers.backend_of({}) == "vxlan"  # Endpoints from before the drivers


def test_the_key_pair_is_made_once_and_kept(tmp_path: Path) -> None:
    private, public = load_or_create_key(tmp_path / "s")
    assert (tmp_path / "s" / KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert len(base64.b64decode(private)) == len(base64.b64decode(public)) == 32
    assert load_or_create_key(tmp_path / "s") == (private, public)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / KEY_FILE).write_text("nonsense\n")
    with pytest.raises(CableError, match="holds no WireGuard private key"):
        load_or_create_key(tmp_path / "bad")


def test_wireguard_publishes_its_key_and_port_and_checks_the_remotes(tmp_path: Path) -> None:
    wg = WireguardCable("198.18.0.10", state_dir=tmp_path)
    cfg = EngineConfig(cluster_id="c1", node_name="gw", private_ip="198.18.0.10",
                       subnets=("242.0.0.0/16",), cable_driver="wireguard")
    spec = endpoint_spec(cfg, None, wg.backend_config())
    assert (spec["backend"], spec["cable_name"]) == ("wireguard", "wireguard-c1-gw")
    assert spec["backend_config"] == {"publicKey": wg.public_key, "udp-port": "51820"}
    ep: dict[str, Any] = {"metadata": {"name": "c1-gw"}, "spec": spec}
    remote = remote_gateway(ep)
    assert remote.config("publicKey") == wg.public_key and wg.unusable(remote) is None
    assert wg.unusable(RemoteGateway("198.18.0.11", ())) == (
        "no WireGuard public key in its Endpoint")
    assert "is not valid" in str(wg.unusable(RemoteGateway(
        "198.18.0.11", (), (("publicKey", "abc"),))))


def test_counters_alone_do_not_make_a_new_status(tmp_path: Path) -> None:
    wg = WireguardCable("198.18.0.10", state_dir=tmp_path)
    wg.mode = "wireguard-go"
    one = cable_state(wg, PeerState(1_700_000_000, 10, 20, "198.18.0.11:51820"),
                      1_700_000_003)
    two = cable_state(wg, PeerState(1_700_000_005, 99, 99, "198.18.0.11:51820"),
                      1_700_000_006)
    assert one == {"driver": "wireguard", "implementation": "wireguard-go", "rxBytes": 10,
                   "txBytes": 20, "latestHandshake": "2023-11-14T22:13:20Z",
                   "handshakeAgeSeconds": 3}
    status = [{"haStatus": "active", "connections": [{"status": "connected", "cable": c}]}
              for c in (one, two)]
    assert _without_rtt(status[0]) != _without_rtt({"haStatus": "active", "connections": [
        {"status": "connected", "cable": {**one, "implementation": "kernel"}}]})
    assert _without_rtt(status[0]) == _without_rtt(status[1])


def test_before_the_first_handshake_the_status_has_no_handshake_time(tmp_path: Path) -> None:
    wg = WireguardCable("198.18.0.10", state_dir=tmp_path)
    wg.mode = "wireguard-go"
    state = cable_state(wg, PeerState(0, 0, 0, ""), 1_700_000_000)
    assert "latestHandshake" not in state and "handshakeAgeSeconds" not in state
