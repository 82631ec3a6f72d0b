"""Two controller processes, 1,000 services churning, the leader SIGKILLed repeatedly.

Afterwards every exported service has exactly one global IP, no address is held
by two objects, and services that stayed exported never saw their address change.
Address conventions: cluster "churn" owns 242.9.0.0/16.
"""

from __future__ import annotations

import collections
import concurrent.futures
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kube import crud, names, resources
from kube.informer import Informer
from kube.testing import await_condition, temporary_namespace

pytestmark = [pytest.mark.kube, pytest.mark.slow]

SERVICES = 1000
STAYING = range(0, 500)
CHURNING = range(500, SERVICES)
KILLS = 3
LEASE_NS = "globalnet-churn"


class Agents:
    """Controller processes, each with its own identity; killed by PID."""

    def __init__(self, kubeconfig: Path, log_dir: Path) -> None:
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.count = 0

    def spawn(self) -> str:
        self.count += 1
        identity = f"agent-{self.count}"
        log = open(self.log_dir / f"{identity}.log", "wb")  # noqa: SIM115
        self.procs[identity] = subprocess.Popen(
            [sys.executable, "-m", "globalnet.agent", "--kubeconfig", str(self.kubeconfig),
             "--cluster-id", "churn", "--global-cidr", "242.9.0.0/16",
             "--local-cidr", "10.244.0.0/16", "--local-cidr", "10.96.0.0/16",
             "--namespace", LEASE_NS, "--identity", identity, "--lease-duration", "2",
             "--renew-deadline", "1.5", "--retry-period", "0.25", "--datapath", "recording"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        return identity

    def kill(self, identity: str) -> None:
        proc = self.procs.pop(identity)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


@pytest.fixture
def agents(control_plane: Any, tmp_path: Path) -> Iterator[Agents]:
    a = Agents(control_plane.kubeconfig, tmp_path)
    try:
        yield a
    finally:
        a.stop_all()


def leader(api: Any) -> str | None:
    lease = crud.ResourceClient(api, resources.LEASES).get_or_none(
        names.globalnet_lease("churn"), namespace=LEASE_NS)
    return ((lease or {}).get("spec") or {}).get("holderIdentity") or None


def test_churn_with_leader_kills_keeps_one_stable_ip_per_exported_service(
    api_client: Any, agents: Agents
) -> None:
    rng = random.Random(1234)
    services = crud.ResourceClient(api_client, resources.SERVICES)
    exports = crud.ResourceClient(api_client, resources.SERVICE_EXPORTS)
    with temporary_namespace(api_client, "churn") as ns, \
            concurrent.futures.ThreadPoolExecutor(8) as pool:
        def make_service(i: int) -> None:
            services.create({"metadata": {"name": f"s{i}", "namespace": ns},
                             "spec": {"ports": [{"port": 80}]}})

        def export(i: int) -> None:
            exports.create({"metadata": {"name": f"s{i}", "namespace": ns}})

        def unexport(i: int) -> None:
            exports.delete(f"s{i}", namespace=ns)

        def flip(i: int, exported: set[int]) -> None:
            if i in exported:
                unexport(i)
            else:
                export(i)

        list(pool.map(make_service, range(SERVICES)))

        # Every address each GlobalIngressIP ever showed, by object identity (uid).
        seen: dict[tuple[str, str], set[str]] = collections.defaultdict(set)

        def record(obj: dict[str, Any]) -> None:
            ip = (obj.get("status") or {}).get("allocatedIP")
            if ip:
                seen[(obj["metadata"]["name"], obj["metadata"]["uid"])].add(ip)

        watcher = Informer(api_client, resources.GLOBAL_INGRESS_IPS, namespace=ns)
        watcher.add_handler(on_add=record, on_update=lambda _o, n: record(n))
        watcher.start()
        try:
            agents.spawn()
            agents.spawn()
            exported = set(range(SERVICES))
            list(pool.map(export, range(SERVICES)))
            await_condition(lambda: leader(api_client), timeout=30, message="a leader")
            for round_ in range(KILLS):
                flips = rng.sample(list(CHURNING), 120)
                list(pool.map(flip, flips, [exported] * len(flips)))
                exported ^= set(flips)
                victim = leader(api_client)
                assert victim in agents.procs, f"leader {victim} is not one of ours"
                agents.kill(victim)
                agents.spawn()
                await_condition(lambda v=victim: leader(api_client) not in (None, v),
                                timeout=30, message=f"a new leader after kill {round_ + 1}")

            def converged() -> list[dict[str, Any]] | None:
                items = crud.ResourceClient(api_client, resources.GLOBAL_INGRESS_IPS).list(
                    namespace=ns).items
                names = {g["metadata"]["name"] for g in items}
                ips = [(g.get("status") or {}).get("allocatedIP") for g in items]
                if names == {f"s{i}" for i in exported} and all(ips):
                    return items
                return None

            items = await_condition(converged, timeout=240, interval=1.0,
                                    message="one GlobalIngressIP per exported service")
        finally:
            watcher.stop()
            # Leave nothing allocated for the next module's controllers to find: the
            # agents withdraw every GlobalIngressIP once nothing is exported.
            list(pool.map(unexport, sorted(exported)))
            giips = crud.ResourceClient(api_client, resources.GLOBAL_INGRESS_IPS)
            await_condition(lambda: not giips.list(namespace=ns).items, timeout=120,
                            interval=1.0, message="every GlobalIngressIP withdrawn")

    ips = [g["status"]["allocatedIP"] for g in items]
    assert len(ips) == len(set(ips)), "an address is held by two objects"
    assert all(g["spec"]["target"] == names.TARGET_CLUSTER_IP_SERVICE for g in items)
    for i in STAYING:
        objs = [(k, v) for k, v in seen.items() if k[0] == f"s{i}"]
        assert len(objs) == 1, f"s{i} stayed exported but its GlobalIngressIP was recreated"
        assert len(objs[0][1]) == 1, f"s{i} stayed exported but its IP changed: {objs[0][1]}"
    print(f"\nchurn: {SERVICES} services, {len(items)} exported at the end, "
          f"{KILLS} leader kills, {agents.count} agents started")
