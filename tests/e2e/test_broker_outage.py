"""A Broker outage does not disturb the clusters that joined it.

The Broker's kube-apiserver is frozen (SIGSTOP: connections open, nothing
answers, as a partitioned or hung server) for OUTAGE_S. Meanwhile c1 keeps
reaching c2's exported service with new connections and its DNS keeps
answering with the last known records, nothing local is torn down (cables,
NAT mappings, imports), and a service exported during the outage reaches the
other cluster once the Broker is back, with no duplicated or stale objects on
the Broker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from datapath.nftables import read_mappings
from kube import names, resources
from kube.testing import await_condition
from lab import globalnet as lab_globalnet
from lab import netns
from lab.lab import Lab
from tests.e2e.conftest import running_lab

pytestmark = [pytest.mark.e2e, pytest.mark.privileged]

OUTAGE_S = 60.0


@pytest.fixture(scope="module")
def lab(lab_root: Path) -> Iterator[Lab]:
    with running_lab(lab_root, "o", globalnet=True) as running:
        yield running


def export(lab: Lab, cluster: str, service: str) -> None:
    exports = lab.cluster(cluster).client(resources.SERVICE_EXPORTS)
    if exports.get_or_none(service, namespace="default") is None:
        exports.create({"metadata": {"name": service, "namespace": "default"}})


def global_ip(lab: Lab, cluster: str, service: str) -> str:
    giips = lab.cluster(cluster).client(resources.GLOBAL_INGRESS_IPS)

    def allocated() -> str | None:
        obj = giips.get_or_none(service, namespace="default")
        return ((obj or {}).get("status") or {}).get("allocatedIP")

    return str(await_condition(allocated, timeout=30, message=f"a global IP for {service}"))


def resolve(lab: Lab, cluster: str, service: str) -> str | None:
    c = lab.plan.cluster(cluster)
    reply = lab_globalnet.dns_query(c.nodes[1].netns, lab_globalnet.dns_server(c),
                                    f"{service}.default.svc.clusterset.local", timeout=1.0)
    answers = [str(r.rdata) for r in (reply.rr if reply is not None else [])]
    return answers[0] if answers else None


def fetch(lab: Lab, ip: str) -> bool:
    argv = lab.exec_argv("c1", "client", ["curl", "-s", "--max-time", "2", f"http://{ip}/"])
    return subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout.startswith(
        "hello")


def local_state(lab: Lab) -> dict[str, object]:
    """What must not change while the Broker is away: each gateway's cable device
    (its ifindex: not rebuilt), NAT mappings and the ServiceImports."""
    out: dict[str, object] = {}
    for c in lab.plan.clusters:
        gw = c.gateway.netns
        out[f"{c.name}/cable"] = netns.run(gw, ["cat", "/sys/class/net/vx-globalnet/ifindex"])
        out[f"{c.name}/nat"] = sorted(m.global_ip for m in read_mappings(gw))
        out[f"{c.name}/imports"] = sorted(
            i["metadata"]["name"] for i in lab.cluster(c.name).client(
                resources.SERVICE_IMPORTS).list(namespace="default").items)
    return out


def broker_objects(lab: Lab) -> list[tuple[str, str, str]]:
    """Every EndpointSlice, Endpoint and Cluster object on the Broker (kind, namespace,
    name): a duplicate or a stale one shows here."""
    from kube.client import new_api_client
    from kube.crud import ResourceClient

    broker = new_api_client(lab.broker_kubeconfig())
    out = []
    for resource in (resources.ENDPOINTSLICES_V1BETA1, resources.SUBMARINER_ENDPOINTS,
                     resources.CLUSTERS):
        for obj in ResourceClient(broker, resource).list().items:
            out.append((resource.kind, obj["metadata"]["namespace"], obj["metadata"]["name"]))
    return sorted(out)


def test_a_frozen_broker_disturbs_nothing_and_its_return_catches_up(lab: Lab) -> None:
    assert lab.state is not None
    export(lab, "c2", "web")
    ip = global_ip(lab, "c2", "web")
    await_condition(lambda: resolve(lab, "c1", "web") == ip, timeout=30,
                    message="c1 resolving web before the outage")
    assert fetch(lab, ip)
    before = local_state(lab)
    on_broker = broker_objects(lab)
    subprocess.run(lab.kubectl_argv("c2", ["expose", "deployment", "web", "--name", "web2",
                                           "--port", "80", "--target-port", "80"]),
                   check=True, capture_output=True)

    api = next(p for p in lab.state.processes if p.name == f"{lab.name}-broker/kube-apiserver")
    os.kill(api.pid, signal.SIGSTOP)
    fetched = answered = rounds = 0
    try:
        started = time.monotonic()
        export(lab, "c2", "web2")  # during the outage: c2's own API server answers
        while time.monotonic() - started < OUTAGE_S:
            rounds += 1
            fetched += fetch(lab, ip)
            answered += resolve(lab, "c1", "web") == ip
            time.sleep(0.5)
        during = local_state(lab)
    finally:
        os.kill(api.pid, signal.SIGCONT)
    print(f"\nBroker frozen {OUTAGE_S:.0f} s: {fetched}/{rounds} fetches and "
          f"{answered}/{rounds} DNS answers from c1")
    assert fetched == rounds, "established clusters kept reaching each other"
    assert answered == rounds, "DNS kept answering with the last known records"
    # (c2's NAT gained web2's mapping: Globalnet allocates without the Broker.)
    for key, value in before.items():
        if key.endswith("/nat"):
            assert set(value) <= set(during[key]), key  # type: ignore[call-overload]
        else:
            assert during[key] == value, f"{key} was torn down or rebuilt"

    # Back: the export made meanwhile reaches c1; nothing duplicated, nothing stale.
    ip2 = global_ip(lab, "c2", "web2")
    await_condition(lambda: resolve(lab, "c1", "web2") == ip2, timeout=60,
                    message="web2, exported during the outage, resolving in c1")
    c2_gateway = lab.plan.cluster("c2").gateway.netns
    await_condition(lambda: fetch(lab, ip2), timeout=30,
                    message=lambda: f"web2 answering c1 at {ip2}; c2's gateway maps "
                    f"{sorted(m.global_ip for m in read_mappings(c2_gateway))}")
    after = broker_objects(lab)
    new = sorted(set(after) - set(on_broker))
    assert [kind for kind, _, _ in new] == ["EndpointSlice"], new
    assert len(after) == len(set(after))
    assert set(on_broker) <= set(after), "nothing the Broker had was lost"
    gw = lab.cluster("c1").client(resources.GATEWAYS).get(
        lab.plan.cluster("c1").gateway.name, namespace=names.CLUSTER_NAMESPACE)
    assert [c["status"] for c in gw["status"]["connections"]] == ["connected"]
