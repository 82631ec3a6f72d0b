"""Lab clusters: real nodes (containerd, kubelet), overlapping addresses, real
kube-proxy, kubectl exec/logs, complete clean-up.

Address conventions: see lab/topology.py (pods 10.244.0.0/16 per cluster, node n
owns 10.244.n.0/24; services 10.96.0.0/16; nodes 172.18.0.0/24).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import netaddr
import pytest

from kube import resources
from lab import netns, processes
from lab.containerd import SHIM_SOCKET_DIR, cgroup_mounts, mounts_under
from lab.controlplane import K8S_VERSION, k8s_bin_dir
from lab.lab import Lab
from lab.ports import free_port_block
from lab.state import StateStore
from lab.topology import LabSpec
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


def test_nodes_are_real_kubelets_and_ready(lab2: Lab) -> None:
    for c in ("c1", "c2"):
        out = await_output(lab2.kubectl_argv(c, ["get", "nodes", "-o", "json"]), "Node")
        nodes = {n["metadata"]["name"]: n for n in json.loads(out)["items"]}
        plan = lab2.plan.cluster(c)
        assert set(nodes) == {n.name for n in plan.nodes}
        for n in plan.nodes:
            obj = nodes[n.name]
            assert obj["status"]["nodeInfo"]["kubeletVersion"] == K8S_VERSION
            assert obj["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
            ready = [x for x in obj["status"]["conditions"] if x["type"] == "Ready"]
            assert ready[0]["status"] == "True", ready
            assert obj["spec"]["podCIDR"] == n.pod_cidr
            assert {"type": "InternalIP", "address": n.ip} in obj["status"]["addresses"]
            gateway = obj["metadata"]["labels"].get("submariner.io/gateway")
            assert gateway == ("true" if n is plan.gateway else None)
            # kubelet's API wants a client certificate from the cluster's CA: an
            # anonymous caller on the node network gets nothing.
            anonymous = netns.run(plan.nodes[-1].netns, [
                "curl", "-sk", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}",
                f"https://{n.ip}:10250/pods"], check=False)
            assert anonymous == "401", anonymous
        table = await_output(lab2.kubectl_argv(c, ["get", "nodes"]), " Ready ")
        assert table.count(" Ready ") == len(plan.nodes) and K8S_VERSION in table, table


def test_pods_of_both_clusters_have_addresses_from_the_same_range(lab2: Lab) -> None:
    apps = {}
    for c in ("c1", "c2"):
        plan = lab2.plan.cluster(c)
        pods = lab2.pods(c)
        apps[c] = sorted(p.app for p in pods)
        for p in pods:
            node = next(n for n in plan.nodes if n.name == p.node)
            assert netaddr.IPAddress(p.ip) in netaddr.IPNetwork(node.pod_cidr), p
        # The two web pods are spread over both nodes; client sits on the last one.
        assert {p.node for p in pods if p.app == "web"} == {n.name for n in plan.nodes}
        assert [p.node for p in pods if p.app == "client"] == [plan.nodes[-1].name]
    assert apps["c1"] == apps["c2"] == ["client", "web", "web"]


def curl_until_all_answer(lab: Lab, cluster: str, url: str, expect: set[str]) -> set[str]:
    """curl `url` from the client pod until every pod name in `expect` answered."""
    curl = lab.exec_argv(cluster, "client", ["curl", "-s", "--max-time", "2", url])
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    # kube-proxy balances at random: every backend answers within a few tries.
    while seen != expect and time.monotonic() < deadline:
        out = subprocess.run(curl, capture_output=True, text=True, timeout=20).stdout
        if out.startswith("hello from "):
            seen.add(out.strip().rsplit("/", 1)[-1].removeprefix("hello from "))
        else:
            time.sleep(0.3)
    return seen


@pytest.mark.parametrize("cluster", ["c1", "c2"])
def test_a_pod_reaches_the_web_service_through_kube_proxy(lab2: Lab, cluster: str) -> None:
    ip = cluster_ip(lab2, cluster, "web")
    assert ip.startswith("10.96.")
    web = {p.name for p in lab2.pods(cluster) if p.app == "web"}
    assert curl_until_all_answer(lab2, cluster, f"http://{ip}/", web) == web
    # It went through kube-proxy's rules in the client's node namespace.
    client = lab2.pod(cluster, "client")
    node_ns = next(n.netns for n in lab2.plan.cluster(cluster).nodes if n.name == client.node)
    rules = netns.run(node_ns, ["iptables-save", "-t", "nat"])
    assert "KUBE-SVC-" in rules and ip in rules


def test_kubectl_create_deployment_and_expose_run_real_pods(lab2: Lab) -> None:
    """What a new user tries: kubectl alone, the lab's test image, no YAML. (Not
    named echo: its service link ECHO_PORT=tcp://... would reach gn-echo, which
    images built before it ignored that took for its port.)"""
    kubectl = kubectl_in(lab2, "c1")
    kubectl("create", "deployment", "hello", "--image=globalnet/test:lab", "--replicas=2")
    try:
        kubectl("expose", "deployment", "hello", "--port=80", "--target-port=8080")
        # (kubectl 1.32's `rollout status` watches in a way 1.20 never answers: poll.)
        await_output(lab2.kubectl_argv("c1", ["get", "deployment", "hello", "-o",
                                              "jsonpath={.status.availableReplicas}"]), "2",
                     timeout=90)
        echo_pods = {p.name for p in lab2.pods("c1") if p.app == "hello"}
        assert len(echo_pods) == 2
        ip = cluster_ip(lab2, "c1", "hello")
        # gn-echo answers "hello from HOSTNAME": the pod's name.
        curl = lab2.exec_argv("c1", "client", ["curl", "-s", "--max-time", "2", f"http://{ip}/"])
        seen: set[str] = set()
        deadline = time.monotonic() + 60
        while seen != echo_pods and time.monotonic() < deadline:
            out = subprocess.run(curl, capture_output=True, text=True, timeout=20).stdout
            seen |= {out.strip().removeprefix("hello from ")} & echo_pods
        assert seen == echo_pods
        pod = sorted(echo_pods)[0]
        assert kubectl("exec", pod, "--", "cat", "/etc/hostname").strip() == pod
        assert kubectl("exec", pod, "--", "curl", "-s", f"http://{ip}/clientip").startswith(
            "10.244.")
        client_ip = lab2.pod("c1", "client").ip
        logs = kubectl("logs", "-l", "app=hello", "--tail=-1")
        assert "gn-echo: HTTP and UDP echo on port 8080" in logs
        assert f"client={client_ip}:" in logs, logs
    finally:
        kubectl("delete", "service,deployment", "hello", "--wait=false", check=False)


def kubectl_in(lab: Lab, cluster: str) -> Callable[..., str]:
    """kubectl against one cluster: its stdout, asserting success unless check=False."""
    def kubectl(*args: str, check: bool = True) -> str:
        proc = subprocess.run(lab.kubectl_argv(cluster, list(args)), capture_output=True,
                              text=True, timeout=120)
        if check:
            assert proc.returncode == 0, (args, proc.stderr)
        return proc.stdout
    return kubectl


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
    """No namespace, process, mount (in any mount namespace), cgroup, shim socket
    or file of lab `name` is left."""
    assert netns.list_names(f"gn-{name}-") == []
    assert [p.name for p in procs if processes.is_alive(p)] == []
    assert processes.find_by_argument(f"{lab_root}/{name}/") == []
    assert not (lab_root / name).exists()
    assert mounts_under(lab_root / name) == []
    assert [pid for pid, text in _mountinfos() if f"{lab_root}/{name}/" in text] == []
    assert [m for m in cgroup_mounts() if (m / "globalnet" / name).exists()] == []
    if SHIM_SOCKET_DIR.exists():
        assert not any(SHIM_SOCKET_DIR.iterdir()) or _other_labs_running()


def _mountinfos() -> list[tuple[str, str]]:
    """(PID, mountinfo) of every process: mounts of every mount namespace."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((entry.name, (entry / "mountinfo").read_text()))
            except OSError:
                continue
    return found


