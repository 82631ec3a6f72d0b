"""Real containerd, runc and the lab's own images inside a network namespace.

containerd runs the way a lab node will run it (lab/containerd.py): started by
nsenter in a namespace this test creates, private in its state, with the images
from `make images` imported into the CRI namespace. Containers run through ctr;
everything is removed at the end, which the last tests check piece by piece.
"""

from __future__ import annotations

import os
import signal
import socket
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab import images
from lab import netns as lab_netns
from lab.containerd import (
    SHIM_SOCKET_DIR,
    Containerd,
    ContainerdConfig,
    ContainerdError,
    cgroup_mounts,
    mounts_under,
    shim_socket,
)
from lab.processes import find_by_argument, is_alive

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

ECHO_PORT = 18080


@dataclass
class Node:
    ctd: Containerd
    netns: str
    refs: dict[str, str]


def _archives(names: tuple[str, ...]) -> dict[str, Path]:
    try:
        return {n: images.archive(n) for n in names}
    except images.ImageError as exc:
        pytest.fail(str(exc))


def _new_containerd(tag: str) -> tuple[Containerd, str]:
    name = f"gn-t{uuid.uuid4().hex[:6]}-{tag}"
    lab_netns.ensure_netns(name)
    base = Path(tempfile.mkdtemp(prefix=f"gn-{tag}-", dir="/tmp"))
    return Containerd(ContainerdConfig(name=name, netns=name, base_dir=base)), name


def _lab_ref(refs: list[str]) -> str:
    return next(r for r in refs if r.endswith(f":{images.TAG}"))


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces, mounts and cgroups")
    archives = _archives(images.IMAGES)
    ctd, name = _new_containerd("ctd")
    try:
        ctd.start()
        refs = {n: _lab_ref(ctd.import_image(a)) for n, a in archives.items()}
        yield Node(ctd, name, refs)
    finally:
        ctd.stop()
        lab_netns.delete_netns(name)


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_containerd_runs_in_the_node_namespace_with_the_cri_plugin(node: Node) -> None:
    ctd = node.ctd
    assert ctd.process is not None
    ns_inode = os.stat(f"/proc/{ctd.process.pid}/ns/net").st_ino
    assert ns_inode == os.stat(f"/run/netns/{node.netns}").st_ino
    plugins = ctd.ctr("plugins", "ls").stdout.splitlines()
    status = {(f[0], f[1]): f[-1] for f in (line.split() for line in plugins[1:]) if len(f) >= 3}
    assert status[("io.containerd.grpc.v1", "cri")] == "ok", plugins
    assert ("io.containerd.internal.v1", "opt") not in status
    assert ctd.config.address.is_socket() and ctd.config.ttrpc_address.is_socket()
    # Idle memory, for the record (DESIGN: about 45 MB).
    print(f"containerd RSS {ctd.rss_mb():.1f} MiB")


def test_imported_images_have_the_lab_names(node: Node) -> None:
    for name, ref in node.refs.items():
        assert ref.endswith(images.reference(name)), (name, ref)
    assert set(node.refs.values()) <= set(node.ctd.image_names())


def test_test_image_runs_its_clients(node: Node) -> None:
    out = node.ctd.run(
        node.refs["test"], "clients",
        ["sh", "-c", "curl --version; dig -v 2>&1; iperf3 --version; nc -h 2>&1 | head -1"],
    ).stdout
    assert out.startswith("curl 7."), out
    assert "DiG 9." in out and "iperf 3." in out, out


def test_echo_server_answers_http_and_udp_inside_the_namespace(node: Node) -> None:
    ctd = node.ctd
    ctd.run(node.refs["test"], "echo",
            ["gn-echo", "--port", str(ECHO_PORT), "--message", "hello from echo"], detach=True)
    try:
        def listening() -> bool:
            with lab_netns.entered(node.netns), socket.socket() as s:
                return s.connect_ex(("127.0.0.1", ECHO_PORT)) == 0

        _wait(listening, "gn-echo to listen")
        with lab_netns.entered(node.netns):
            body = urllib.request.urlopen(f"http://127.0.0.1:{ECHO_PORT}/", timeout=5).read()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                udp.settimeout(5)
                udp.sendto(b"ping-42", ("127.0.0.1", ECHO_PORT))
                echoed = udp.recv(100)
        assert body == b"hello from echo\n"
        assert echoed == b"ping-42"
        # A second container reaches it over the node namespace's loopback.
        out = ctd.run(node.refs["test"], "client",
                      ["curl", "-sS", f"http://127.0.0.1:{ECHO_PORT}/clientip"]).stdout
        assert out.startswith("127.0.0.1:"), out
        # PID 1 handles SIGTERM: the container stops at once, not after a grace period.
        t0 = time.monotonic()
        ctd.ctr("tasks", "kill", "-s", "SIGTERM", "echo")
        _wait(lambda: ctd.task_status("echo") == "STOPPED", "gn-echo to stop on SIGTERM", 3)
        assert time.monotonic() - t0 < 3
    finally:
        ctd.ctr("tasks", "delete", "-f", "echo", check=False)
        ctd.ctr("containers", "delete", "echo", check=False)


