"""`gnctl verify` and `gnctl benchmark` against a Globalnet lab, run as a user runs
them (`python -m cli.main ... --lab NAME`): verify passes on a healthy lab, fails on
a broken datapath, survives its own gateway failover suite and Ctrl-C, and never
leaves its namespace or pods behind; the benchmarks print a table and one JSON line
of positive figures.

One lab for the module (2 clusters x 2 nodes, node 0 the gateway, nftables, VXLAN).
Address conventions: lab/topology.py; global CIDRs are /16 slices of 242.0.0.0/8.
The injected fault is a table of our own on c2's gateway node that drops what
arrives for c2's global CIDR (the agent keeps its own table, and would put back one
deleted by hand): removed again whatever happens.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kube import resources
from lab import netns
from lab.lab import Lab
from tests.e2e.conftest import running_lab
from verify.pods import MANAGED_BY
from verify.session import NAMESPACE_PREFIX

pytestmark = [pytest.mark.e2e, pytest.mark.privileged]

REPO = Path(__file__).resolve().parents[2]
SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY}"


@pytest.fixture(scope="module")
def lab(lab_root: Path) -> Iterator[Lab]:
    with running_lab(lab_root, "v", globalnet=True) as running:
        yield running


def gnctl(lab: Lab, *argv: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GLOBALNET_LAB_DIR": str(lab.store.root)}
    done = subprocess.run([sys.executable, "-m", "cli.main", *argv, "--lab", lab.name],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)
    print(done.stdout, done.stderr, sep="\n")
    return done


def leftovers(lab: Lab) -> list[str]:
    """verify's namespaces and pods still in any cluster (terminating ones too)."""
    found = []
    for c in ("c1", "c2"):
        handle = lab.cluster(c)
        found += [f"{c}: ns {n['metadata']['name']}"
                  for n in handle.client(resources.NAMESPACES).list().items
                  if n["metadata"]["name"].startswith(NAMESPACE_PREFIX)]
        found += [f"{c}: pod {p['metadata']['name']}"
                  for p in handle.client(resources.PODS).list(label_selector=SELECTOR).items]
    return found


def test_verify_passes_on_a_healthy_lab_and_leaves_nothing_behind(lab: Lab) -> None:
    done = gnctl(lab, "verify", "-o", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    rows = report["results"]
    assert report["passed"] and report["counts"]["FAIL"] == 0, rows
    passed = {(r["suite"], r["check"], r["path"], r["node"].split()[0])
              for r in rows if r["outcome"] == "PASS"}
    for path in ("c1 -> c2", "c2 -> c1"):
        for node in ("gateway", "non-gateway"):
            assert ("connectivity", "TCP to a remote service's global IP", path, node) in passed
            assert ("connectivity", "server sees the client cluster's global egress IP", path,
                    node) in passed
    checks = {r["check"] for r in rows if r["outcome"] == "PASS"}
    assert {"TCP to a remote service by clusterset name",
            "headless service: each pod by its own global IP",
            "local preference: exported by both, resolves to the local service",
            "unexport: ServiceExport deleted, the name stops resolving"} <= checks
    source = next(r for r in rows if r["check"].startswith("server sees")
                  and r["path"] == "c1 -> c2")
    assert lab.pod("c1", "client").ip not in source["detail"].split(" (")[0]
    assert not leftovers(lab)


def test_benchmarks_print_a_table_and_one_json_line_of_positive_figures(lab: Lab) -> None:
    for kind, argv, figure in (("latency", ["--count", "200"], "p50_us"),
                               ("throughput", ["--seconds", "2"], "mbps")):
        done = gnctl(lab, "benchmark", kind, *argv)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.strip().splitlines()
        doc = json.loads(lines[-1])
        assert doc["benchmark"] == kind and (doc["source"], doc["target"]) == ("c1", "c2")
        pairs = {p["pair"]: p for p in doc["pairs"]}
        assert set(pairs) == {"gateway to gateway", "non-gateway to non-gateway",
                              "reference inside c1"}, pairs
        assert all(p[figure] > 0 for p in pairs.values()), pairs
        assert pairs["gateway to gateway"]["address"].startswith("242.")
        table = "\n".join(lines[:-1])
        assert ("Mbit/s" if kind == "throughput" else "p50 µs") in table
        assert "gateway to gateway" in table
        assert not leftovers(lab)


def test_gateway_failover_suite_sees_connectivity_come_back(lab: Lab) -> None:
    done = gnctl(lab, "verify", "--only", "gateway-failover", "--disruptive", "-o", "json")
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)["results"]
    assert row["outcome"] == "PASS" and "new gateway pod was Ready" in row["detail"], row
    assert "active gateway now c2-node-0" in row["detail"], row  # the one gateway node
    assert not leftovers(lab)


def test_ctrl_c_cleans_up(lab: Lab) -> None:
    env = {**os.environ, "GLOBALNET_LAB_DIR": str(lab.store.root)}
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "verify", "--lab", lab.name],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, env=env)
    try:
        deadline = time.monotonic() + 60
        while not [x for x in leftovers(lab) if " pod " in x]:
            assert time.monotonic() < deadline and proc.poll() is None, "no pods made"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert not leftovers(lab)


def test_verify_fails_on_a_broken_datapath(lab: Lab) -> None:
    assert lab.state is not None
    active = lab.active_gateways()["c2"]
    gateway = next(n for n in lab.plan.cluster("c2").nodes if n.name == active)
    cidr = lab.state.global_cidrs["c2"]
    table = "e2e-verify-fault"
    subprocess.run(netns.exec_argv(gateway.netns, ["nft", "-f", "-"]), check=True, text=True,
                   input=(f"table ip {table} {{\n"
                          "  chain pre { type filter hook prerouting priority -400; "
                          f"policy accept; ip daddr {cidr} drop; }}\n}}\n"))
    try:
        done = gnctl(lab, "verify", "--only", "connectivity", "--timeout", "5")
    finally:
        netns.run(gateway.netns, ["nft", "delete", "table", "ip", table])
    assert done.returncode == 1, done.stdout
    assert "FAIL" in done.stdout and "failed" in done.stdout.splitlines()[-1]
    assert "c1 -> c2" in done.stdout
    assert not leftovers(lab)
