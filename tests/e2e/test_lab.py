"""Lab clusters: overlapping addresses, real kube-proxy, complete clean-up.

Address conventions: see lab/topology.py (pods 10.244.0.0/16 per cluster, node n
owns 10.244.n.0/24; services 10.96.0.0/16; nodes 172.18.0.0/24).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kube import resources
from lab import netns, processes
from lab.lab import Lab
from lab.ports import free_port_block
from lab.state import StateStore
from tests.e2e.conftest import unique_lab_name

pytestmark = [pytest.mark.e2e, pytest.mark.privileged]


def await_output(argv: list[str], expect: str, timeout: float = 60) -> str:
    """Run argv until its stdout contains `expect`; return that stdout."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        last = proc.stdout + proc.stderr
        if proc.returncode == 0 and expect in proc.stdout:
            return proc.stdout
        time.sleep(0.3)
    raise AssertionError(f"{' '.join(argv)} never printed {expect!r}; last output: {last[-300:]}")


def cluster_ip(lab: Lab, cluster: str, service: str) -> str:
    svc = lab.cluster(cluster).client(resources.SERVICES).get(service, namespace="default")
    return str(svc["spec"]["clusterIP"])


def test_pods_of_both_clusters_have_the_same_addresses(lab2: Lab) -> None:
    c1 = {p.name: p.ip for p in lab2.pods("c1")}
    c2 = {p.name: p.ip for p in lab2.pods("c2")}
    assert c1 == c2
    assert set(c1) == {"web-0", "web-1", "client-0"}
    assert all(ip.startswith("10.244.") for ip in c1.values())
    # The API agrees with the namespaces: the same pod IP in both clusters.
    api_ips = {
        c: {p["metadata"]["name"]: p["status"]["podIP"]
            for p in lab2.cluster(c).client(resources.PODS).list(namespace="default").items}
        for c in ("c1", "c2")
    }
    assert api_ips["c1"] == api_ips["c2"] == c1


@pytest.mark.parametrize("cluster", ["c1", "c2"])
def test_a_pod_reaches_the_web_service_through_kube_proxy(lab2: Lab, cluster: str) -> None:
    ip = cluster_ip(lab2, cluster, "web")
    assert ip.startswith("10.96.")
    client = lab2.pod(cluster, "client-0")
    curl = netns.exec_argv(client.netns, ["curl", "-s", "--max-time", "2", f"http://{ip}/"])
    seen = set()
    deadline = time.monotonic() + 60
    # kube-proxy balances at random: both backends answer within a few tries.
    while seen != {"web-0", "web-1"} and time.monotonic() < deadline:
        out = subprocess.run(curl, capture_output=True, text=True, timeout=20).stdout
        if out.startswith(f"hello from {cluster}/"):
            seen.add(out.strip().rsplit("/", 1)[1])
        else:
            time.sleep(0.3)
    assert seen == {"web-0", "web-1"}
    # It went through kube-proxy's rules in the client's node namespace.
    node_ns = next(n.netns for n in lab2.plan.cluster(cluster).nodes if n.name == client.node)
    rules = netns.run(node_ns, ["iptables-save", "-t", "nat"])
    assert "KUBE-SVC-" in rules and ip in rules


def test_kubectl_from_the_host_reaches_every_cluster(lab2: Lab) -> None:
    for c in ("c1", "c2", "broker"):
        argv = lab2.kubectl_argv(c, ["get", "namespaces", "-o", "name"])
        await_output(argv, "namespace/default", timeout=30)
    nodes = await_output(lab2.kubectl_argv("c2", ["get", "nodes", "-o", "wide"]), "c2-node-1")
    assert "172.18.0.11" in nodes


