"""`gnctl diagnose` on a real lab: everything PASSes on a healthy lab, and each
injected fault turns its check to FAIL, then back to PASS once repaired.

One lab for the module (2 clusters x 2 nodes, node 0 the gateway, nftables, VXLAN),
diagnosed as a user does (`python -m cli.main diagnose ... --lab NAME`). Faults:

* a stopped agent: c1's Lighthouse agent Deployment scaled to 0 - and, while it is
  stopped, c2 exports Service default/web, so c1 gets no ServiceImport (no agent
  there can recreate it): deployment and service-discovery FAIL for c1;
* the Globalnet nft table deleted on c2's active gateway. Its agent repairs drift
  within ~0.1 s, so to see the FAIL deterministically the agent's processes are
  paused (SIGSTOP) before the delete and resumed (SIGCONT) after the diagnosis;
  it then puts the table back by itself.

Address convention: lab/topology.py (every cluster 10.244.0.0/16 pods, 10.96.0.0/16
services, gateways on 198.18.0.0/24, global CIDRs /16 slices of 242.0.0.0/8).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy import manifests
from kube import conditions, names, resources
from kube.leaderelection import holder_of
from kube.testing import await_condition
from lab import netns
from lab.lab import Lab
from lab.node import node_by_name
from lighthouse.agent import reasons as lreasons
from tests.e2e.conftest import running_lab

pytestmark = [pytest.mark.e2e, pytest.mark.privileged, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lab(lab_root: Path) -> Iterator[Lab]:
    with running_lab(lab_root, "dg", globalnet=True) as running:
        yield running


def diagnose(lab: Lab, group: str, *extra: str) -> tuple[int, list[dict[str, Any]]]:
    env = {**os.environ, "GLOBALNET_LAB_DIR": str(lab.store.root)}
    done = subprocess.run([sys.executable, "-m", "cli.main", "diagnose", group, "--lab",
                           lab.name, "-o", "json", *extra], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env=env)
    assert done.returncode in (0, 1) and not done.stderr, done.stderr
    checks = json.loads(done.stdout)["checks"]
    for c in checks:
        if c["verdict"] != "PASS":
            print(f"  {c['verdict']} {c['cluster']} {c['group']} {c['name']}: {c['message']}")
    return done.returncode, checks


def failures(checks: list[dict[str, Any]]) -> list[str]:
    return [f"{c['cluster']} {c['group']} {c['name']}: {c['message']}" for c in checks
            if c["verdict"] == "FAIL"]


def await_pass(lab: Lab, group: str, *extra: str, timeout: float = 150) -> None:
    """Until `diagnose GROUP` exits 0 (a repair takes the agents a while)."""
    await_condition(lambda: diagnose(lab, group, *extra)[0] == 0, timeout=timeout,
                    interval=3, message=lambda: f"diagnose {group} still fails: "
                    f"{failures(diagnose(lab, group, *extra)[1])}")


def kubectl(lab: Lab, cluster: str, *argv: str) -> None:
    subprocess.run(lab.kubectl_argv(cluster, list(argv)), check=True, capture_output=True,
                   timeout=60)


def test_a_healthy_lab_passes(lab: Lab) -> None:
    await_pass(lab, "all", timeout=90)
    code, checks = diagnose(lab, "all")
    assert code == 0 and not failures(checks)
    groups = {c["group"] for c in checks}
    assert groups == {"deployment", "connections", "globalnet", "service-discovery",
                      "kube-proxy-mode", "firewall"}
    by = {(c["cluster"], c["name"]): c for c in checks}
    for cluster in ("c1", "c2"):
        assert by[(cluster, "active gateway")]["verdict"] == "PASS"
        assert by[(cluster, "kube-proxy mode")]["message"].startswith("iptables")
        assert by[(cluster, "nftables table inet globalnet")]["verdict"] == "PASS"
        assert by[(cluster, "DNS forwarding of clusterset.local")]["verdict"] == "PASS"
        other = "c2" if cluster == "c1" else "c1"
        [conn] = [c for c in checks if c["cluster"] == cluster
                  and c["name"].startswith(f"connection to {other}")]
        assert "RTT" in conn["message"] and conn["verdict"] == "PASS"


def test_a_stopped_lighthouse_agent_and_a_missing_service_import_fail(lab: Lab) -> None:
    ns = names.CLUSTER_NAMESPACE
    deployment = manifests.LIGHTHOUSE_DEPLOYMENT
    kubectl(lab, "c1", "-n", ns, "scale", "deployment", deployment, "--replicas=0")
    try:
        exports = lab.cluster("c2").client(resources.SERVICE_EXPORTS)
        exports.create({"apiVersion": resources.SERVICE_EXPORTS.api_version,
                        "kind": "ServiceExport",
                        "metadata": {"name": "web", "namespace": "default"}})
        await_condition(lambda: conditions.is_condition_true(
            ((exports.get_or_none("web", namespace="default") or {}).get("status") or {})
            .get("conditions"), lreasons.READY), timeout=60, interval=0.5,
            message="c2 exported default/web")
        # No Lighthouse agent pod left in c1 (the Deployment's pod is gone).
        await_condition(lambda: not [
            p for p in lab.cluster("c1").client(resources.PODS).list(namespace=ns).items
            if p["metadata"]["name"].startswith(deployment)], timeout=60, interval=0.5,
            message="c1's Lighthouse agent pod gone")
        code, checks = diagnose(lab, "all")
        assert code == 1
        by = {(c["cluster"], c["name"]): c for c in checks}
        stopped = by[("c1", f"Deployment {deployment}")]
        assert stopped["verdict"] == "FAIL" and "scaled to 0" in stopped["message"]
        missing = by[("c1", "ServiceImport default/web in c1")]
        assert missing["verdict"] == "FAIL" and "missing" in missing["message"]
        assert by[("c2", "ServiceImport default/web in c2")]["verdict"] == "PASS"
        assert by[("c2", "GlobalIngressIP default/web")]["verdict"] == "PASS"
    finally:
        kubectl(lab, "c1", "-n", ns, "scale", "deployment", deployment, "--replicas=1")
    await_pass(lab, "service-discovery")
    await_pass(lab, "deployment")


@contextlib.contextmanager
def paused(pids: list[int]) -> Iterator[None]:
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def test_a_deleted_nft_table_fails_until_the_agent_restores_it(lab: Lab) -> None:
    c2 = lab.plan.cluster("c2")
    lease = lab.cluster("c2").client(resources.LEASES).get_or_none(
        names.GATEWAY_LEASE, namespace=names.CLUSTER_NAMESPACE)
    node = node_by_name(c2, holder_of(lease))
    agents = lab.agent_pids("c2").get("globalnet.agent") or []
    assert agents, "no Globalnet agent process found in c2"
    with paused(agents):
        subprocess.run(netns.exec_argv(node.netns, ["nft", "delete", "table", "inet",
                                                    "globalnet"]), check=True, timeout=20)
        code, checks = diagnose(lab, "firewall", "--context", "c2")
    assert code == 1
    [table] = [c for c in checks if c["name"] == "nftables table inet globalnet"]
    assert table["verdict"] == "FAIL" and "missing on the active gateway" in table["message"]
    await_pass(lab, "firewall", "--context", "c2", timeout=120)
    code, checks = diagnose(lab, "firewall", "--context", "c2")
    [table] = [c for c in checks if c["name"] == "nftables table inet globalnet"]
    assert "all 1 allocated" in table["message"] or "allocated GlobalIngressIPs mapped" in \
        table["message"]


def test_everything_passes_again_after_the_repairs(lab: Lab) -> None:
    await_pass(lab, "all")
