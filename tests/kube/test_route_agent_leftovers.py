"""The route agent against a real API server, its node a network namespace: a node
that is no gateway any more loses what its gateway left - the cable's routes
(proto 150) and the standby conntrack table - and a gateway node keeps them (its
engine's, across an engine restart); a deposed gateway node routes to the new active
one the moment its engine removes the cable's routes. Addresses: 198.18.11.0/24
underlay, 172.18.91.0/24 the node network, 242.91.0.0/16 a remote global CIDR."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from datapath.ctsync import STANDBY_TABLE, Standby
from datapath.routes import RTPROT_CABLE, Route, RouteTable
from gateway import metrics
from gateway.routeagent import RouteAgent
from kube import crud, names, resources
from kube.testing import await_condition, cluster_object
from lab import netns

pytestmark = pytest.mark.kube


@pytest.fixture
def node(api_client: Any) -> Iterator[Callable[[bool], str]]:
    nodes = crud.ResourceClient(api_client, resources.NODES)
    made: list[str] = []

    def make(gateway: bool) -> str:
        name = f"ra-{uuid.uuid4().hex[:6]}"
        labels = {names.GATEWAY_LABEL: names.GATEWAY_LABEL_VALUE} if gateway else {}
        nodes.create({"metadata": {"name": name, "labels": labels}})
        made.append(name)
        return name

    yield make
    for name in made:
        nodes.delete_if_exists(name)


def leftovers(ns: str) -> tuple[set[Route], bool]:
    routes = RouteTable(ns, proto=RTPROT_CABLE).installed()
    tables = netns.run(ns, ["nft", "list", "tables"])
    return routes, STANDBY_TABLE in tables


def with_gateway_leftovers(ns: str, far: str) -> None:
    netns.ensure_veth(netns=ns, ifname="ul0", peer_netns=far, peer_ifname="ul0",
                      address="198.18.11.1/24", peer_address="198.18.11.2/24")
    RouteTable(ns, proto=RTPROT_CABLE).converge({Route("242.91.0.0/16", "198.18.11.2")})
    Standby(ns).converge(("242.91.0.0/16",))
    assert leftovers(ns) == ({Route("242.91.0.0/16", "198.18.11.2")}, True)


def test_a_node_that_is_no_gateway_any_more_loses_the_cable_and_the_standby_table(
        api_client: Any, make_netns: Callable[[str], str],
        node: Callable[[bool], str]) -> None:
    ns = make_netns("ragw")
    with_gateway_leftovers(ns, make_netns("ragwfar"))
    agent = RouteAgent(api_client, node_name=node(False), cluster_id="c1",
                       table=RouteTable(ns)).start()
    try:
        await_condition(lambda: leftovers(ns) == (set(), False), timeout=10,
                        message="the former gateway's cable routes and standby table gone")
    finally:
        agent.stop()


def test_a_gateway_node_keeps_its_engines_cable_and_standby_table(
        api_client: Any, make_netns: Callable[[str], str],
        node: Callable[[bool], str]) -> None:
    ns = make_netns("rakeep")
    with_gateway_leftovers(ns, make_netns("rakfar"))
    name = node(True)
    agent = RouteAgent(api_client, node_name=name, cluster_id="c1",
                       table=RouteTable(ns)).start()
    try:
        await_condition(lambda: agent.nodes.get(name) is not None, timeout=10,
                        message="the agent knows its node")
        rounds = metrics.ROUTE_CONVERGES.labels(result="ok")
        before = rounds._value.get()
        agent._dirty.set()  # one more round, now that it knows its node
        await_condition(lambda: rounds._value.get() > before, timeout=10,
                        message="a round of the agent")
        assert leftovers(ns) == ({Route("242.91.0.0/16", "198.18.11.2")}, True)
    finally:
        agent.stop()


def test_a_deposed_gateway_routes_to_the_new_one_as_soon_as_its_cable_lets_go(
        api_client: Any, make_netns: Callable[[str], str],
        node: Callable[[bool], str]) -> None:
    """The cable's route to the remote CIDR is still there when the route agent of
    the deposed gateway node learns who is active: its own route waits (never
    replacing the engine's), and follows the cable route's removal at once, not at the
    periodic check (an hour here)."""
    ns = make_netns("radepo")
    with_gateway_leftovers(ns, make_netns("radfar"))
    netns.run(ns, ["ip", "addr", "add", "172.18.91.10/24", "dev", "ul0"])  # node network
    mine, active = node(True), node(True)
    nodes = crud.ResourceClient(api_client, resources.NODES)
    for name, ip in ((mine, "172.18.91.10"), (active, "172.18.91.11")):
        obj = nodes.get(name)
        obj["status"] = {"addresses": [{"type": "InternalIP", "address": ip}]}
        nodes.update_status(obj)
    crud.ensure_namespace(api_client, names.CLUSTER_NAMESPACE)
    remote = f"far-{uuid.uuid4().hex[:6]}"
    clusters = crud.ResourceClient(api_client, resources.CLUSTERS)
    gateways = crud.ResourceClient(api_client, resources.GATEWAYS)
    clusters.create(cluster_object(remote, "242.91.0.0/16"), namespace=names.CLUSTER_NAMESPACE)
    gateway = gateways.create({"metadata": {"name": active}}, namespace=names.CLUSTER_NAMESPACE)
    gateway["status"] = {"haStatus": "active"}
    gateways.update_status(gateway)
    rounds = metrics.ROUTE_CONVERGES.labels(result="ok")
    before = rounds._value.get()
    agent = RouteAgent(api_client, node_name=mine, cluster_id="c1", table=RouteTable(ns),
                       check_period=3600).start()
    wanted = Route("242.91.0.0/16", "172.18.91.11")
    try:
        await_condition(lambda: rounds._value.get() > before, timeout=10,
                        message="a round of the agent, with everything synced")
        assert wanted not in RouteTable(ns).installed()
        assert leftovers(ns)[0] == {Route("242.91.0.0/16", "198.18.11.2")}
        RouteTable(ns, proto=RTPROT_CABLE).clear()  # what the deposed engine does
        await_condition(lambda: wanted in RouteTable(ns).installed(), timeout=5,
                        message="the route to the new active gateway")
    finally:
        agent.stop()
        clusters.delete_if_exists(remote, namespace=names.CLUSTER_NAMESPACE)
        gateways.delete_if_exists(active, namespace=names.CLUSTER_NAMESPACE)
