"""The gateway engine against a real API server, its cable in a namespace.

The session's API server plays the cluster and the Broker (temporary
namespaces; east joined on the Broker side as `gnctl join` does). Checked: the
engine leads, withdraws the Endpoint an earlier gateway of its cluster left in
its member namespace on the Broker, publishes its own there, builds the cable
to the other cluster's Endpoint and reports the connection in its Gateway
status - `error` while nobody answers at the far end; another member's Broker
syncer copies the published Endpoint in. Addresses: underlay 198.18.7.1 (ours)
and 198.18.7.2 (remote), global CIDRs 242.80/81.0.0/16.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.configuration import Configuration

from datapath.cable import PeerState, RemoteGateway
from datapath.vxlan import VxlanCable
from datapath.wireguard import WireguardCable
from gateway.engine import EngineConfig, GatewayEngine, cable_state
from gateway.syncer import ClusterSyncer
from kube import crud, names, resources
from kube.rest import ApiClient
from kube.testing import await_condition, broker_member, temporary_namespace
from lab import netns

pytestmark = pytest.mark.kube


def endpoint(name: str, cluster: str, ip: str, subnet: str) -> dict[str, Any]:
    return {"apiVersion": "submariner.io/v1", "kind": "Endpoint", "metadata": {"name": name},
            "spec": {"cluster_id": cluster, "cable_name": f"vxlan-{name}", "hostname": name,
                     "private_ip": ip, "subnets": [subnet], "backend": "vxlan"}}


def test_the_engine_publishes_cables_and_reports(
        api_client: Any, make_netns: Callable[[str], str]) -> None:
    gw = make_netns("eng")
    netns.ensure_veth(netns=gw, ifname="ul0", peer_netns=make_netns("far"), peer_ifname="ul0",
                      address="198.18.7.1/24", peer_address="198.18.7.2/24")
    endpoints = crud.ResourceClient(api_client, resources.SUBMARINER_ENDPOINTS)
    with temporary_namespace(api_client, "broker") as broker_ns, \
            temporary_namespace(api_client, "member") as member_ns, \
            temporary_namespace(api_client, "westside") as west_side, \
            broker_member(api_client, broker_ns, "east", global_cidr="242.80.0.0/16") as east:
        endpoints.create(endpoint("east-old-gw", "east", "198.18.7.9", "242.80.0.0/16"),
                         namespace=east)
        # What the syncer would have copied in: the other cluster's Endpoint.
        endpoints.create(endpoint("west-gw", "west", "198.18.7.2", "242.81.0.0/16"),
                         namespace=member_ns)
        cfg = EngineConfig(cluster_id="east", node_name="east-gw", private_ip="198.18.7.1",
                           subnets=("242.80.0.0/16",), namespace=member_ns,
                           broker_namespace=broker_ns, lease_duration=2.0,
                           renew_deadline=1.5, retry_period=0.25, health_period=0.2)
        engine = GatewayEngine(local_api=api_client, broker_api=api_client, cfg=cfg,
                               cable=VxlanCable("198.18.7.1", netns=gw)).start()
        try:
            def published() -> set[str] | None:
                names = {e["metadata"]["name"]
                         for e in endpoints.list(namespace=east).items}
                return names if names == {"east-east-gw"} else None

            await_condition(published, timeout=20, message="ours published, the stale gone")
            assert endpoints.list(namespace=broker_ns).items == []
            lease = crud.ResourceClient(api_client, resources.LEASES).get(
                names.GATEWAY_LEASE, namespace=member_ns)
            ours = endpoints.get("east-east-gw", namespace=east)
            assert ours["spec"]["gatewayTerm"] == lease["spec"].get("leaseTransitions", 0)
            # A deposed gateway's publish that lands late, after this term's one
            # Broker sweep: its copy in the cluster is enough to have it withdrawn.
            late = endpoint("east-late-gw", "east", "198.18.7.8", "242.80.0.0/16")
            endpoints.create(late, namespace=east)
            endpoints.create(late, namespace=member_ns)
            await_condition(published, timeout=20, message="the late stale Endpoint withdrawn")
            # Another member's syncer (west's cluster namespace here) copies it in.
            syncer = ClusterSyncer(local_api=api_client, broker_api=api_client,
                                   broker_namespace=broker_ns, cluster_namespace=west_side)
            syncer.start()
            try:
                await_condition(
                    lambda: [e["spec"]["private_ip"] for e in endpoints.list(
                        namespace=west_side).items] == ["198.18.7.1"],
                    timeout=20, message="east's Endpoint copied into west")
            finally:
                syncer.stop()
            gateways = crud.ResourceClient(api_client, resources.GATEWAYS)

            def reported() -> dict[str, Any] | None:
                # "connecting" until the first health ping has an answer or times out.
                obj = gateways.get_or_none("east-gw", namespace=member_ns)
                status = (obj or {}).get("status") or {}
                conns = status.get("connections") or []
                return status if conns and conns[0]["status"] != "connecting" else None

            status = await_condition(reported, timeout=20, message="a Gateway status")
            assert status is not None and status["haStatus"] == "active"
            (conn,) = status["connections"]
            assert conn["endpoint"]["cluster_id"] == "west"
            assert conn["status"] == "error"  # no engine at the far end answers
            route = netns.run(gw, ["ip", "route", "show", "242.81.0.0/16"])
            assert "via 240.18.7.2 dev vx-globalnet" in route and "proto 150" in route
        finally:
            engine.stop()


def test_a_wireguard_engine_connects_wireguard_and_refuses_vxlan(
        api_client: Any, make_netns: Callable[[str], str], tmp_path: Path) -> None:
    """East runs WireGuard; west's gateway (a WireGuard cable in `far`, converged to
    east's published key) is connected through it with the driver's handshake and
    counters in the status; north, a VXLAN cluster, is refused with the reason."""
    gw, far = make_netns("weng"), make_netns("wfar")
    netns.ensure_veth(netns=gw, ifname="ul0", peer_netns=far, peer_ifname="ul0",
                      address="198.18.7.1/24", peer_address="198.18.7.2/24")
    east_cable = WireguardCable("198.18.7.1", netns=gw, state_dir=tmp_path / "east",
                                run_root=tmp_path / "east-run")
    west_cable = WireguardCable("198.18.7.2", netns=far, state_dir=tmp_path / "west",
                                run_root=tmp_path / "west-run")
    endpoints = crud.ResourceClient(api_client, resources.SUBMARINER_ENDPOINTS)
    gateways = crud.ResourceClient(api_client, resources.GATEWAYS)
    engine = None
    try:
        with temporary_namespace(api_client, "broker") as broker_ns, \
                temporary_namespace(api_client, "member") as member_ns, \
                broker_member(api_client, broker_ns, "east", global_cidr="242.80.0.0/16") as east:
            west = endpoint("west-gw", "west", "198.18.7.2", "242.81.0.0/16")
            west["spec"].update(backend="wireguard", backend_config=west_cable.backend_config())
            endpoints.create(west, namespace=member_ns)
            endpoints.create(endpoint("north-gw", "north", "198.18.7.3", "242.82.0.0/16"),
                             namespace=member_ns)
            west_cable.converge([RemoteGateway("198.18.7.1", ("242.80.0.0/16",), tuple(
                sorted(east_cable.backend_config().items())))])
            cfg = EngineConfig(cluster_id="east", node_name="east-gw", private_ip="198.18.7.1",
                               subnets=("242.80.0.0/16",), namespace=member_ns,
                               broker_namespace=broker_ns, lease_duration=2.0,
                               renew_deadline=1.5, retry_period=0.25, health_period=0.2,
                               cable_driver="wireguard")
            engine = GatewayEngine(local_api=api_client, broker_api=api_client, cfg=cfg,
                                   cable=east_cable).start()

            def connections() -> dict[str, dict[str, Any]] | None:
                obj = gateways.get_or_none("east-gw", namespace=member_ns)
                conns = {c["endpoint"]["cluster_id"]: c
                         for c in ((obj or {}).get("status") or {}).get("connections") or []}
                west_conn = conns.get("west") or {}
                return conns if west_conn.get("status") == "connected" else None

            conns = await_condition(connections, timeout=30, message="west connected")
            assert conns is not None
            assert conns["north"]["status"] == "error"
            assert conns["north"]["statusMessage"] == (
                "cable driver mismatch: local wireguard, remote vxlan")
            cable = conns["west"]["cable"]
            assert (cable["driver"], cable["implementation"]) == ("wireguard", "wireguard-go")
            assert cable["latestHandshake"] and cable["rxBytes"] > 0
            assert conns["west"]["latencyRTT"]["last"].endswith("ms")
            (published,) = endpoints.list(namespace=east).items
            assert published["spec"]["backend"] == "wireguard"
            assert published["spec"]["backend_config"]["publicKey"] == east_cable.public_key
            route = netns.run(gw, ["ip", "route", "show", "proto", "150"])
            assert "242.81.0.0/16 via 241.18.7.2 dev wg-globalnet" in route
            assert "242.82.0.0/16" not in route  # the refused VXLAN cluster
    finally:
        if engine is not None:
            engine.stop()
        east_cable.remove()
        west_cable.remove()


def test_the_engine_replicates_conntrack_state_to_the_other_gateway_nodes(
        api_client: Any, make_netns: Callable[[str], str], tmp_path: Path) -> None:
    """Every gateway node's engine runs conntrackd towards the other gateway nodes'
    InternalIPs (read from their Node objects), passive or active, and stops it when
    it is the only gateway left; the Gateway status says so."""
    import shutil
    import uuid

    from datapath.ctsync import ConntrackSync
    from kube import names

    if shutil.which("conntrackd") is None:
        pytest.skip("conntrackd not installed (scripts/install-deps.sh)")
    gw = make_netns("cts")
    netns.ensure_veth(netns=gw, ifname="eth0", peer_netns=make_netns("ctp"),
                      peer_ifname="eth0", address="10.77.0.1/24", peer_address="10.77.0.2/24")
    nodes = crud.ResourceClient(api_client, resources.NODES)
    tag = uuid.uuid4().hex[:6]
    mine, peer = f"ct-{tag}-a", f"ct-{tag}-b"

    def make_node(name: str, ip: str) -> None:
        node = nodes.create({"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": name, "labels": {names.GATEWAY_LABEL: names.GATEWAY_LABEL_VALUE}}})
        node["status"] = {"addresses": [{"type": "InternalIP", "address": ip}]}
        nodes.update_status(node)

    gateways = crud.ResourceClient(api_client, resources.GATEWAYS)
    with temporary_namespace(api_client, "broker") as broker_ns, \
            temporary_namespace(api_client, "member") as member_ns, \
            broker_member(api_client, broker_ns, "north", global_cidr="242.82.0.0/16"):
        make_node(mine, "10.77.0.1")
        make_node(peer, "10.77.0.2")
        cfg = EngineConfig(cluster_id="north", node_name=mine, private_ip="10.77.0.1",
                           subnets=("242.82.0.0/16",), namespace=member_ns,
                           broker_namespace=broker_ns, lease_duration=2.0,
                           renew_deadline=1.5, retry_period=0.25, health_period=0.2)
        sync = ConntrackSync(tmp_path / "ctsync", netns=gw)
        engine = GatewayEngine(local_api=api_client, broker_api=api_client, cfg=cfg,
                               cable=VxlanCable("10.77.0.1", netns=gw), ctsync=sync).start()
        try:
            def sync_status() -> dict[str, Any]:
                obj = gateways.get_or_none(mine, namespace=member_ns) or {}
                return dict((obj.get("status") or {}).get("conntrackSync") or {})

            await_condition(lambda: sync_status().get("state") == "running", timeout=20,
                            message=lambda: f"conntrackd running, not {sync_status()}")
            assert sync_status()["peers"] == ["10.77.0.2"]
            conf = (tmp_path / "ctsync" / "conntrackd.conf").read_text()
            assert "IPv4_Destination_Address 10.77.0.2" in conf
            assert "Interface eth0" in conf and "IPv4_address 242.82.0.0/16" in conf
            nodes.delete(peer)
            await_condition(lambda: sync_status().get("state") == "idle", timeout=20,
                            message="conntrackd stopped: no other gateway node")
            assert not sync.running()
        finally:
            engine.stop()
            for name in (mine, peer):
                nodes.delete_if_exists(name)
        assert not sync.running()


@contextlib.contextmanager
def engine_beside(api_client: Any, make_netns: Callable[[str], str], broker: ApiClient,
                  net: int, eligible: Callable[[], bool] | None = None
                  ) -> Iterator[tuple[GatewayEngine, str, str]]:
    """East's engine (underlay 198.18.<net>.1, global CIDR 242.<2 net>.0.0/16) with
    `broker` for its Broker, west's Endpoint (198.18.<net>.2) already copied in:
    (engine, its netns, the cluster namespace)."""
    gw = make_netns(f"bk{net}")
    netns.ensure_veth(netns=gw, ifname="ul0", peer_netns=make_netns(f"bkfar{net}"),
                      peer_ifname="ul0", address=f"198.18.{net}.1/24",
                      peer_address=f"198.18.{net}.2/24")
    endpoints = crud.ResourceClient(api_client, resources.SUBMARINER_ENDPOINTS)
    with temporary_namespace(api_client, "member") as member_ns:
        endpoints.create(endpoint("west-gw", "west", f"198.18.{net}.2",
                                  f"242.{2 * net + 1}.0.0/16"), namespace=member_ns)
        cfg = EngineConfig(cluster_id="east", node_name="east-gw",
                           private_ip=f"198.18.{net}.1", subnets=(f"242.{2 * net}.0.0/16",),
                           namespace=member_ns, lease_duration=2.0, renew_deadline=1.5,
                           retry_period=0.25, health_period=0.2)
        engine = GatewayEngine(local_api=api_client, broker_api=broker, cfg=cfg,
                               cable=VxlanCable(f"198.18.{net}.1", netns=gw),
                               eligible=eligible).start()
        try:
            yield engine, gw, member_ns
        finally:
            engine.stop()


def cable_to_west(gw: str, net: int) -> bool:
    return f"via 240.18.{net}.2" in netns.run(gw, ["ip", "route", "show",
                                                 f"242.{2 * net + 1}.0.0/16"])


def test_a_hanging_broker_holds_up_neither_the_cable_nor_stepping_down(
        api_client: Any, make_netns: Callable[[str], str]) -> None:
    """The Broker accepts connections and never answers (the publisher's request
    waits for its whole read timeout): the cable still follows the remote
    Endpoint, and a gateway that turns ineligible removes its cable at once -
    a deposed gateway's cable left up sends its node's replies into a dead tunnel."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel completes the handshakes; nobody reads
    broker = ApiClient(Configuration(host=f"http://127.0.0.1:{silent.getsockname()[1]}"))
    eligible = threading.Event()
    eligible.set()
    try:
        with engine_beside(api_client, make_netns, broker, 8, eligible.is_set) as (
                engine, gw, _ns):
            await_condition(lambda: cable_to_west(gw, 8), timeout=20,
                            message="the cable to west, the Broker hanging")
            time.sleep(0.5)  # the publisher's request is in flight
            eligible.clear()
            await_condition(lambda: not engine.cable.exists(), timeout=5,
                            message="the cable removed while the Broker hangs")
            assert not engine.active
            silent.close()  # before the engine stops: the hanging request fails at once
    finally:
        silent.close()