def _other_labs_running() -> bool:
    return bool(processes.find_by_argument("containerd.sock"))


def _sysctls() -> dict[str, str]:
    """Every sysctl the kernel shows, minus those that count or vary by themselves."""
    out = subprocess.run(["sysctl", "-a"], capture_output=True, text=True).stdout
    moving = ("fs.dentry-state", "fs.file-nr", "fs.inode-nr", "fs.inode-state", "fs.aio-nr",
              "kernel.ns_last_pid", "kernel.pty.nr", "kernel.random.", "net.netfilter.",
              "fs.quota.", "kernel.keys.", "net.ipv4.tcp_mem", "net.ipv4.udp_mem",
              "kernel.tainted", "vm.stat", "fs.fanotify.", "fs.inotify.", "user.")
    values = {}
    for line in out.splitlines():
        key, _, value = line.partition(" = ")
        if not key.startswith(moving):
            values[key] = value
    return values


def test_a_real_node_lab_changes_no_sysctl_and_down_leaves_nothing(lab_root: Path) -> None:
    """kubelet would write vm.overcommit_memory, kernel.panic, kernel.panic_on_oops:
    the patched one does not, and the whole lab goes without a trace."""
    before = _sysctls()
    name = unique_lab_name("s")
    lab = Lab(name, root=lab_root)
    spec = LabSpec(name=name, clusters=1, nodes=1, api_port_base=free_port_block(2))
    try:
        lab.up(spec, progress=lambda *_: None)
        assert lab.state is not None
        procs = list(lab.state.processes)
        assert any(p.name.endswith("/kubelet") for p in procs)
        during = _sysctls()
    finally:
        lab.down(progress=lambda *_: None)
    after = _sysctls()
    changed = {k: (v, during.get(k)) for k, v in before.items() if during.get(k) != v}
    assert changed == {}
    assert {k: (v, after.get(k)) for k, v in before.items() if after.get(k) != v} == {}
    _assert_nothing_left(name, lab_root, procs)


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
        # Kill `lab up` as soon as its kubelet runs: a crash in the middle, with
        # containerd, its images, mounts and cgroups made.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = store.load()
            if state and any(p.name.endswith("/kubelet") for p in state.processes):
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
        pytest.param(["--globalnet", "--datapath", "bpf"], "unknown --datapath 'bpf'",
                     id="unknown-datapath"),
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


