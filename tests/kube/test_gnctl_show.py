"""`gnctl show networks|endpoints|connections|gateways|brokers|globalnet|versions|all`
against a real API server.

The session's API server is both the Broker and member cluster c1. The module's
fixture writes what `gnctl deploy-broker`, `gnctl join` and the agents would: a
Broker in a namespace of its own (deploy.install.deploy_broker), c1 and c2 joined
(gateway.clusterset.join: global CIDRs from the Broker, the Cluster objects copied
into the cluster namespace), c1's Broker identity and the Secret join records it in,
the agents' DaemonSets and Deployment (deploy.manifests), two gateway nodes, the
gateway Lease, the engines' Gateway objects and Endpoints (gateway.engine's
endpoint_spec) and Globalnet's objects with their status. The cluster namespace is
a temporary one (`--namespace`, hidden), so other tests' leftovers cannot count.

Address convention: the API server listens on this test namespace's loopback
(tests/conftest.py). The clusterset's global range is 242.254.0.0/16 with 256
addresses per cluster: c1 gets 242.254.0.0/24, c2 242.254.1.0/24 (first come);
no other test uses 242.254. Pods 10.244.0.0/16, services 10.96.0.0/16, the gateways'
underlay 198.18.0.0/24 (c1 .1 and .2, c2 .11). Refused connections go to a loopback
port held bound without listening.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli import main as gnctl_main
from deploy import manifests
from gateway.engine import EngineConfig, endpoint_spec
from globalnet.controllers import reasons
from kube import conditions, crud, names, resources
from kube.client import new_api_client
from kube.testing import temporary_namespace, unique_name
from tests.kube import joined_world

pytestmark = [pytest.mark.kube]

GLOBAL_RANGE = "242.254.0.0/16"
C1_CIDR, C2_CIDR = "242.254.0.0/24", "242.254.1.0/24"
IMAGE = "globalnet/globalnet:v9.9"
RTT = {"last": "0.42ms", "min": "0.3ms", "average": "0.4ms", "max": "0.9ms"}


@dataclass(frozen=True)
class World:
    kubeconfig: Path
    server: str
    namespace: str  # the cluster namespace (names.CLUSTER_NAMESPACE when installed)
    broker_namespace: str
    active: str  # gateway node names
    standby: str


def _status(client: crud.ResourceClient, obj: dict[str, Any], status: dict[str, Any],
            namespace: str | None = None) -> None:
    created = client.create(obj, namespace=namespace)
    client.update_status({**created, "status": status}, namespace=namespace)


def _allocated(status: bool | str, reason: str, message: str = "allocated"
               ) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    conditions.set_condition(found, type=reasons.ALLOCATED, status=status, reason=reason,
                             message=message)
    return found


def _engine(cluster_id: str, node: str, ip: str, subnet: str) -> EngineConfig:
    return EngineConfig(cluster_id=cluster_id, node_name=node, private_ip=ip,
                        subnets=(subnet,))


def _gateways(api: Any, ns: str, broker_ns: str, active: str, standby: str) -> None:
    """Two c1 gateway nodes (one holds the Lease), their Gateway objects, the Endpoints."""
    nodes = crud.ResourceClient(api, resources.NODES)
    for node, ip in ((active, "242.254.0.254"), (standby, "242.254.0.253")):
        nodes.create({"metadata": {"name": node,
                                   "labels": {names.GATEWAY_LABEL: names.GATEWAY_LABEL_VALUE},
                                   "annotations": {names.GATEWAY_GLOBAL_IP_ANNOTATION: ip}}})
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    crud.ResourceClient(api, resources.LEASES).create({
        "metadata": {"name": names.GATEWAY_LEASE, "namespace": ns},
        "spec": {"holderIdentity": active, "leaseDurationSeconds": 1, "acquireTime": now,
                 "renewTime": now, "leaseTransitions": 3}})
    local = endpoint_spec(_engine("c1", active, "198.18.0.1", C1_CIDR), "242.254.0.254")
    remote = endpoint_spec(_engine("c2", "c2-gw", "198.18.0.11", C2_CIDR), "242.254.1.254")
    gone = endpoint_spec(_engine("c3", "c3-gw", "198.18.0.21", "242.254.2.0/24"), None)
    endpoints = crud.ResourceClient(api, resources.SUBMARINER_ENDPOINTS)
    for spec in (local, remote):
        endpoints.create({"metadata": {"name": f"{spec['cluster_id']}-{spec['hostname']}",
                                       "namespace": ns}, "spec": spec})
    endpoints.create({"metadata": {"name": f"c1-{active}", "namespace":
                                   names.broker_member_namespace("c1", broker_ns)},
                      "spec": local})
    gateways = crud.ResourceClient(api, resources.GATEWAYS)
    _status(gateways, {"metadata": {"name": active, "namespace": ns}}, {
        "haStatus": "active", "localEndpoint": local, "connections": [
            {"endpoint": remote, "usingIP": "198.18.0.11", "usingNAT": False,
             "status": "connected", "statusMessage": "242.254.1.254 answers",
             "latencyRTT": RTT, "cable": {"driver": "vxlan", "implementation": "kernel"}},
            {"endpoint": gone, "usingIP": "198.18.0.21", "usingNAT": False, "status": "error",
             "statusMessage": "no answer from 10.255.0.3"}]})
    _status(gateways, {"metadata": {"name": standby, "namespace": ns}},
            {"haStatus": "passive", "connections": []})


def _globalnet(api: Any, app_ns: str) -> None:
    """Globalnet's objects as its controllers leave them; one address twice."""
    cluster_egress = crud.ResourceClient(api, resources.CLUSTER_GLOBAL_EGRESS_IPS)
    if cluster_egress.get_or_none(names.CLUSTER_EGRESS_NAME) is not None:
        cluster_egress.delete(names.CLUSTER_EGRESS_NAME)  # another test's, left behind
    _status(cluster_egress, {"metadata": {"name": names.CLUSTER_EGRESS_NAME},
                             "spec": {"numGlobalIPs": 8}},
            {"allocatedIPs": [f"242.254.0.{i}" for i in range(1, 9)],
             "conditions": _allocated(True, reasons.SUCCESS)})
    egress = crud.ResourceClient(api, resources.GLOBAL_EGRESS_IPS)
    _status(egress, {"metadata": {"name": "ns-egress", "namespace": app_ns},
                     "spec": {"numberOfIPs": 2}},
            {"allocatedIPs": ["242.254.0.10", "242.254.0.11"],
             "conditions": _allocated(True, reasons.SUCCESS)})
    _status(egress, {"metadata": {"name": "greedy", "namespace": app_ns},
                     "spec": {"numberOfIPs": 20}},
            {"conditions": _allocated(False, reasons.IP_POOL_ALLOCATION_FAILED,
                                      "no 20 contiguous free addresses in 242.254.0.0/24")})
    ingress = crud.ResourceClient(api, resources.GLOBAL_INGRESS_IPS)
    _status(ingress, {"metadata": {"name": "web", "namespace": app_ns},
                      "spec": {"target": names.TARGET_CLUSTER_IP_SERVICE,
                               "serviceRef": {"name": "web"}}},
            {"allocatedIP": "242.254.0.20", "conditions": _allocated(True, reasons.SUCCESS)})
    _status(ingress, {"metadata": {"name": "twin", "namespace": app_ns},
                      "spec": {"target": names.TARGET_CLUSTER_IP_SERVICE,
                               "serviceRef": {"name": "twin"}}},
            {"allocatedIP": "242.254.0.11", "conditions": _allocated(True, reasons.SUCCESS)})
    ingress.create({"metadata": {"name": "db", "namespace": app_ns},
                    "spec": {"target": names.TARGET_CLUSTER_IP_SERVICE,
                             "serviceRef": {"name": "db"}}})


