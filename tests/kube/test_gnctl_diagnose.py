"""`gnctl diagnose globalnet|service-discovery` against a real API server.

The session's API server is both the Broker and member cluster c1. The module's
fixture writes what `gnctl deploy-broker`, `gnctl join` and the agents would: a
Broker in a namespace of its own, c1 and c2 joined (global CIDRs from the Broker,
Cluster objects copied into the cluster namespace), c1's Broker identity recorded
in its Secret, and the agents' workloads (deploy.manifests). Each test then writes
the objects the agents would leave - a GlobalIngressIP refused by the pool, a third
cluster claiming c1's global CIDR, an export nobody imported - and checks that the
one check about it FAILs, then PASSes once the state is mended. Probe pods are off
(`--no-probe-pods`): this API server has no kubelet.

Address convention: the clusterset's global range is 242.252.0.0/16 with 256
addresses per cluster: c1 242.252.0.0/24, c2 242.252.1.0/24; no other test uses
242.252. Pods 10.244.0.0/16, services 10.96.0.0/16.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cli import main as gnctl_main
from globalnet.controllers import reasons
from kube import conditions, crud, discovery, names, resources
from kube.client import new_api_client
from kube.testing import temporary_namespace
from lighthouse.agent import reasons as lreasons
from lighthouse.agent import render
from tests.kube import joined_world

pytestmark = [pytest.mark.kube]

GLOBAL_RANGE = "242.252.0.0/16"
C1_CIDR, C2_CIDR = "242.252.0.0/24", "242.252.1.0/24"


@dataclass(frozen=True)
class World:
    api: Any
    kubeconfig: Path
    namespace: str
    app_namespace: str
    broker_namespace: str


def _condition(ctype: str, status: bool, reason: str, message: str = "ok") -> list[Any]:
    found: list[Any] = []
    conditions.set_condition(found, type=ctype, status=status, reason=reason, message=message)
    return found


@pytest.fixture(scope="module")
def world(control_plane: Any) -> Iterator[World]:
    api = new_api_client(control_plane.kubeconfig)
    try:
        with contextlib.ExitStack() as stack:
            ns = stack.enter_context(temporary_namespace(api, "diag"))
            app_ns = stack.enter_context(temporary_namespace(api, "diagapp"))
            broker_ns = stack.enter_context(temporary_namespace(api, "diagbrk"))
            assert joined_world.joined_broker(api, control_plane.server_url, ns, broker_ns, stack,
                                              global_range=GLOBAL_RANGE) == (C1_CIDR, C2_CIDR)
            joined_world.agent_workloads(api, ns, C1_CIDR)
            yield World(api, Path(control_plane.kubeconfig), ns, app_ns, broker_ns)
    finally:
        api.close()


def diagnose(capsys: pytest.CaptureFixture[str], world: World, group: str
             ) -> tuple[int, dict[tuple[str, str], dict[str, Any]]]:
    """`gnctl diagnose GROUP -o json`: exit status and the checks by (group, name)."""
    code = gnctl_main.main(["diagnose", group, "--kubeconfig", str(world.kubeconfig),
                            "--namespace", world.namespace, "--no-probe-pods", "-o", "json"])
    out, err = capsys.readouterr()
    assert err == "", err
    doc = json.loads(out)
    assert doc["passed"] == (code == 0)
    return code, {(c["group"], c["name"]): c for c in doc["checks"]}


def _with_status(client: crud.ResourceClient, obj: dict[str, Any], status: dict[str, Any]
                 ) -> dict[str, Any]:
    created = client.create(obj)
    return client.update_status({**created, "status": status})


def test_an_unallocated_global_ingress_ip_fails_until_allocated(
        capsys: pytest.CaptureFixture[str], world: World) -> None:
    ingress = crud.ResourceClient(world.api, resources.GLOBAL_INGRESS_IPS)
    giip = _with_status(ingress, {
        "metadata": {"name": "starved", "namespace": world.app_namespace},
        "spec": {"target": names.TARGET_CLUSTER_IP_SERVICE, "serviceRef": {"name": "starved"}}},
        {"conditions": _condition(reasons.ALLOCATED, False, reasons.IP_POOL_ALLOCATION_FAILED,
                                  "no free address in 242.252.0.0/24")})
    key = ("globalnet", f"{reasons.KIND_INGRESS} {world.app_namespace}/starved")
    code, checks = diagnose(capsys, world, "globalnet")
    assert code == 1
    assert checks[key]["verdict"] == "FAIL"
    assert reasons.IP_POOL_ALLOCATION_FAILED in checks[key]["message"]
    assert "no free address" in checks[key]["message"]
    assert checks[("globalnet", f"pool {C1_CIDR}")]["verdict"] == "PASS"

    ingress.update_status({**giip, "status": {
        "allocatedIP": "242.252.0.30",
        "conditions": _condition(reasons.ALLOCATED, True, reasons.SUCCESS, "allocated")}})
    _code, checks = diagnose(capsys, world, "globalnet")
    assert key not in checks  # only what is not allocated gets a row of its own
    assert not [c for c in checks.values()
                if world.app_namespace in c["name"] and c["verdict"] != "PASS"]


def test_an_exhausted_pool_fails_until_addresses_are_freed(
        capsys: pytest.CaptureFixture[str], world: World) -> None:
    """Every usable address of c1's /24 held by GlobalEgressIPs (as the agent
    records them): the pool check FAILs with a hint; one object gone, it PASSes."""
    import netaddr

    egress = crud.ResourceClient(world.api, resources.GLOBAL_EGRESS_IPS)
    usable = [str(ip) for ip in list(netaddr.IPNetwork(C1_CIDR))[1:-1]]
    made = []
    for i in range(0, len(usable), 20):
        block = usable[i:i + 20]
        made.append(_with_status(egress, {
            "metadata": {"name": f"hog-{i // 20}", "namespace": world.app_namespace},
            "spec": {"numberOfIPs": len(block)}},
            {"allocatedIPs": block, "conditions": _condition(
                reasons.ALLOCATED, True, reasons.SUCCESS, "allocated")}))
    try:
        code, checks = diagnose(capsys, world, "globalnet")
        pool = checks[("globalnet", f"pool {C1_CIDR}")]
        assert code == 1 and pool["verdict"] == "FAIL", pool
        assert "exhausted" in pool["message"] and pool["hint"]
        egress.delete(made.pop()["metadata"]["name"], namespace=world.app_namespace)
        code, checks = diagnose(capsys, world, "globalnet")
        pool = checks[("globalnet", f"pool {C1_CIDR}")]
        assert pool["verdict"] == "PASS" and "free" in pool["message"], pool
    finally:
        for obj in made:
            egress.delete_if_exists(obj["metadata"]["name"], namespace=world.app_namespace)


def test_overlapping_global_cidrs_on_the_broker_fail(capsys: pytest.CaptureFixture[str],
                                                     world: World) -> None:
    key = ("globalnet", "global CIDRs overlap")
    clusters = crud.ResourceClient(world.api, resources.CLUSTERS)
    matching = [c for c in diagnose(capsys, world, "globalnet")[1].values()
                if c["name"] == key[1]]
    assert matching and all(c["verdict"] == "PASS" for c in matching)
    clusters.create({"metadata": {"name": "c3", "namespace": world.broker_namespace},
                     "spec": {"cluster_id": "c3", "global_cidr": ["242.252.0.128/25"],
                              "cluster_cidr": ["10.244.0.0/16"],
                              "service_cidr": ["10.96.0.0/16"]}})
    try:
        code, checks = diagnose(capsys, world, "globalnet")
        assert code == 1
        assert checks[key]["verdict"] == "FAIL"
        assert "c1/c3" in checks[key]["message"] and C1_CIDR in checks[key]["message"]
        assert world.broker_namespace in checks[("globalnet", "overlapping CIDRs without "
                                                 "Globalnet")]["message"]
    finally:
        clusters.delete_if_exists("c3", namespace=world.broker_namespace)
    assert diagnose(capsys, world, "globalnet")[1][key]["verdict"] == "PASS"


def test_an_export_without_a_service_import_fails(capsys: pytest.CaptureFixture[str],
                                                  world: World) -> None:
    ns, name = world.app_namespace, "shop"
    crud.ResourceClient(world.api, resources.SERVICES).create({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}})
    _with_status(crud.ResourceClient(world.api, resources.GLOBAL_INGRESS_IPS), {
        "metadata": {"name": name, "namespace": ns},
        "spec": {"target": names.TARGET_CLUSTER_IP_SERVICE, "serviceRef": {"name": name}}},
        {"allocatedIP": "242.252.0.40",
         "conditions": _condition(reasons.ALLOCATED, True, reasons.SUCCESS, "allocated")})
    _with_status(crud.ResourceClient(world.api, resources.SERVICE_EXPORTS),
                 {"metadata": {"name": name, "namespace": ns}},
                 {"conditions": [
                     *_condition(lreasons.VALID, True, lreasons.REASON_VALID),
                     *_condition(lreasons.READY, True, lreasons.EXPORTED)]})
    code, checks = diagnose(capsys, world, "service-discovery")
    assert code == 1
    [missing] = [c for (g, n), c in checks.items() if n.startswith(f"ServiceImport {ns}/{name}")]
    assert missing["verdict"] == "FAIL"
    assert f"{name}.{ns}.svc.clusterset.local" in missing["message"]
    assert missing["cluster"] and missing["cluster"] in missing["name"]
    assert checks[("service-discovery", f"GlobalIngressIP {ns}/{name}")]["verdict"] == "PASS"
    assert checks[("service-discovery", f"ServiceExport {ns}/{name}")]["verdict"] == "PASS"
    broker_slice = checks[("service-discovery", f"Broker EndpointSlice of {ns}/{name}")]
    assert broker_slice["verdict"] == "FAIL"

    # What c1's Lighthouse agent would publish and import.
    slices = discovery.endpointslices(world.api)
    labels = render.labels_for(cluster="c1", namespace=ns, name=name,
                               service_type=lreasons.CLUSTER_SET_IP)
    slice_body = {"addressType": "IPv4", "endpoints": [{"addresses": ["242.252.0.40"]}],
                  "ports": [{"port": 80, "protocol": "TCP"}]}
    member = names.broker_member_namespace("c1", world.broker_namespace)
    for where in (member, ns):
        crud.ResourceClient(world.api, slices).create({
            "metadata": {"name": f"{name}-{ns}-c1", "namespace": where, "labels": labels},
            **slice_body})
    aggregated = {names.MANAGED_BY_LABEL: names.MANAGED_BY_LIGHTHOUSE}
    _with_status(crud.ResourceClient(world.api, resources.SERVICE_IMPORTS), {
        "metadata": {"name": name, "namespace": ns, "labels": aggregated},
        "spec": {"type": lreasons.CLUSTER_SET_IP, "ports": [{"port": 80, "protocol": "TCP"}]}},
        {"clusters": [{"cluster": "c1"}]})
    _code, checks = diagnose(capsys, world, "service-discovery")
    mine = {n: c for (g, n), c in checks.items() if f"{ns}/{name}" in n}
    assert mine and all(c["verdict"] == "PASS" for c in mine.values()), mine
    assert any(n.startswith(f"ServiceImport {ns}/{name}") for n in mine)

    # The import lists c1, but no cluster has a ready endpoint: a warning with why.
    imports = crud.ResourceClient(world.api, resources.SERVICE_IMPORTS)
    imported = imports.get(name, namespace=ns)
    imported["status"]["conditions"] = _condition(
        lreasons.READY, False, lreasons.PENDING, "No ready endpoint yet in [c1]")
    imports.update_status(imported)
    _code, checks = diagnose(capsys, world, "service-discovery")
    [unready] = [c for (g, n), c in checks.items() if n.startswith(f"ServiceImport {ns}/{name}")]
    assert unready["verdict"] == "WARN", unready
    assert "not Ready" in unready["message"] and lreasons.PENDING in unready["message"]


def test_the_table_says_each_verdict_and_hint(capsys: pytest.CaptureFixture[str],
                                              world: World) -> None:
    clusters = crud.ResourceClient(world.api, resources.CLUSTERS)
    clusters.create({"metadata": {"name": "c4", "namespace": world.broker_namespace},
                     "spec": {"cluster_id": "c4", "global_cidr": [C2_CIDR],
                              "cluster_cidr": ["10.244.0.0/16"],
                              "service_cidr": ["10.96.0.0/16"]}})
    try:
        code = gnctl_main.main(["diagnose", "globalnet", "--kubeconfig", str(world.kubeconfig),
                                "--namespace", world.namespace, "--no-probe-pods"])
        out, err = capsys.readouterr()
    finally:
        clusters.delete_if_exists("c4", namespace=world.broker_namespace)
    assert (code, err) == (1, "")
    for text in ("gnctl diagnose globalnet", "global CIDRs overlap", "FAIL", "PASS",
                 "c2/c4", "gnctl leave", " failed"):
        assert text in out, f"{text!r} missing from:\n{out}"


def test_an_unreachable_server_is_one_line(capsys: pytest.CaptureFixture[str], world: World,
                                           tmp_path: Path) -> None:
    import socket

    import yaml

    config = yaml.safe_load(world.kubeconfig.read_text())
    with socket.socket() as held:  # bound, never listening: connections are refused
        held.bind(("127.0.0.1", 0))
        config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{held.getsockname()[1]}"
        path = tmp_path / "kubeconfig"
        path.write_text(yaml.safe_dump(config))
        code = gnctl_main.main(["diagnose", "all", "--kubeconfig", str(path),
                                "--no-probe-pods"])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    assert err.count("\n") == 1 and err.startswith("gnctl: cannot reach the API server"), err
