"""Every agent of a cluster restarted one by one, with SIGTERM and with SIGKILL,
while a TCP stream runs from c1 to c2 through both gateways: the stream goes on,
no global IP changes, no cable is torn down and rebuilt.

The stream (`lab.probe.Streams`): c1's client sends a line every 50 ms on one
connection to an echo server in c2, exported and reached by its global IP; it reports the
longest wait for an echo and whether the connection ever broke. Agents: the
Globalnet agent, the gateway engine (with the Broker syncer in its process),
the route agents and the Lighthouse agent of c2 (the server's cluster: its
gateway holds the stream's ingress translation) and the gateway engine of c1
(the client's: its cable carries the stream out).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kube import names, resources
from kube.testing import await_condition
from lab import netns
from lab.lab import Lab
from lab.probe import Streams, echo_server_manifest
from tests.e2e.conftest import running_lab

pytestmark = [pytest.mark.e2e, pytest.mark.privileged]

@pytest.fixture(scope="module")
def lab(lab_root: Path) -> Iterator[Lab]:
    with running_lab(lab_root, "r", globalnet=True) as running:
        yield running


def echo_service(lab: Lab) -> str:
    """An echo server pod and Service `echo` in c2, exported; its global IP."""
    subprocess.run(lab.kubectl_argv("c2", ["apply", "-f", "-"]), input=echo_server_manifest(),
                   text=True, check=True, capture_output=True)
    await_condition(lambda: any(p.name == "echo" and p.pid for p in lab.pods("c2")),
                    timeout=60, message="the echo pod running")
    exports = lab.cluster("c2").client(resources.SERVICE_EXPORTS)
    if exports.get_or_none("echo", namespace="default") is None:
        exports.create({"metadata": {"name": "echo", "namespace": "default"}})
    giips = lab.cluster("c2").client(resources.GLOBAL_INGRESS_IPS)

    def allocated() -> str | None:
        obj = giips.get_or_none("echo", namespace="default")
        return ((obj or {}).get("status") or {}).get("allocatedIP")

    return str(await_condition(allocated, timeout=30, message="a global IP for echo"))


def invariants(lab: Lab) -> dict[str, object]:
    """What a restart must not change: global IPs and the cables (ifindex)."""
    out: dict[str, object] = {}
    for c in lab.plan.clusters:
        api = lab.cluster(c.name)
        out[f"{c.name}/ingress"] = sorted(
            (o["metadata"]["name"], (o.get("status") or {}).get("allocatedIP"))
            for o in api.client(resources.GLOBAL_INGRESS_IPS).list().items)
        egress = api.client(resources.CLUSTER_GLOBAL_EGRESS_IPS).get(names.CLUSTER_EGRESS_NAME)
        out[f"{c.name}/egress"] = sorted(egress["status"]["allocatedIPs"])
        out[f"{c.name}/cable"] = netns.run(c.gateway.netns,
                                           ["cat", "/sys/class/net/vx-globalnet/ifindex"])
    return out


def restart(lab: Lab, cluster: str, module: str, sig: signal.Signals) -> None:
    """Send `sig` to every process of `module` in `cluster` and wait until kubelet has
    the agent running again (new PIDs)."""
    old = set(lab.agent_pids(cluster).get(module, []))
    assert old, f"no {module} running in {cluster}"
    for pid in old:
        os.kill(pid, sig)

    def back() -> bool:
        now = set(lab.agent_pids(cluster).get(module, []))
        return len(now) == len(old) and not now & old

    # kubelet backs a restarted container off 10 s on its second restart.
    await_condition(back, timeout=60, message=f"{module} of {cluster} back after {sig.name}")


def test_the_stream_survives_every_agent_restart(lab: Lab) -> None:
    ip = echo_service(lab)
    before = invariants(lab)
    stream = Streams(lab.exec_argv("c1", "client", []), ip, 1)
    restarted = []
    try:
        time.sleep(2.0)
        for cluster, module in (("c2", "globalnet.agent"), ("c2", "gateway.engine"),
                                ("c2", "gateway.routeagent"), ("c2", "lighthouse.agent"),
                                ("c1", "gateway.engine")):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                restart(lab, cluster, module, sig)
                assert stream.running(), "the stream ended during a restart"
                restarted.append(f"{cluster}/{module}/{sig.name}")
                time.sleep(1.0)
    finally:
        (report,) = stream.stop()
    print(f"\n{len(restarted)} restarts; the stream: {report}")
    assert report["error"] is None, report
    assert report["echoed"] > 100
    assert invariants(lab) == before, "a global IP changed or a cable was rebuilt"