@pytest.fixture(scope="module")
def world(control_plane: Any) -> Iterator[World]:
    api = new_api_client(control_plane.kubeconfig)
    active, standby = unique_name("gn-show-gw"), unique_name("gn-show-gw")
    try:
        with contextlib.ExitStack() as stack:
            ns = stack.enter_context(temporary_namespace(api, "show"))
            app_ns = stack.enter_context(temporary_namespace(api, "showapp"))
            broker_ns = stack.enter_context(temporary_namespace(api, "showbrk"))
            for node in (active, standby):
                stack.callback(crud.ResourceClient(api, resources.NODES).delete_if_exists, node)
            stack.callback(crud.ResourceClient(api, resources.CLUSTER_GLOBAL_EGRESS_IPS)
                           .delete_if_exists, names.CLUSTER_EGRESS_NAME)
            assert joined_world.joined_broker(api, control_plane.server_url, ns, broker_ns, stack,
                                              global_range=GLOBAL_RANGE) == (C1_CIDR, C2_CIDR)
            joined_world.agent_workloads(api, ns, C1_CIDR, image=IMAGE)
            _gateways(api, ns, broker_ns, active, standby)
            _globalnet(api, app_ns)
            yield World(Path(control_plane.kubeconfig), control_plane.server_url, ns,
                        broker_ns, active, standby)
    finally:
        api.close()


