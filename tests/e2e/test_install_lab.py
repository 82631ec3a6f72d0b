"""`gnctl join` / `leave` / `uninstall` on real-node lab clusters (three, identical CIDRs).

`gnctl lab up --globalnet` installed Globalnet with `gnctl deploy-broker` and `gnctl
join` (the agents are pods). Here one cluster leaves while its agents keep running:
the two others must drop everything of it - its Cluster and Endpoint copies, the
cable and routes to its global CIDR, its ServiceImports and DNS answers - and its
agents' Broker identity must stop working. Then `gnctl uninstall` removes what join
installed.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy import manifests as m
from kube import errors, names, resources
from kube.client import api_client_from_dict, new_api_client
from kube.crud import ResourceClient
from kube.testing import await_condition
from lab import netns
from lab.lab import Lab
from tests.e2e.conftest import running_lab

pytestmark = [pytest.mark.e2e, pytest.mark.privileged]


@pytest.fixture(scope="module")
def lab3(lab_root: Path) -> Iterator[Lab]:
    with running_lab(lab_root, "j", globalnet=True, clusters=3) as running:
        yield running


def gnctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True,
                          text=True, timeout=240)


def resolve(lab: Lab, cluster: str, name: str) -> str | None:
    out = subprocess.run(lab.exec_argv(cluster, "client", ["getent", "ahostsv4", name]),
                         capture_output=True, text=True, timeout=20).stdout
    return out.split()[0] if out else None


def traces_of(lab: Lab, cluster: str, gone: str) -> list[str]:
    """What `cluster` still holds of cluster `gone` (empty: nothing)."""
    assert lab.state is not None
    cidr = lab.state.global_cidrs[gone]
    handle = lab.cluster(cluster)
    left = []
    ns = names.CLUSTER_NAMESPACE
    if handle.client(resources.CLUSTERS).get_or_none(gone, namespace=ns):
        left.append("Cluster copy")
    if [e for e in handle.client(resources.SUBMARINER_ENDPOINTS).list(namespace=ns).items
            if e["spec"].get("cluster_id") == gone]:
        left.append("Endpoint copy")
    c = lab.plan.cluster(cluster)
    for node in c.nodes:
        if netns.run(node.netns, ["ip", "route", "show", cidr]).strip():
            left.append(f"route on {node.name}")
    gateway = handle.client(resources.GATEWAYS).get_or_none(c.gateway.name, namespace=ns)
    if any(conn["endpoint"]["cluster_id"] == gone
           for conn in ((gateway or {}).get("status") or {}).get("connections") or []):
        left.append("cable")
    if [s for s in handle.client(resources.SERVICE_IMPORTS).list(namespace="default").items
            if gone in [k.get("cluster") for k in (s.get("status") or {}).get("clusters") or []]]:
        left.append("ServiceImport")
    if resolve(lab, cluster, f"{gone}.web.default.svc.clusterset.local"):
        left.append("DNS answer")
    return left


def test_a_departed_cluster_vanishes_from_the_others_while_its_agents_run(lab3: Lab) -> None:
    lab = lab3
    lab.cluster("c3").client(resources.SERVICE_EXPORTS).create(
        {"metadata": {"name": "web", "namespace": "default"}})
    def everything(cluster: str) -> list[str]:
        return ["Cluster copy", "Endpoint copy",
                *(f"route on {n.name}" for n in lab.plan.cluster(cluster).nodes),
                "cable", "ServiceImport", "DNS answer"]

    for cluster in ("c1", "c2"):
        await_condition(lambda cl=cluster: traces_of(lab, cl, "c3") == everything(cl),  # type: ignore[misc]
                        timeout=60, message=lambda cl=cluster: (  # type: ignore[misc]
                            f"{cl} holds all of c3: {traces_of(lab, cl, 'c3')}"))
    out = subprocess.run(lab.exec_argv("c1", "client", [
        "curl", "-s", "--max-time", "3", "http://c3.web.default.svc.clusterset.local/"]),
        capture_output=True, text=True, timeout=20).stdout
    assert out.startswith("hello from c3/"), out

    started = time.monotonic()
    done = gnctl("leave", str(lab.broker_info()), "--clusterid", "c3",
                 "--local-broker-url", lab.broker_relay_url())
    assert done.returncode == 0, done.stderr
    assert "Broker identity revoked" in done.stdout
    for cluster in ("c1", "c2"):
        await_condition(lambda cl=cluster: traces_of(lab, cl, "c3") == [],  # type: ignore[misc]
                        timeout=15, interval=0.1, message=lambda cl=cluster: (  # type: ignore[misc]
                            f"{cl} dropped c3: {traces_of(lab, cl, 'c3')} left"))
    elapsed = time.monotonic() - started
    print(f"c1 and c2 dropped everything of c3 {elapsed:.1f} s after `gnctl leave` began")
    # c3's agents still run; its Broker identity no longer works.
    pods = lab.cluster("c3").client(resources.PODS).list(namespace=names.CLUSTER_NAMESPACE)
    assert len(pods.items) >= 3
    assert lab.cluster("c3").client(m.KINDS["Secret"]).get_or_none(
        names.BROKER_KUBECONFIG_SECRET, namespace=names.CLUSTER_NAMESPACE) is not None
    broker = ResourceClient(new_api_client(lab.broker_kubeconfig()), resources.SERVICE_ACCOUNTS)
    assert broker.get_or_none(names.broker_member_account("c3"),
                              namespace=names.BROKER_NAMESPACE) is None
    # Still gone a while later: nothing of c3 comes back from its running agents.
    time.sleep(3)
    assert traces_of(lab, "c1", "c3") == []


def test_a_member_identity_cannot_touch_another_members_objects(lab3: Lab) -> None:
    """c1's Broker credentials, as its agents hold them, against c2's objects."""
    secret = lab3.cluster("c1").client(m.KINDS["Secret"]).get(
        names.BROKER_KUBECONFIG_SECRET, namespace=names.CLUSTER_NAMESPACE)
    config = yaml.safe_load(base64.b64decode(secret["data"][names.BROKER_KUBECONFIG_KEY]))
    config["clusters"][0]["cluster"]["server"] = lab3.broker_relay_url()
    c1: Any = api_client_from_dict(config)
    endpoints = ResourceClient(c1, resources.SUBMARINER_ENDPOINTS)
    theirs = names.broker_member_namespace("c2")
    (their_endpoint,) = endpoints.list(namespace=theirs).items  # readable
    for attempt in (lambda: endpoints.delete(their_endpoint["metadata"]["name"],
                                             namespace=theirs),
                    lambda: endpoints.update({**their_endpoint, "spec": {
                        **their_endpoint["spec"], "private_ip": "198.18.0.99"}},
                        namespace=theirs)):
        with pytest.raises(Exception) as denied:
            attempt()
        assert errors.status_of(denied.value) == 403


def test_join_again_and_uninstall(lab3: Lab) -> None:
    """A dry run changes nothing; uninstall removes every object join applied."""
    lab = lab3
    c2 = lab.cluster("c2")
    kubeconfig = str(c2.kubeconfig)
    done = gnctl("join", str(lab.broker_info()), "--kubeconfig", kubeconfig,
                 "--clusterid", "c2", "--clustercidr", "10.244.0.0/16",
                 "--servicecidr", "10.96.0.0/16", "--dry-run",
                 "--local-broker-url", lab.broker_relay_url())
    assert done.returncode == 0, done.stderr
    assert "kind: DaemonSet" in done.stdout and "nothing was changed" in done.stderr
    done = gnctl("uninstall", "--kubeconfig", kubeconfig)
    assert done.returncode == 0, done.stderr

    def removed() -> bool:
        daemonsets = c2.client(m.KINDS["DaemonSet"]).list(namespace=names.CLUSTER_NAMESPACE)
        return not daemonsets.items
    await_condition(removed, timeout=60, message="the agents' DaemonSets gone")
    for kind, name in (("ClusterRole", "globalnet-globalnet"),
                       ("CustomResourceDefinition", "globalingressips.submariner.io")):
        assert c2.client(m.KINDS[kind]).get_or_none(name) is None, (kind, name)
    assert c2.client(m.KINDS["CustomResourceDefinition"]).get_or_none(
        "serviceexports.multicluster.x-k8s.io") is not None  # the users' exports stay
