"""`gnctl show` on a real lab: two Globalnet clusters with two gateway nodes each,
the agents running as their pods, read through one kubeconfig with a context per
cluster (`--contexts c1,c2`), as subctl users read theirs.

Address convention: the lab's own (lab/topology.py): every cluster 10.244.0.0/16
pods and 10.96.0.0/16 services, gateways on the 198.18.0.0/24 underlay, global CIDRs
from 242.0.0.0/8; the API servers through the lab's relays on loopback ports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kube.testing import await_condition
from lab.lab import Lab
from tests.e2e.conftest import running_lab

pytestmark = [pytest.mark.e2e, pytest.mark.privileged, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CLUSTERS = ("c1", "c2")


@pytest.fixture(scope="module")
def lab(lab_root: Path) -> Iterator[Lab]:
    with running_lab(lab_root, "sh", globalnet=True, gateways=2) as running:
        yield running


@pytest.fixture(scope="module")
def kubeconfig(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The clusters' host kubeconfigs merged into one, a context per cluster (named as
    the cluster), each with its own user: the lab's files all call theirs `admin`."""
    merged: dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "clusters": [],
                              "users": [], "contexts": [], "current-context": CLUSTERS[0]}
    for name in CLUSTERS:
        one = yaml.safe_load(lab.cluster(name).kubeconfig.read_text())
        merged["clusters"].append({"name": name, "cluster": one["clusters"][0]["cluster"]})
        merged["users"].append({"name": name, "user": one["users"][0]["user"]})
        merged["contexts"].append({"name": name, "context": {"cluster": name, "user": name}})
    path = tmp_path_factory.mktemp("show") / "kubeconfig"
    path.write_text(yaml.safe_dump(merged))
    return path


def gnctl(*argv: str) -> subprocess.CompletedProcess[str]:
    """`gnctl ARGV` as users run it."""
    return subprocess.run([sys.executable, "-m", "cli.main", *argv], capture_output=True,
                          text=True, timeout=60, cwd=REPO)


def show(kubeconfig: Path, what: str) -> dict[str, dict[str, Any]]:
    """`gnctl show WHAT -o json` of both clusters: each context's document."""
    done = gnctl("show", what, "--kubeconfig", str(kubeconfig), "--contexts", ",".join(CLUSTERS),
                 "-o", "json")
    assert done.returncode == 0 and not done.stderr, done.stderr
    return {doc["context"]: doc for doc in json.loads(done.stdout)}


def test_one_active_gateway_per_cluster_with_connected_cables(lab: Lab,
                                                              kubeconfig: Path) -> None:
    def converged() -> dict[str, dict[str, Any]] | None:
        docs = show(kubeconfig, "connections")
        ok = all(len(d["connections"]["connections"]) == 1
                 and d["connections"]["connections"][0]["status"] == "connected"
                 for d in docs.values())
        return docs if ok else None

    connections = await_condition(converged, timeout=90, interval=1,
                                  message="a connected cable in every cluster")
    gateways = show(kubeconfig, "gateways")
    active = lab.active_gateways()
    assert sorted(gateways) == sorted(connections) == list(CLUSTERS)
    for cluster in CLUSTERS:
        view = gateways[cluster]["gateways"]
        actives = [g["node"] for g in view["gateways"] if g["ha_status"] == "active"]
        assert actives == [active[cluster]], view
        assert view["lease_holder"] == active[cluster]
        [passive] = [g for g in view["gateways"] if g["node"] != active[cluster]]
        assert (passive["ha_status"], passive["holds_lease"]) == ("passive", False), view
        [cable] = connections[cluster]["connections"]["connections"]
        other = next(c for c in CLUSTERS if c != cluster)
        assert connections[cluster]["connections"]["active_gateway"] == active[cluster]
        assert (cable["cluster_id"], cable["gateway"]) == (other, active[cluster])
        assert cable["rtt"]["last"].endswith("ms")
    table = gnctl("show", "connections", "--kubeconfig", str(kubeconfig), "--contexts",
                  ",".join(CLUSTERS))
    assert table.returncode == 0, table.stderr
    assert table.stdout.count("connected") >= 2
    assert all(active[c] in table.stdout for c in CLUSTERS)


def test_versions_show_what_the_agents_run(kubeconfig: Path) -> None:
    docs = show(kubeconfig, "versions")
    for cluster in CLUSTERS:
        rows = {(c["component"], c["container"]): c
                for c in docs[cluster]["versions"]["components"]}
        engine = rows[("globalnet-gateway", "gateway-engine")]
        assert (engine["repository"], engine["version"]) == ("globalnet/globalnet", "lab")
        assert engine["running"] and all(engine["running"])  # the kubelet's imageIDs
        assert engine["ready"] == engine["desired"] == 2


def test_show_all_reads_every_view_of_both_clusters(lab: Lab, kubeconfig: Path) -> None:
    """`show all`: both clusters' networks and Endpoints, the Broker's members, the
    pool in use, conntrack sync running on both gateway nodes, RTT figures."""
    done = gnctl("show", "all", "--kubeconfig", str(kubeconfig), "--contexts",
                 ",".join(CLUSTERS), "--broker-kubeconfig", str(lab.broker_kubeconfig()),
                 "-o", "json")
    assert done.returncode == 0 and not done.stderr, done.stderr
    docs = {doc["context"]: doc for doc in json.loads(done.stdout)}
    for cluster in CLUSTERS:
        doc = docs[cluster]
        nets = {c["cluster_id"]: c for c in doc["networks"]["clusters"]}
        assert set(nets) == set(CLUSTERS) and all(c["global_cidrs"] for c in nets.values())
        assert nets[cluster]["local"] and nets[cluster]["pod_cidrs"] == ["10.244.0.0/16"]
        assert {e["cluster_id"] for e in doc["endpoints"]["endpoints"]} == set(CLUSTERS)
        [pool] = doc["globalnet"]["pools"]
        assert pool["cidr"] == nets[cluster]["global_cidrs"][0]
        assert pool["allocated"] > 0 and pool["available"] > 0 and pool["gateway"] == 2
        members = {m["cluster_id"] for ns in doc["brokers"]["namespaces"]
                   for m in ns["members"]}
        assert members == set(CLUSTERS), doc["brokers"]
        syncs = [g["conntrack_sync"] for g in doc["gateways"]["gateways"]]
        assert len(syncs) == 2 and all(s.startswith("running (to ") for s in syncs), syncs
        [cable] = doc["connections"]["connections"]
        assert all(cable["rtt"][k].endswith("ms") for k in ("min", "average", "max")), cable
        assert doc["versions"]["components"]