def gnctl(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`gnctl ARGV` in this process: exit status, stdout, stderr."""
    code = gnctl_main.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def show(capsys: pytest.CaptureFixture[str], world: World, what: str, *extra: str
         ) -> dict[str, Any]:
    """`gnctl show WHAT -o json` of the world's cluster: its one context's document."""
    code, out, err = gnctl(capsys, "show", what, "--kubeconfig", str(world.kubeconfig),
                           "--namespace", world.namespace, "-o", "json", *extra)
    assert (code, err) == (0, ""), err
    doc = json.loads(out)
    assert len(doc) == 1 and doc[0]["server"] == world.server
    return dict(doc[0])


# --- the views --------------------------------------------------------------------------

def test_networks_name_every_member_and_mark_this_cluster(
        capsys: pytest.CaptureFixture[str], world: World) -> None:
    view = show(capsys, world, "networks")["networks"]
    assert view["local_cluster_id"] == "c1"
    assert view["datapath"] == "nftables"
    assert [(c["cluster_id"], c["local"], c["global_cidrs"], c["globalnet"])
            for c in view["clusters"]] == [("c1", True, [C1_CIDR], True),
                                           ("c2", False, [C2_CIDR], True)]
    assert view["clusters"][0]["pod_cidrs"] == ["10.244.0.0/16"]
    assert view["clusters"][0]["service_cidrs"] == ["10.96.0.0/16"]


def test_endpoints_show_each_cable_end(capsys: pytest.CaptureFixture[str],
                                       world: World) -> None:
    view = show(capsys, world, "endpoints")["endpoints"]
    assert [(e["cluster_id"], e["local"], e["hostname"], e["backend"], e["private_ip"],
             e["health_check_ip"], e["subnets"]) for e in view["endpoints"]] == [
        ("c1", True, world.active, "vxlan", "198.18.0.1", "242.254.0.254", [C1_CIDR]),
        ("c2", False, "c2-gw", "vxlan", "198.18.0.11", "242.254.1.254", [C2_CIDR])]


def test_connections_are_the_active_gateways(capsys: pytest.CaptureFixture[str],
                                             world: World) -> None:
    view = show(capsys, world, "connections")["connections"]
    assert view["active_gateway"] == world.active
    found = {c["cluster_id"]: c for c in view["connections"]}
    assert sorted(found) == ["c2", "c3"]
    assert (found["c2"]["status"], found["c2"]["driver"], found["c2"]["remote_ip"],
            found["c2"]["implementation"]) == ("connected", "vxlan", "198.18.0.11", "kernel")
    assert found["c2"]["rtt"] == {"last": "0.42ms", "min": "0.3ms", "average": "0.4ms",
                                  "max": "0.9ms", "std_dev": ""}
    assert found["c3"]["status"] == "error"
    assert found["c3"]["message"] == "no answer from 10.255.0.3"


def test_gateways_name_one_active_by_the_lease(capsys: pytest.CaptureFixture[str],
                                               world: World) -> None:
    view = show(capsys, world, "gateways")["gateways"]
    assert view["lease_holder"] == world.active
    assert view["lease_transitions"] == 3
    mine = {g["node"]: g for g in view["gateways"] if g["node"] in (world.active, world.standby)}
    active, standby = mine[world.active], mine[world.standby]
    assert (active["ha_status"], active["holds_lease"], active["connected"],
            active["connections"], active["labelled"]) == ("active", True, 1, 2, True)
    assert active["summary"].startswith("active, 1 of 2 connections established")
    assert (standby["ha_status"], standby["holds_lease"]) == ("passive", False)
    assert standby["summary"].startswith("passive")
    assert active["health_check_ip"] == "242.254.0.254"


def test_globalnet_counts_the_pool_and_lists_what_is_not_allocated(
        capsys: pytest.CaptureFixture[str], world: World) -> None:
    view = show(capsys, world, "globalnet")["globalnet"]
    assert (view["cluster_id"], view["enabled"]) == ("c1", True)
    # 8 cluster egress + 2 namespace egress, 2 ingress (.20, and .11 a second time),
    # 2 gateway health-check IPs: 13 distinct of the /24's 254 usable addresses.
    assert view["pools"] == [{"cidr": C1_CIDR, "size": 254, "allocated": 13, "available": 241,
                              "egress": 10, "ingress": 2, "gateway": 2}]
    assert view["duplicates"] == ["242.254.0.11"]
    unallocated = {(u["kind"], u["name"]): u for u in view["unallocated"]}
    greedy = unallocated[(reasons.KIND_EGRESS, "greedy")]
    assert (greedy["status"], greedy["reason"], greedy["requested"]) == (
        "False", reasons.IP_POOL_ALLOCATION_FAILED, 20)
    assert unallocated[(reasons.KIND_INGRESS, "db")]["status"] == ""
    assert (reasons.KIND_INGRESS, "web") not in unallocated
    assert (reasons.KIND_EGRESS, "ns-egress") not in unallocated


def test_versions_are_the_workloads_images(capsys: pytest.CaptureFixture[str],
                                           world: World) -> None:
    view = show(capsys, world, "versions")["versions"]
    rows = {(c["component"], c["container"]): c for c in view["components"]}
    assert rows[("gnctl", "")]["kind"] == "CLI"
    expected = {(manifests.GATEWAY_DAEMONSET, "gateway-engine"),
                (manifests.GATEWAY_DAEMONSET, "globalnet"),
                (manifests.ROUTE_AGENT_DAEMONSET, "route-agent"),
                (manifests.LIGHTHOUSE_DEPLOYMENT, "lighthouse-agent")}
    assert expected <= set(rows)
    for key in expected:
        assert (rows[key]["repository"], rows[key]["version"]) == ("globalnet/globalnet", "v9.9")
    assert rows[(manifests.LIGHTHOUSE_DEPLOYMENT, "lighthouse-agent")]["kind"] == "Deployment"
    assert rows[(manifests.LIGHTHOUSE_DEPLOYMENT, "lighthouse-agent")]["desired"] == 1


def test_brokers_through_the_recorded_member_identity(
        capsys: pytest.CaptureFixture[str], world: World) -> None:
    """The member's identity reads the Cluster objects and Endpoints, not the
    Globalnet record: the view says so and takes the CIDRs from the Clusters."""
    view = show(capsys, world, "brokers")["brokers"]
    assert view["server"] == world.server
    assert view["source"] == f"Secret {world.namespace}/{names.BROKER_KUBECONFIG_SECRET}"
    [namespace] = view["namespaces"]
    assert namespace["namespace"] == world.broker_namespace
    assert namespace["globalnet"] is None
    assert any("not readable with this identity" in note for note in namespace["notes"])
    assert [(m["cluster_id"], m["global_cidrs"], m["cable_driver"], m["published"],
             m["endpoints"]) for m in namespace["members"]] == [
        ("c1", [C1_CIDR], "vxlan", True, 1), ("c2", [C2_CIDR], "vxlan", True, 0)]


def test_brokers_through_a_named_broker(capsys: pytest.CaptureFixture[str],
                                        world: World) -> None:
    view = show(capsys, world, "brokers", "--broker-kubeconfig",
                str(world.kubeconfig))["brokers"]
    assert view["source"] == f"--broker-kubeconfig {world.kubeconfig}"
    found = {n["namespace"]: n for n in view["namespaces"]}
    mine = found[world.broker_namespace]
    assert (mine["globalnet"], mine["global_cidr_range"], mine["cluster_size"],
            mine["notes"]) == (True, GLOBAL_RANGE, 256, [])
    # deploy-broker's default ClusterSetIP pool, a slice per member.
    assert (mine["clusterset_ip_range"], mine["clusterset_ip_cluster_size"],
            mine["clusterset_ip_for_all"]) == ("244.0.0.0/8", 4096, False)
    assert [(m["cluster_id"], m["global_cidrs"], m["clusterset_ip_cidr"])
            for m in mine["members"]] == [
        ("c1", [C1_CIDR], "244.0.0.0/20"), ("c2", [C2_CIDR], "244.0.16.0/20")]


# --- all, output forms, contexts, errors ------------------------------------------------

def test_all_tables_say_what_matters(capsys: pytest.CaptureFixture[str], world: World) -> None:
    code, out, err = gnctl(capsys, "show", "all", "--kubeconfig", str(world.kubeconfig),
                           "--namespace", world.namespace)
    assert (code, err) == (0, "")
    for text in ("c1 (this cluster)", C1_CIDR, C2_CIDR, "198.18.0.11", world.active,
                 "connected", "0.42ms", "0.3ms / 0.4ms / 0.9ms", "1 of 2 connections",
                 "passive: standing by", world.broker_namespace, "not readable",
                 reasons.IP_POOL_ALLOCATION_FAILED, "242.254.0.11", "globalnet/globalnet",
                 "v9.9", "gateway Lease held by"):
        assert text in out, f"{text!r} missing from:\n{out}"


def test_all_as_yaml_has_every_section(capsys: pytest.CaptureFixture[str],
                                       world: World) -> None:
    code, out, err = gnctl(capsys, "show", "all", "--kubeconfig", str(world.kubeconfig),
                           "--namespace", world.namespace, "-o", "yaml")
    assert (code, err) == (0, "")
    [doc] = yaml.safe_load(out)
    assert list(doc) == ["context", "server", "networks", "endpoints", "connections",
                         "gateways", "brokers", "globalnet", "versions"]
    assert doc["gateways"]["lease_holder"] == world.active
    assert doc["globalnet"]["pools"][0]["allocated"] == 13


@pytest.fixture
def two_contexts(world: World, tmp_path: Path) -> Path:
    """The world's kubeconfig with its one cluster under two contexts, east and west."""
    config = yaml.safe_load(world.kubeconfig.read_text())
    context = config["contexts"][0]["context"]
    config["contexts"] = [{"name": name, "context": context} for name in ("east", "west")]
    config["current-context"] = "east"
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def test_contexts_each_get_their_section(capsys: pytest.CaptureFixture[str], world: World,
                                         two_contexts: Path) -> None:
    code, out, err = gnctl(capsys, "show", "gateways", "--kubeconfig", str(two_contexts),
                           "--namespace", world.namespace, "--contexts", "west,east",
                           "-o", "json")
    assert (code, err) == (0, "")
    doc = json.loads(out)
    assert [d["context"] for d in doc] == ["west", "east"]
    assert all(d["gateways"]["lease_holder"] == world.active for d in doc)
    code, out, err = gnctl(capsys, "show", "networks", "--kubeconfig", str(two_contexts),
                           "--namespace", world.namespace, "--context", "west",
                           "--contexts", "east", "--contexts", "west")
    assert (code, err) == (0, "")
    assert out.index("west: ") < out.index("east: ")
    assert out.count("c1 (this cluster)") == 2


def test_an_unknown_context_is_one_line(capsys: pytest.CaptureFixture[str], world: World,
                                        two_contexts: Path) -> None:
    code, out, err = gnctl(capsys, "show", "connections", "--kubeconfig", str(two_contexts),
                           "--namespace", world.namespace, "--contexts", "east",
                           "--contexts", "nope")
    assert code == 1
    assert out == ""  # nothing of east either: every context is checked first
    assert err.count("\n") == 1 and err.startswith("gnctl: ") and "'nope'" in err
    assert "east, west" in err  # the contexts it has


@pytest.fixture
def refused_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def test_a_cluster_without_a_broker(capsys: pytest.CaptureFixture[str], world: World,
                                    control_plane: Any, refused_port: int) -> None:
    """No recorded Broker: `show brokers` is one line; `show all` says it in the
    brokers section and shows the rest. A recorded Broker that does not answer is
    named with the way to pass another."""
    api = new_api_client(control_plane.kubeconfig)
    try:
        with temporary_namespace(api, "shownb") as empty:
            args = ["--kubeconfig", str(world.kubeconfig), "--namespace", empty]
            code, out, err = gnctl(capsys, "show", "brokers", *args)
            assert (code, out) == (1, "")
            assert err.count("\n") == 1 and "records no Broker" in err, err
            code, out, err = gnctl(capsys, "show", "all", *args, "-o", "json")
            assert (code, err) == (0, "")
            [doc] = json.loads(out)
            assert "records no Broker" in doc["brokers"]["error"]
            assert doc["networks"]["clusters"] == []
            config = {"apiVersion": "v1", "kind": "Config", "current-context": "b",
                      "clusters": [{"name": "b", "cluster": {
                          "server": f"https://127.0.0.1:{refused_port}",
                          "insecure-skip-tls-verify": True}}],
                      "contexts": [{"name": "b", "context": {"cluster": "b", "user": "u"}}],
                      "users": [{"name": "u", "user": {"token": "t0ken"}}]}
            crud.ResourceClient(api, resources.SECRETS).create({
                "metadata": {"name": names.BROKER_KUBECONFIG_SECRET, "namespace": empty},
                "data": {names.BROKER_KUBECONFIG_KEY: base64.b64encode(
                    json.dumps(config).encode()).decode()}})
            code, out, err = gnctl(capsys, "show", "brokers", *args)
            assert (code, out) == (1, "")
            assert err.count("\n") == 1, err
            assert f"cannot reach the Broker at https://127.0.0.1:{refused_port}" in err
            assert "--broker-kubeconfig" in err
    finally:
        api.close()