def _cache_without(tmp_path: Path, *, images: bool, fake_kubelet: str | None = None) -> Path:
    """A cache folder with the real Kubernetes binaries (kubelet replaced by a
    script when `fake_kubelet` is given) and the real images only when `images`."""
    from lab.images import images_dir

    bins = tmp_path / "cache" / "k8s" / K8S_VERSION
    bins.mkdir(parents=True)
    for binary in k8s_bin_dir().iterdir():
        (bins / binary.name).symlink_to(binary)
    if fake_kubelet is not None:
        # "hang": a kubelet that runs but never registers its Node.
        body = "exec sleep 600" if fake_kubelet == "hang" else \
            f"echo '{fake_kubelet}' >&2\nexit 1"
        (bins / "kubelet").unlink()
        (bins / "kubelet").write_text(f"#!/bin/sh\n{body}\n")
        (bins / "kubelet").chmod(0o755)
    if images:
        (tmp_path / "cache" / "images").symlink_to(images_dir())
    return tmp_path / "cache"


@pytest.mark.parametrize(
    ("images", "fake_kubelet", "reason"),
    [
        pytest.param(False, None, "node c1-node-0: image pause is not built", id="no-image"),
        pytest.param(True, "kubelet: cannot start here", "kubelet of node c1-node-0 exited: "
                     "kubelet: cannot start here (log: ", id="kubelet-exits"),
        pytest.param(True, "hang", "node c1-node-0 did not become Ready within 5 s; see ",
                     id="never-ready"),
    ],
)
def test_a_node_that_cannot_start_fails_with_one_line_naming_it(
        lab_root: Path, tmp_path: Path, images: bool, fake_kubelet: str | None,
        reason: str) -> None:
    name = unique_lab_name("n")
    cache = _cache_without(tmp_path, images=images, fake_kubelet=fake_kubelet)
    env = {**os.environ, "GLOBALNET_LAB_DIR": str(lab_root), "GLOBALNET_CACHE": str(cache),
           "GLOBALNET_LAB_READY_TIMEOUT": "5"}
    res = subprocess.run(
        [sys.executable, "-m", "cli.main", "lab", "up", "--name", name, "--clusters", "1",
         "--nodes", "1", "--api-port", str(free_port_block(2))],
        capture_output=True, text=True, env=env, timeout=240,
    )
    assert res.returncode == 1
    assert reason in res.stderr and res.stderr.count("\n") == 1, res.stderr
    if fake_kubelet:
        assert "kubelet.log" in res.stderr
    _assert_nothing_left(name, lab_root, [])


def test_a_failure_midway_cleans_up_what_was_started(lab_root: Path, tmp_path: Path) -> None:
    """No kube-apiserver binary: networks, etcd and the nodes' containerd are up
    when it fails."""
    from lab.images import images_dir

    name = unique_lab_name("m")
    (tmp_path / "images").symlink_to(images_dir())
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