def test_a_cable_without_a_handshake_yet_is_a_status_the_api_server_takes(
        api_client: Any, tmp_path: Path) -> None:
    """Before WireGuard's first handshake: the status written then is one the API
    server takes (no handshake time, counters at zero)."""
    wg = WireguardCable("198.18.9.1", state_dir=tmp_path)
    wg.mode = "wireguard-go"
    gateways = crud.ResourceClient(api_client, resources.GATEWAYS)
    with temporary_namespace(api_client, "nohs") as ns:
        gateway = gateways.create({"apiVersion": resources.GATEWAYS.api_version,
                                   "kind": resources.GATEWAYS.kind,
                                   "metadata": {"name": "gw", "namespace": ns}}, namespace=ns)
        conn = {"status": "connecting", "statusMessage": "checking 242.1.0.9",
                "endpoint": endpoint("west-gw", "west", "198.18.9.2", "242.1.0.0/16")["spec"],
                "cable": cable_state(wg, PeerState(0, 0, 0, ""), time.time())}
        gateway["status"] = {"haStatus": "active", "connections": [conn]}
        written = gateways.update_status(gateway, namespace=ns)
        assert written["status"]["connections"][0]["cable"]["rxBytes"] == 0


def test_a_broker_that_refuses_the_endpoint_is_named_in_the_gateway_status(
        api_client: Any, make_netns: Callable[[str], str]) -> None:
    """The Broker unreachable (nothing listens at its address): the cable still
    follows the remote Endpoint the cluster holds, and the Gateway status says why
    the Endpoint is not published, in one line."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now: connections are refused
    broker = ApiClient(Configuration(host=f"http://127.0.0.1:{port}"))
    gateways = crud.ResourceClient(api_client, resources.GATEWAYS)
    with engine_beside(api_client, make_netns, broker, 10) as (_engine, gw, member_ns):
        def failure() -> str | None:
            obj = gateways.get_or_none("east-gw", namespace=member_ns) or {}
            return (obj.get("status") or {}).get("statusFailure")

        message = await_condition(failure, timeout=30, message="a publish failure")
        assert message is not None
        assert message.startswith("could not publish the Endpoint to the Broker: ")
        assert "\n" not in message
        assert cable_to_west(gw, 10)