def test_globalnet_image_imports_its_bindings_and_has_the_cable_tools(node: Node) -> None:
    out = node.ctd.run(
        node.refs["globalnet"], "gn",
        ["sh", "-c",
         "python3 -c 'import nftables, bcc, globalnet, kube, kubernetes, pyroute2; print(\"ok\")'"
         " && nft --version && conntrack --version && ip -V && wg --version"
         " && command -v wireguard-go"
         # charon with the userspace ESP of strongSwan, for kernels without ESP.
         " && ls /usr/sbin/swanctl /usr/lib/ipsec/charon"
         " /usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so"
         " && gnctl --help >/dev/null && echo gnctl-ok"],
    ).stdout
    lines = out.splitlines()
    assert lines[0] == "ok", out
    assert any(line.startswith("nftables v1.") for line in lines), out
    assert any(line.startswith("wireguard-tools v") for line in lines), out
    assert "/usr/bin/wireguard-go" in lines and "/usr/sbin/swanctl" in lines, out
    assert lines[-1] == "gnctl-ok", out


def test_pause_image_keeps_running_and_stops_on_sigterm(node: Node) -> None:
    ctd = node.ctd
    ctd.run(node.refs["pause"], "sandbox", detach=True)
    try:
        time.sleep(1)
        assert ctd.task_status("sandbox") == "RUNNING"
        ctd.ctr("tasks", "kill", "-s", "SIGTERM", "sandbox")
        _wait(lambda: ctd.task_status("sandbox") == "STOPPED", "pause to stop on SIGTERM", 3)
    finally:
        ctd.ctr("tasks", "delete", "-f", "sandbox", check=False)
        ctd.ctr("containers", "delete", "sandbox", check=False)


def test_a_bad_run_fails_with_the_reason(node: Node) -> None:
    with pytest.raises(ContainerdError, match="ctr run"):
        node.ctd.run(node.refs["test"], "bad", ["/no/such/binary"], timeout=60)
    node.ctd.ctr("containers", "delete", "bad", check=False)


@pytest.mark.parametrize("how", ["graceful", "after-sigkill", "by-a-new-instance"])
def test_stop_leaves_nothing_behind(how: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces, mounts and cgroups")
    archive = _archives(("pause",))["pause"]
    ctd, name = _new_containerd("stop")
    cfg = ctd.config
    try:
        ctd.start()
        ref = _lab_ref(ctd.import_image(archive))
        ctd.run(ref, "sandbox", detach=True)
        assert ctd.process is not None
        shims = [p for p in find_by_argument(str(cfg.address)) if "containerd-shim" in p.name]
        sock = shim_socket(cfg.address, "k8s.io", "sandbox")
        cgroups = [m / cfg.cgroup.lstrip("/") / "sandbox" for m in cgroup_mounts()]
        assert shims and sock.exists() and mounts_under(cfg.base_dir)
        assert any(c.is_dir() for c in cgroups)
        daemon = ctd.process
        if how == "after-sigkill":
            # A crashed containerd: its shim and container live on without it.
            os.kill(daemon.pid, signal.SIGKILL)
            _wait(lambda: not is_alive(daemon), "containerd to die")
        elif how == "by-a-new-instance":
            # What `lab down` does: it knows the node's config, not the process.
            ctd = Containerd(cfg)
    finally:
        ctd.stop()
        lab_netns.delete_netns(name)
    assert not is_alive(daemon)
    assert not any(is_alive(s) for s in shims)
    assert not find_by_argument(str(cfg.address))
    assert not sock.exists()
    assert not mounts_under(cfg.base_dir)
    assert not cfg.base_dir.exists()
    assert not [c for c in cgroups if c.parent.exists()]
    assert not (SHIM_SOCKET_DIR.exists() and sock.name in os.listdir(SHIM_SOCKET_DIR))
    assert not lab_netns.exists(name)