def test_endpoints_follow_pod_readiness(lab2: Lab) -> None:
    endpoints = lab2.cluster("c1").client(resources.ENDPOINTS)
    web1 = lab2.pod("c1", "web-1").ip

    def addresses() -> set[str]:
        ep = endpoints.get("web", namespace="default")
        return {a["ip"] for s in ep.get("subsets") or [] for a in s.get("addresses") or []}

    lab2.set_pod_ready("c1", "web-1", False)
    try:
        deadline = time.monotonic() + 30
        while web1 in addresses() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert web1 not in addresses()
    finally:
        lab2.set_pod_ready("c1", "web-1", True)
    deadline = time.monotonic() + 30
    while web1 not in addresses() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert web1 in addresses()


def _gnctl(lab_root: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GLOBALNET_LAB_DIR": str(lab_root)}
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


def _assert_nothing_left(name: str, lab_root: Path, procs: list[processes.ManagedProcess]) -> None:
    assert netns.list_names(f"gn-{name}-") == []
    assert [p.name for p in procs if processes.is_alive(p)] == []
    assert not (lab_root / name).exists()


def test_lab_down_removes_everything_even_after_a_crash(lab_root: Path) -> None:
    name = unique_lab_name("k")
    env = {**os.environ, "GLOBALNET_LAB_DIR": str(lab_root)}
    up = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "lab", "up", "--name", name, "--clusters", "1",
         "--nodes", "1", "--api-port", str(free_port_block(2))],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    store = StateStore(name, lab_root)
    try:
        # Kill `lab up` as soon as its first etcd runs: a crash in the middle.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = store.load()
            if state and any(p.name.endswith("/etcd") for p in state.processes):
                break
            time.sleep(0.1)
        up.send_signal(signal.SIGKILL)
        up.wait()
        state = store.load()
        assert state is not None and state.processes, "lab up never started a control plane"
        assert netns.list_names(f"gn-{name}-")
    finally:
        down = _gnctl(lab_root, "lab", "down", "--name", name)
    assert down.returncode == 0, down.stderr
    _assert_nothing_left(name, lab_root, state.processes)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        pytest.param(["--pod-cidr", "10.244.0.0/99"], "invalid pod CIDR", id="invalid-cidr"),
        pytest.param(["--nodes", "0"], "--nodes must be between", id="zero-nodes"),
    ],
)
def test_bad_input_fails_with_one_line_and_creates_nothing(
    lab_root: Path, args: list[str], reason: str
) -> None:
    name = unique_lab_name("b")
    res = _gnctl(lab_root, "lab", "up", "--name", name, *args)
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and reason in res.stderr
    _assert_nothing_left(name, lab_root, [])


def test_a_taken_port_fails_with_one_line_and_creates_nothing(lab_root: Path) -> None:
    name = unique_lab_name("p")
    base = free_port_block(3)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", base + 1))
        blocker.listen()
        res = _gnctl(lab_root, "lab", "up", "--name", name, "--clusters", "2",
                     "--api-port", str(base))
    assert res.returncode == 1
    assert res.stderr.strip() == f"gnctl: port {base + 1} on 127.0.0.1 is already in use " \
        "(try --api-port)"
    _assert_nothing_left(name, lab_root, [])


def test_a_failure_midway_cleans_up_what_was_started(lab_root: Path, tmp_path: Path) -> None:
    """No kube-apiserver binary: networks and etcd are up when it fails."""
    name = unique_lab_name("m")
    env = {**os.environ, "GLOBALNET_LAB_DIR": str(lab_root), "GLOBALNET_CACHE": str(tmp_path),
           "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    res = subprocess.run(
        [sys.executable, "-m", "cli.main", "lab", "up", "--name", name, "--clusters", "1",
         "--nodes", "1", "--api-port", str(free_port_block(2))],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert res.returncode == 1
    assert "kube-apiserver not found" in res.stderr and res.stderr.count("\n") == 1
    assert netns.list_names(f"gn-{name}-") == []
    assert subprocess.run(["pgrep", "-f", f"{lab_root}/{name}/"], capture_output=True
                          ).stdout == b""
    assert not (lab_root / name).exists()
