"""The route agent applies the cluster's VIP table ConfigMap on its node: a real API
server, the node a network namespace, the table a real nft table there.

Address conventions: VIPs 244.0.0.7 and 244.0.0.8; remote cluster west's global IP
242.1.0.7; the local ClusterIP 10.96.0.7.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from datapath.nftables.clustersetip import VipBackend, VipService, VipTable, plan_json
from datapath.routes import RouteTable
from gateway import viptable
from gateway.routeagent import RouteAgent
from kube import crud, names, resources
from kube.testing import await_condition
from lighthouse.agent.viptable import configmap

pytestmark = pytest.mark.kube


def web(vip: str = "244.0.0.7", *backends: VipBackend) -> VipService:
    return VipService(vip=vip, owner="shop/web", ports=(("tcp", 80),), backends=backends)


@pytest.fixture
def configmaps(api_client: Any) -> Iterator[crud.ResourceClient]:
    namespaces = crud.ResourceClient(api_client, resources.NAMESPACES)
    namespaces.create_if_absent({"metadata": {"name": names.CLUSTER_NAMESPACE}})
    client = crud.ResourceClient(api_client, resources.CONFIGMAPS)
    client.delete_if_exists(names.VIP_TABLE_CONFIGMAP, namespace=names.CLUSTER_NAMESPACE)
    yield client
    client.delete_if_exists(names.VIP_TABLE_CONFIGMAP, namespace=names.CLUSTER_NAMESPACE)


def write(client: crud.ResourceClient, text: str) -> None:
    client.apply(configmap(text), field_manager="test")


def test_the_node_follows_the_configmap_and_keeps_its_table_on_bad_input_and_at_stop(
        api_client: Any, make_netns: Callable[[str], str],
        configmaps: crud.ResourceClient) -> None:
    ns = make_netns("ravip")
    table = VipTable(ns)
    remote = VipBackend("west", "242.1.0.7", 1)
    write(configmaps, plan_json([web("244.0.0.7", remote)]))
    agent = RouteAgent(api_client, node_name=f"ra-{uuid.uuid4().hex[:6]}", cluster_id="c1",
                       table=RouteTable(ns)).start()
    stopped = False
    try:
        await_condition(lambda: "dnat to 242.1.0.7" in table.listing(), timeout=10,
                        message="the VIP table applied on the node")
        local = VipBackend("east", "10.96.0.7", 1, local=True)
        write(configmaps, plan_json([web("244.0.0.7", local), web("244.0.0.8", remote)]))
        await_condition(lambda: "244.0.0.8" in table.listing()
                        and "ip daddr set 10.96.0.7" in table.listing(), timeout=10,
                        message="the new plan applied")
        applied = table.listing()
        assert agent.vips is not None
        refused_before = agent.vips.applies
        write(configmaps, '{"version": 1, "services": [{"vip": "not-an-ip"}]}')
        await_condition(lambda: agent.vips is not None and agent.vips._refused is not None,
                        timeout=10, message="the bad plan seen and refused")
        assert table.listing() == applied and agent.vips.applies == refused_before
        configmaps.delete(names.VIP_TABLE_CONFIGMAP, namespace=names.CLUSTER_NAMESPACE)
        await_condition(lambda: table.listing() == "", timeout=10,
                        message="the table gone with the ConfigMap")
        write(configmaps, plan_json([web("244.0.0.7", remote)]))
        await_condition(lambda: "244.0.0.7" in table.listing(), timeout=10,
                        message="the table back with a new ConfigMap")
        agent.stop()
        stopped = True
        assert "244.0.0.7" in table.listing(), "a stopping route agent keeps the table"
        assert viptable.remove(ns) and table.listing() == ""
    finally:
        if not stopped:
            agent.stop()
