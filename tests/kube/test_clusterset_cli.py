"""`gnctl deploy-broker`, `join` and `leave` against a real API server.

The session's API server plays the Broker and both members, each in its own
namespace (the hidden `--broker-namespace` / `--cluster-namespace` flags), so
the test starts from an empty clusterset. Address conventions: the clusterset
range is 242.50.0.0/16 with 256 global IPs (a /24) per cluster.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from globalnet.broker import BrokerGlobalnet
from kube import crud, resources

pytestmark = pytest.mark.kube


class Gnctl:
    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        tag = uuid.uuid4().hex[:6]
        self.broker_ns = f"broker-{tag}"
        self.member_ns = {"east": f"east-{tag}", "west": f"west-{tag}"}

    def run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cli.main", *argv], capture_output=True,
                              text=True, timeout=120)

    def deploy_broker(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.run("deploy-broker", "--kubeconfig", str(self.kubeconfig),
                        "--broker-namespace", self.broker_ns, *extra)

    def join(self, cluster: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.run("join", "--kubeconfig", str(self.kubeconfig), "--broker-kubeconfig",
                        str(self.kubeconfig), "--broker-namespace", self.broker_ns,
                        "--cluster-namespace", self.member_ns[cluster], "--clusterid", cluster,
                        "--cluster-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/16",
                        *extra)

    def leave(self, cluster: str) -> subprocess.CompletedProcess[str]:
        return self.run("leave", "--kubeconfig", str(self.kubeconfig), "--broker-kubeconfig",
                        str(self.kubeconfig), "--broker-namespace", self.broker_ns,
                        "--cluster-namespace", self.member_ns[cluster], "--clusterid", cluster)


@pytest.fixture
def gnctl(control_plane: Any, api_client: Any) -> Iterator[Gnctl]:
    g = Gnctl(control_plane.kubeconfig)
    yield g
    namespaces = crud.ResourceClient(api_client, resources.NAMESPACES)
    for ns in (g.broker_ns, *g.member_ns.values()):
        namespaces.delete_if_exists(ns)


def members(api: Any, namespace: str) -> dict[str, list[str]]:
    items = crud.ResourceClient(api, resources.CLUSTERS).list(namespace=namespace).items
    return {c["metadata"]["name"]: c["spec"]["global_cidr"] for c in items}


def test_deploy_join_rejoin_and_leave(gnctl: Gnctl, api_client: Any) -> None:
    early = gnctl.join("east")
    assert early.returncode == 1
    assert "no Broker here" in early.stderr and "gnctl deploy-broker" in early.stderr

    bad = gnctl.deploy_broker("--globalnet", "--globalnet-cidr-range", "242.50.0.0/33")
    assert bad.returncode == 1 and bad.stderr.startswith("gnctl: ")
    assert crud.ResourceClient(api_client, resources.NAMESPACES).get_or_none(
        gnctl.broker_ns) is None, "a refused deploy-broker must create nothing"

    out = gnctl.deploy_broker("--globalnet", "--globalnet-cidr-range", "242.50.0.0/16",
                              "--default-globalnet-cluster-size", "256")
    assert out.returncode == 0, out.stderr
    assert "range 242.50.0.0/16, 256 global IPs per cluster" in out.stdout

    east = gnctl.join("east")
    assert east.returncode == 0, east.stderr
    assert "global CIDR: 242.50.0.0/24" in east.stdout
    assert "python -m globalnet.agent" in east.stdout and "--global-cidr 242.50.0.0/24" \
        in east.stdout
    assert "--datapath nftables" in east.stdout  # the default backend, named
    west = gnctl.join("west")
    assert "global CIDR: 242.50.1.0/24" in west.stdout, west.stderr
    assert members(api_client, gnctl.broker_ns) == {"east": ["242.50.0.0/24"],
                                                    "west": ["242.50.1.0/24"]}
    # West joined last and sees both; a rejoin of east keeps its CIDR and syncs.
    assert set(members(api_client, gnctl.member_ns["west"])) == {"east", "west"}
    assert set(members(api_client, gnctl.member_ns["east"])) == {"east"}
    again = gnctl.join("east")
    assert "global CIDR: 242.50.0.0/24" in again.stdout
    assert set(members(api_client, gnctl.member_ns["east"])) == {"east", "west"}

    # A taken CIDR is refused with the Broker's reason, and nothing changes.
    taken = gnctl.run("join", "--kubeconfig", str(gnctl.kubeconfig), "--broker-kubeconfig",
                      str(gnctl.kubeconfig), "--broker-namespace", gnctl.broker_ns,
                      "--cluster-namespace", gnctl.member_ns["east"], "--clusterid", "north",
                      "--cluster-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/16",
                      "--globalnet-cidr", "242.50.1.0/24")
    assert taken.returncode == 1 and "242.50.1.0/24" in taken.stderr, taken.stderr
    assert set(members(api_client, gnctl.broker_ns)) == {"east", "west"}

    gone = gnctl.leave("west")
    assert gone.returncode == 0 and "west left the clusterset" in gone.stdout, gone.stderr
    info = BrokerGlobalnet(api_client, namespace=gnctl.broker_ns).read()
    assert info is not None and set(info.clusters) == {"east"}
    assert set(members(api_client, gnctl.broker_ns)) == {"east"}
    assert members(api_client, gnctl.member_ns["west"]) == {}
    assert "was not a member" in gnctl.leave("west").stdout
    # The released CIDR is handed out again.
    assert "global CIDR: 242.50.1.0/24" in gnctl.join("west").stdout


def test_join_refuses_bad_flags_before_connecting(gnctl: Gnctl) -> None:
    for extra, message in ((("--globalnet-cidr", "242.50.1.1/24"), "host bits set"),
                           (("--globalnet-cluster-size", "0"), "must be positive")):
        out = gnctl.join("east", *extra)
        assert out.returncode == 1 and message in out.stderr, out.stderr
    bad_id = gnctl.run("join", "--broker-kubeconfig", "/nonexistent", "--clusterid", "East",
                       "--cluster-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/16")
    assert bad_id.returncode == 1 and "is not a DNS label" in bad_id.stderr


def test_a_broker_without_globalnet_joins_clusters_by_their_own_cidrs(
        gnctl: Gnctl, api_client: Any) -> None:
    assert gnctl.deploy_broker().returncode == 0
    refused = gnctl.join("east", "--globalnet-cidr", "242.50.0.0/24")
    assert refused.returncode == 1 and "deployed without Globalnet" in refused.stderr
    east = gnctl.join("east")
    assert east.returncode == 0, east.stderr
    assert "global CIDR" not in east.stdout and "--no-globalnet" in east.stdout
    assert "gateway.routeagent" in east.stdout and "gateway.syncer" in east.stdout
    assert members(api_client, gnctl.broker_ns) == {"east": []}
