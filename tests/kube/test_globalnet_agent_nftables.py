"""The agent process end to end: API objects -> controllers -> intent -> nftables.

A real `python -m globalnet.agent --datapath nftables --netns GW` against the
session's API server programs table `inet globalnet` in a namespace standing in
for the gateway node. Checked: exports and the cluster egress IPs reach the
kernel; stopping the agent (SIGTERM or SIGKILL) leaves the table and its
elements in place the whole time, and a fresh agent takes over without a gap
(the table is watched until the fresh agent has applied its first intent, the
full sync of its fresh datapath, as its own metrics endpoint reports);
a table deleted by hand comes back; `--uninstall` deletes our table only.
Address conventions: cluster "gwagent" owns 242.6.0.0/24.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from datapath.nftables import read_mappings
from kube import crud, resources
from kube.testing import await_condition, temporary_namespace
from lab import netns
from tests.kube.agent_process import AgentProcess

pytestmark = pytest.mark.kube

GLOBAL_CIDR = "242.6.0.0/24"
LEASE_NS = "globalnet-agent-nft"


@pytest.fixture
def gw() -> Iterator[str]:
    name = f"gn-agent{os.getpid() % 100000}"
    netns.ensure_netns(name)
    try:
        yield name
    finally:
        netns.delete_netns(name)


@pytest.fixture
def agent(control_plane: Any, gw: str, tmp_path: Path) -> Iterator[AgentProcess]:
    a = AgentProcess(kubeconfig=control_plane.kubeconfig, netns=gw, log_dir=tmp_path,
                     cluster_id="gwagent", global_cidr=GLOBAL_CIDR,
                     local_cidrs=("10.244.0.0/16", "10.96.0.0/16"), lease_namespace=LEASE_NS)
    try:
        yield a
    finally:
        a.stop()


def kernel_rows(gw: str) -> set[tuple[str, str, str, str]]:
    return {(r.direction, r.global_ip, r.local, r.owner) for r in read_mappings(gw)}


class TableWatch:
    """Reads the kernel's mappings every 20 ms in a thread; remembers the smallest set.

    The table (or one of its sets) vanishing under a read (ENOENT) reads as empty:
    the mappings were gone. Any other failure ends the watch and is kept in `error`;
    `reads` then stops growing, so a test waiting for more reads fails instead of
    watching nothing."""

    def __init__(self, gw: str) -> None:
        self.gw = gw
        self.smallest: set[tuple[str, str, str, str]] | None = None
        self.reads = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rows = kernel_rows(self.gw)
            except FileNotFoundError:
                rows = set()
            except BaseException as exc:
                self.error = exc
                return
            if self.smallest is None or len(rows) < len(self.smallest):
                self.smallest = rows
            self.reads += 1
            time.sleep(0.02)

    def await_reads(self, count: int, what: str, timeout: float = 30) -> None:
        """Wait for `count` more reads of the table than it has made so far."""
        target = self.reads + count
        await_condition(lambda: self.reads >= target, timeout=timeout,
                        message=lambda: f"{count} table reads {what} (error: {self.error!r})")

    def __enter__(self) -> TableWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def test_agent_programs_the_gateway_and_never_lets_go_of_it(
        api_client: Any, agent: AgentProcess, gw: str) -> None:
    services = crud.ResourceClient(api_client, resources.SERVICES)
    exports = crud.ResourceClient(api_client, resources.SERVICE_EXPORTS)
    giips = crud.ResourceClient(api_client, resources.GLOBAL_INGRESS_IPS)
    with temporary_namespace(api_client, "gwagent") as ns:
        svc = services.create({"metadata": {"name": "web", "namespace": ns},
                               "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}})
        cluster_ip = svc["spec"]["clusterIP"]
        agent.start()
        exports.create({"metadata": {"name": "web", "namespace": ns}})

        def web_global_ip() -> str | None:
            obj = giips.get_or_none("web", namespace=ns)
            return ((obj or {}).get("status") or {}).get("allocatedIP")

        ip = await_condition(web_global_ip, timeout=30, message="a global IP for web")

        def programmed() -> set[tuple[str, str, str, str]] | None:
            rows = kernel_rows(gw)
            ingress = {r for r in rows if r[0] == "ingress"}
            egress = {r for r in rows if r[0] == "egress"}
            return rows if ingress and egress else None

        try:
            found = await_condition(programmed, timeout=30, message="web and egress in the kernel")
        except AssertionError as exc:
            pytest.fail(f"{exc}\nagent log:\n{agent.log()}")
        assert found is not None
        rows = found
        assert ("ingress", ip, cluster_ip, f"GlobalIngressIP {ns}/web") in rows
        assert all(r[1].startswith("242.6.0.") for r in rows), rows

        # Stop and restart, gracefully and not: the table never shrinks meanwhile,
        # up to and including the new agent's first full sync.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with TableWatch(gw) as watch:
                agent.stop(sig)
                watch.await_reads(10, "with no agent running")
                agent.start()
                try:
                    await_condition(lambda: agent.applied_intents() >= 1, timeout=60,
                                    interval=0.1,
                                    message=f"the agent restarted after {sig.name} applying "
                                            "its first intent")
                except AssertionError as exc:
                    pytest.fail(f"{exc}\nagent log:\n{agent.log()}")
                watch.await_reads(2, "after the new agent's first full sync")
            assert watch.error is None, watch.error
            assert watch.smallest == rows, f"mappings missing after {sig.name}"

        # A new export reaches the kernel through the new agent.
        services.create({"metadata": {"name": "api", "namespace": ns},
                         "spec": {"ports": [{"port": 443, "protocol": "TCP"}]}})
        exports.create({"metadata": {"name": "api", "namespace": ns}})
        await_condition(lambda: any(r[3] == f"GlobalIngressIP {ns}/api" for r in kernel_rows(gw)),
                        timeout=30, message="the new agent programs a new export")
        rows = kernel_rows(gw)

        # Drift: our table deleted by hand comes back, elements and all.
        netns.run(gw, ["nft", "delete", "table", "inet", "globalnet"])
        started = time.monotonic()
        await_condition(lambda: kernel_rows(gw) == rows, timeout=10, interval=0.05,
                        message="the table repaired")
        print(f"\ntable deleted by hand, repaired after "
              f"{(time.monotonic() - started) * 1000:.0f} ms")
        await_condition(lambda: "repaired drift in inet globalnet" in agent.log(), timeout=5,
                        message="the agent logs the repair")

        # Leave nothing allocated for other modules' controllers.
        for name in ("web", "api"):
            exports.delete(name, namespace=ns)
        await_condition(lambda: not giips.list(namespace=ns).items, timeout=30,
                        message="GlobalIngressIPs withdrawn")
        agent.stop()

    # --uninstall: our table goes, a foreign one stays.
    netns.run(gw, ["nft", "add", "table", "inet", "someone-else"])
    out = subprocess.run(agent.argv("--uninstall"), capture_output=True, text=True, check=True)
    assert "deleted table inet globalnet" in out.stdout
    tables = netns.run(gw, ["nft", "list", "tables"])
    assert "globalnet" not in tables and "someone-else" in tables


def test_agent_refuses_bad_flags_clearly(tmp_path: Path) -> None:
    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "globalnet.agent", *argv],
                              capture_output=True, text=True, timeout=60)

    missing = run("--cluster-id", "x")
    assert missing.returncode == 2 and "--kubeconfig, --global-cidr" in missing.stderr
    no_ns = run("--uninstall", "--netns", "gn-no-such-namespace")
    assert no_ns.returncode == 2 and "no network namespace 'gn-no-such-namespace'" in no_ns.stderr
    recording = run("--uninstall", "--datapath", "recording", "--netns", "x")
    assert recording.returncode == 2 and "--netns needs --datapath nftables" in recording.stderr
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("")
    bad_cidr = run("--kubeconfig", str(kubeconfig), "--cluster-id", "x",
                   "--global-cidr", "242.6.0.0/33", "--datapath", "recording")
    assert bad_cidr.returncode == 2 and "invalid CIDR" in bad_cidr.stderr
