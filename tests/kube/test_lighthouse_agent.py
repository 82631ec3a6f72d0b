"""The Lighthouse agent across a real clusterset: a Broker and two clusters.

Three real control planes (etcd + kube-apiserver 1.20; the clusters also run
kube-controller-manager, whose endpoint controller fills Endpoints from the pod
status the tests write), the Globalnet controllers of each cluster (recording
datapath) and one Lighthouse agent per cluster, all in this process: the harness
is ``lab.apiclusterset``; this module adds the assertion helpers.

Address conventions:

    cluster  global CIDR      pod CIDR        service CIDR
    east     242.0.0.0/16     10.244.0.0/16   10.96.0.0/16
    west     242.1.0.0/16     10.244.0.0/16   10.96.0.0/16   (the same: overlapping)
    broker   -                -               10.96.0.0/16   (Broker namespace
                                                             kube.names.BROKER_NAMESPACE,
                                                             members publish into
                                                             broker_member_namespace)

Pods are API objects only: a test writes their status (podIP, Ready) as kubelet
would, with the same pod IPs in both clusters on purpose. Every test works in its
own namespace, created with the same name in both clusters and deleted after.
Tests wait on conditions (``await_condition``), never on fixed sleeps.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
import pytest

from kube import crud, names, resources
from kube.testing import (
    ReconcileRecorder,
    await_condition,
    cluster_object,
    unique_name,
)
from lab.apiclusterset import ApiCluster, ApiClusterset, ClustersetConfig
from lighthouse.agent import reasons as r
from lighthouse.dns import DnsServer, ServerConfig, ServerThread

pytestmark = pytest.mark.kube

BROKER_NS = names.BROKER_NAMESPACE
GLOBAL_CIDRS = {"east": "242.0.0.0/16", "west": "242.1.0.0/16"}
TIMEOUT = 20.0

JSON = dict[str, Any]
T = TypeVar("T")


def await_value(predicate: Callable[[], T | None], *, message: str | Callable[[], str],
                timeout: float = TIMEOUT, interval: float = 0.02) -> T:
    """``await_condition`` for predicates that answer None (or falsy) until ready."""
    value = await_condition(predicate, timeout=timeout, interval=interval, message=message)
    assert value is not None
    return value


# --- the clusterset -------------------------------------------------------------------------

class Cluster(ApiCluster):
    """A member cluster with the assertions these tests make about it."""

    def await_global_ip(self, ns: str, giip: str, *, timeout: float = TIMEOUT) -> str:
        ip = super().await_global_ip(ns, giip, timeout=timeout)
        assert ipaddress.ip_address(ip) in ipaddress.ip_network(self.global_cidr)
        return ip

    def await_export_condition(self, ns: str, name: str, ctype: str, reason: str,
                               status: str | None = None) -> JSON:
        def found() -> JSON | None:
            obj = self.client(resources.SERVICE_EXPORTS).get_or_none(name, namespace=ns) or {}
            for cond in (obj.get("status") or {}).get("conditions") or []:
                if cond.get("type") == ctype and cond.get("reason") == reason and (
                        status is None or cond.get("status") == status):
                    return obj
            return None

        return await_value(
            found,
            message=f"{self.name}: ServiceExport {ns}/{name} {ctype}={status or '*'} {reason}")

    def await_local_import(self, ns: str, svc: str, clusters: list[str]) -> JSON:
        """The aggregated ServiceImport once its status lists exactly ``clusters``."""
        def listed() -> JSON | None:
            obj = self.local_import(ns, svc)
            status = (obj or {}).get("status") or {}
            return obj if [c["cluster"] for c in status.get("clusters") or []] == clusters \
                else None

        return await_value(listed, message=f"{self.name}'s ServiceImport {ns}/{svc} "
                                           f"listing {clusters}")


class Clusterset(ApiClusterset[Cluster]):
    """The Broker and the member clusters, with Broker-side assertions."""

    def await_broker(self, resource: resources.Resource, ns: str, svc: str, cluster: str,
                     predicate: Callable[[JSON], bool] = lambda obj: True) -> JSON:
        def one() -> JSON | None:
            found = self.broker_objects(resource, ns, svc, cluster)
            return found[0] if len(found) == 1 and predicate(found[0]) else None

        return await_value(one, message=f"Broker {resource.kind} of {ns}/{svc} from {cluster}")

    def await_withdrawn(self, ns: str, svc: str, cluster: str) -> None:
        await_condition(
            lambda: not any(self.broker_objects(res, ns, svc, cluster)
                            for res in (resources.SERVICE_IMPORTS, self.broker_slices)),
            timeout=TIMEOUT, message=f"{cluster}'s {ns}/{svc} withdrawn from the Broker")

    def ensure_nothing_on_broker(self, ns: str, svc: str, cluster: str) -> None:
        for res in (resources.SERVICE_IMPORTS, self.broker_slices):
            assert self.broker_objects(res, ns, svc, cluster) == [], f"{res.kind} published"


@pytest.fixture(scope="module")
def clusterset() -> Iterator[Clusterset]:
    """Broker + east + west, started in parallel; everything stopped at the end."""
    config = ClustersetConfig(members=GLOBAL_CIDRS, broker_namespace=BROKER_NS)
    with Clusterset(config, Cluster) as started:
        yield started


@pytest.fixture
def ns(clusterset: Clusterset) -> Iterator[str]:
    """A namespace of the same name in both clusters."""
    with clusterset.namespace("lh") as name:
        yield name


def addresses(slice_: JSON) -> list[tuple[str, str | None, bool]]:
    """(address, hostname, ready) of every endpoint, sorted."""
    return sorted((addr, e.get("hostname"), (e.get("conditions") or {}).get("ready", True))
                  for e in slice_.get("endpoints") or [] for addr in e.get("addresses") or [])


# --- export and import ------------------------------------------------------------------------

def test_export_in_west_is_published_to_the_broker_and_imported_in_east(
    clusterset: Clusterset, ns: str
) -> None:
    east, west = clusterset["east"], clusterset["west"]
    west.pod(ns, "web-0", "10.244.1.5", {"app": "web"})
    svc = west.service(ns, "web", selector={"app": "web"})
    west.export(ns, "web")
    gip = west.await_global_ip(ns, "web")
    assert gip != svc["spec"]["clusterIP"]

    si = clusterset.await_broker(resources.SERVICE_IMPORTS, ns, "web", "west")
    assert si["metadata"]["name"] == f"web-{ns}-west"
    assert si["spec"]["type"] == r.CLUSTER_SET_IP
    assert si["spec"]["ips"] == [gip]
    assert si["spec"]["ports"] == [{"name": "http", "protocol": "TCP", "port": 80}]
    assert si["metadata"]["labels"][names.MANAGED_BY_LABEL] == names.MANAGED_BY_LIGHTHOUSE
    # Ready once the endpoint controller lists the ready pod in the Endpoints.
    eps = clusterset.await_broker(clusterset.broker_slices, ns, "web", "west",
                                  lambda s: addresses(s) == [(gip, None, True)])
    assert eps["addressType"] == "IPv4"
    assert eps["ports"] == [{"name": "http", "protocol": "TCP", "port": 80}]
    assert "kubernetes.io/service-name" not in eps["metadata"]["labels"]

    aggregated = east.await_local_import(ns, "web", ["west"])
    assert aggregated["spec"]["type"] == r.CLUSTER_SET_IP
    assert aggregated["spec"]["ports"] == [{"name": "http", "protocol": "TCP", "port": 80}]
    (copy,) = await_condition(lambda: [s for s in east.local_slices(ns, "web")
                                       if addresses(s) == [(gip, None, True)]],
                              timeout=TIMEOUT, message="east's copy of west's slice")
    labels = copy["metadata"]["labels"]
    assert labels == eps["metadata"]["labels"]
    assert labels[names.SOURCE_CLUSTER_LABEL] == "west"
    assert labels[names.SERVICE_NAME_LABEL] == "web"
    assert labels[names.SOURCE_NAMESPACE_LABEL] == ns

    west.await_export_condition(ns, "web", r.VALID, r.REASON_VALID, "True")
    west.await_export_condition(ns, "web", r.READY, r.EXPORTED, "True")


def test_unexport_withdraws_from_the_broker_and_every_cluster(
    clusterset: Clusterset, ns: str
) -> None:
    east, west = clusterset["east"], clusterset["west"]
    west.service(ns, "gone")
    west.export(ns, "gone")
    clusterset.await_broker(clusterset.broker_slices, ns, "gone", "west")
    await_condition(lambda: east.local_slices(ns, "gone") and east.local_import(ns, "gone"),
                    timeout=TIMEOUT, message="east imported gone")

    west.unexport(ns, "gone")
    clusterset.await_withdrawn(ns, "gone", "west")
    await_condition(lambda: not east.local_slices(ns, "gone")
                    and east.local_import(ns, "gone") is None,
                    timeout=TIMEOUT, message="east's imports of gone removed")
    await_condition(lambda: not west.local_slices(ns, "gone"), timeout=TIMEOUT,
                    message="west's own import of gone removed")


def test_deleting_the_service_withdraws_and_invalidates_the_export(
    clusterset: Clusterset, ns: str
) -> None:
    west = clusterset["west"]
    west.service(ns, "brief")
    west.export(ns, "brief")
    clusterset.await_broker(resources.SERVICE_IMPORTS, ns, "brief", "west")
    west.client(resources.SERVICES).delete("brief", namespace=ns)
    clusterset.await_withdrawn(ns, "brief", "west")
    west.await_export_condition(ns, "brief", r.VALID, r.NO_SERVICE, "False")
    west.await_export_condition(ns, "brief", r.READY, r.PENDING, "False")


def test_headless_export_publishes_each_pods_global_ip_and_hostname(
    clusterset: Clusterset, ns: str
) -> None:
    east, west = clusterset["east"], clusterset["west"]
    west.pod(ns, "db-0", "10.244.2.10", {"app": "db"}, hostname="primary")
    west.pod(ns, "db-1", "10.244.2.11", {"app": "db"})
    west.pod(ns, "db-2", "10.244.2.12", {"app": "db"})
    west.service(ns, "db", headless=True, selector={"app": "db"})
    west.export(ns, "db")
    gips = {pod: west.await_global_ip(ns, f"pod-{pod}") for pod in ("db-0", "db-1", "db-2")}
    expected = sorted([(gips["db-0"], "primary", True), (gips["db-1"], "db-1", True),
                       (gips["db-2"], "db-2", True)])

    si = clusterset.await_broker(resources.SERVICE_IMPORTS, ns, "db", "west")
    assert si["spec"]["type"] == r.HEADLESS and "ips" not in si["spec"]
    clusterset.await_broker(clusterset.broker_slices, ns, "db", "west",
                            lambda s: addresses(s) == expected)
    await_condition(lambda: [addresses(s) for s in east.local_slices(ns, "db")] == [expected],
                    timeout=TIMEOUT, message="east's copy with three global IPs")
    exports = east.await_records(ns, "db", lambda e: "west" in e and len(
        e["west"].endpoints) == 3, "three endpoints from west")
    endpoints = {(e.ip, e.hostname) for e in exports["west"].endpoints}
    assert endpoints == {(ip, host) for ip, host, _ in expected}
    assert exports["west"].headless
    west.await_export_condition(ns, "db", r.READY, r.EXPORTED, "True")


def test_an_export_before_its_service_is_published_once_the_service_appears(
    clusterset: Clusterset, ns: str
) -> None:
    west = clusterset["west"]
    west.export(ns, "late")
    west.await_export_condition(ns, "late", r.VALID, r.NO_SERVICE, "False")
    clusterset.ensure_nothing_on_broker(ns, "late", "west")

    west.service(ns, "late")
    gip = west.await_global_ip(ns, "late")
    clusterset.await_broker(resources.SERVICE_IMPORTS, ns, "late", "west",
                            lambda si: si["spec"].get("ips") == [gip])
    west.await_export_condition(ns, "late", r.VALID, r.REASON_VALID, "True")


def test_an_external_name_export_is_not_valid_and_not_published(
    clusterset: Clusterset, ns: str
) -> None:
    west = clusterset["west"]
    west.service(ns, "ext", type="ExternalName", externalName="db.internal.test", ports=[])
    west.export(ns, "ext")
    obj = west.await_export_condition(ns, "ext", r.VALID, r.INVALID_SERVICE_TYPE, "False")
    message = next(c["message"] for c in obj["status"]["conditions"] if c["type"] == r.VALID)
    assert "ExternalName" in message
    clusterset.ensure_nothing_on_broker(ns, "ext", "west")


def test_conflicting_ports_set_conflict_on_both_exports_until_resolved(
    clusterset: Clusterset, ns: str
) -> None:
    east, west = clusterset["east"], clusterset["west"]
    east.service(ns, "mix", port=80)
    west.service(ns, "mix", port=8080)
    east.export(ns, "mix")
    west.export(ns, "mix")
    for cluster in (east, west):
        obj = cluster.await_export_condition(ns, "mix", r.CONFLICT, r.PORT_CONFLICT, "True")
        message = next(c["message"] for c in obj["status"]["conditions"]
                       if c["type"] == r.CONFLICT)
        assert "80/TCP in east" in message and "8080/TCP in west" in message
    aggregated = east.await_local_import(ns, "mix", ["east", "west"])
    assert [p["name"] for p in aggregated["spec"]["ports"]] == ["http"]

    west.client(resources.SERVICES).patch(
        "mix", {"spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}},
        namespace=ns)
    for cluster in (east, west):
        cluster.await_export_condition(ns, "mix", r.CONFLICT, r.NO_CONFLICTS, "False")


def test_imports_wait_for_the_namespace_to_exist_in_the_importing_cluster(
    clusterset: Clusterset,
) -> None:
    east, west = clusterset["east"], clusterset["west"]
    name = unique_name("lh-late")
    namespaces = {c.name: c.client(resources.NAMESPACES) for c in (east, west)}
    namespaces["west"].create({"metadata": {"name": name}})
    assert east.agent is not None and east.agent.importer is not None
    importer = east.agent.importer

    def in_east_broker_cache(key: str) -> bool:
        return bool(importer.broker.slices_by_service.objects(key)
                    and importer.broker.imports_by_service.objects(key))

    try:
        with ReconcileRecorder(importer, witness=in_east_broker_cache) as recorder:
            west.service(name, "web")
            west.export(name, "web")
            clusterset.await_broker(clusterset.broker_slices, name, "web", "west")
            # east's importer has reconciled the export it sees on the Broker...
            recorder.await_reconciled(f"{name}/web", timeout=TIMEOUT)
        # ...and imported nothing, having no namespace to import into.
        assert east.records.get_service(namespace=name, name="web") == {}
        assert east.local_import(name, "web") is None and east.local_slices(name, "web") == []
        namespaces["east"].create({"metadata": {"name": name}})
        east.await_local_import(name, "web", ["west"])
        east.await_records(name, "web", lambda e: "west" in e, "west's export")
    finally:
        west.unexport(name, "web")
        clusterset.await_withdrawn(name, "web", "west")
        for client in namespaces.values():
            with contextlib.suppress(Exception):
                client.delete_if_exists(name)


def test_what_was_unexported_while_the_agent_was_down_is_withdrawn_at_start(
    clusterset: Clusterset, ns: str
) -> None:
    west = clusterset["west"]
    west.service(ns, "stale")
    west.export(ns, "stale")
    clusterset.await_broker(resources.SERVICE_IMPORTS, ns, "stale", "west")
    assert west.agent is not None
    west.agent.stop()
    try:
        west.unexport(ns, "stale")
        assert clusterset.broker_objects(resources.SERVICE_IMPORTS, ns, "stale", "west")
    finally:
        west.agent.start()  # the same agent object, started again
    clusterset.await_withdrawn(ns, "stale", "west")


# --- DNS ---------------------------------------------------------------------------------------

def test_the_dns_store_in_east_has_wests_global_ip_until_unexport(
    clusterset: Clusterset, ns: str
) -> None:
    east, west = clusterset["east"], clusterset["west"]
    west.pod(ns, "api-0", "10.244.1.5", {"app": "api"})
    west.service(ns, "api", selector={"app": "api"})
    west.export(ns, "api")
    gip = west.await_global_ip(ns, "api")
    exports = east.await_records(ns, "api", lambda e: "west" in e and e["west"].ready,
                                 "west's ready export")
    assert exports["west"].global_ip == gip
    assert [(p.name, p.port, p.protocol) for p in exports["west"].ports] == [("http", 80, "TCP")]
    assert east.records.local_cluster == "east"

    # A real query to a DNS server answering from east's store.
    server = DnsServer(east.records, config=ServerConfig(host="127.0.0.1", port=0))
    with ServerThread(server) as thread:
        query = dns.message.make_query(f"api.{ns}.svc.clusterset.local", dns.rdatatype.A)
        reply = dns.query.udp(query, "127.0.0.1", port=thread.server.port, timeout=2)
        assert [item.address for rrset in reply.answer for item in rrset] == [gip]
        assert not thread.errors

    west.unexport(ns, "api")
    east.await_records(ns, "api", lambda e: not e, "no records after unexport")


def test_leave_withdraws_everything_the_cluster_published(
    clusterset: Clusterset, ns: str
) -> None:
    east, west = clusterset["east"], clusterset["west"]
    west.service(ns, "left")
    west.export(ns, "left")
    east.service(ns, "stays")
    east.export(ns, "stays")
    east.await_records(ns, "left", lambda e: "west" in e, "west's export")
    west.await_records(ns, "stays", lambda e: "east" in e, "east's export")
    assert west.agent is not None
    try:
        assert west.agent.leave() >= 2
        everything = f"{names.LIGHTHOUSE_SELECTOR},{names.SOURCE_CLUSTER_LABEL}=west"
        for res in (resources.SERVICE_IMPORTS, clusterset.broker_slices):
            assert crud.ResourceClient(clusterset.broker_api, res).list(
                label_selector=everything).items == []
        east.await_records(ns, "left", lambda e: not e, "west's export gone")
        assert west.local_slices(ns, "stays") == []
        assert west.local_import(ns, "stays") is None
        assert not list(west.records)
        # east's own export is untouched.
        assert clusterset.broker_objects(resources.SERVICE_IMPORTS, ns, "stays", "east")
    finally:
        west.start_agent()
    # Rejoining republishes what is still exported.
    east.await_records(ns, "left", lambda e: "west" in e, "west's export again")


def test_a_cluster_leaving_the_broker_is_dropped_by_the_others_while_its_agent_runs(
    clusterset: Clusterset, ns: str
) -> None:
    """west's Cluster object leaves the Broker; its agent and Broker objects stay."""
    east, west = clusterset["east"], clusterset["west"]
    west.service(ns, "bye")
    west.export(ns, "bye")
    east.await_records(ns, "bye", lambda e: "west" in e, "west's export")
    east.await_local_import(ns, "bye", ["west"])
    clusters = crud.ResourceClient(clusterset.broker_api, resources.CLUSTERS)
    clusters.delete("west", namespace=BROKER_NS)
    try:
        east.await_records(ns, "bye", lambda e: not e, "west's export dropped with west")
        await_condition(lambda: not east.local_slices(ns, "bye")
                        and east.local_import(ns, "bye") is None,
                        timeout=TIMEOUT, message="east's imports of west's export removed")
        assert clusterset.broker_objects(resources.SERVICE_IMPORTS, ns, "bye", "west")
        assert clusterset.broker_objects(clusterset.broker_slices, ns, "bye", "west")
    finally:
        clusters.create(cluster_object("west", GLOBAL_CIDRS["west"]), namespace=BROKER_NS)
    east.await_records(ns, "bye", lambda e: "west" in e, "west's export after its rejoin")
    east.await_local_import(ns, "bye", ["west"])


def a_records(port: int, name: str) -> list[str]:
    """The addresses of one real UDP query for ``name`` (empty on no answer)."""
    query = dns.message.make_query(name, dns.rdatatype.A)
    try:
        reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=1)
    except dns.exception.Timeout:
        return []
    return sorted(item.address for rrset in reply.answer for item in rrset)


def test_the_entry_point_runs_a_clusters_agent_and_its_dns_server(
    clusterset: Clusterset, ns: str
) -> None:
    """``python -m lighthouse.agent --dns-listen`` stands in for west's agent a while."""
    east, west = clusterset["east"], clusterset["west"]
    east.pod(ns, "cli-0", "10.244.1.5", {"app": "cli"})
    east.service(ns, "cli", selector={"app": "cli"})
    east.export(ns, "cli")
    gip = east.await_global_ip(ns, "cli")
    assert west.agent is not None
    west.agent.stop()
    repo = Path(__file__).resolve().parents[2]
    argv = [sys.executable, "-m", "lighthouse.agent", "--kubeconfig", str(west.cp.kubeconfig),
            "--broker-kubeconfig", str(clusterset.broker.kubeconfig), "--cluster-id", "west",
            "--broker-namespace", BROKER_NS, "--dns-listen", "127.0.0.1:0"]
    with tempfile.TemporaryFile(mode="w+") as stderr:
        proc = subprocess.Popen(argv, cwd=repo, env={**os.environ, "PYTHONPATH": str(repo)},
                                stdout=subprocess.PIPE, stderr=stderr, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
        reader.start()

        def log_tail() -> str:
            stderr.seek(0)
            return "".join(stderr.readlines()[-20:])

        try:
            running = await_value(
                lambda: next((line for line in lines if "running" in line), None)
                or (None if proc.poll() is None else "exited"),
                timeout=30, message="the agent process to start")
            assert "DNS on 127.0.0.1:" in running, log_tail()
            port = int(running.rsplit(":", 1)[1])
            name = f"cli.{ns}.svc.clusterset.local"
            await_value(lambda: a_records(port, name) == [gip] or None, interval=0.05,
                        message=lambda: f"{name} from the agent process:\n{log_tail()}")
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            reader.join(5)
            west.start_agent()
    assert proc.returncode == 0


# --- propagation latency ---------------------------------------------------------------------

def test_export_to_dns_store_latency_across_clusters(clusterset: Clusterset, ns: str) -> None:
    """ServiceExport created in west -> east's DNS store holds its global IP.

    The path: Globalnet creates and allocates the GlobalIngressIP, west's exporter
    publishes to the Broker, east's importer copies the slice, east's feed updates
    the store. Printed, and bounded loosely so a regression fails without flaking.
    """
    east, west = clusterset["east"], clusterset["west"]
    samples = []
    for i in range(20):
        name = f"lat-{i}"
        west.service(ns, name)
        started = time.monotonic()
        west.export(ns, name)
        east.await_records(ns, name, lambda e: "west" in e, "west's export", interval=0.002)
        samples.append(time.monotonic() - started)
    median = statistics.median(samples)
    print(f"\nexport-to-store latency west->east over {len(samples)} exports: "
          f"median {median * 1000:.0f} ms, min {min(samples) * 1000:.0f} ms, "
          f"max {max(samples) * 1000:.0f} ms")
    assert median < 3.0


# --- MCS v1beta1 fields -------------------------------------------------------------------------

def condition(obj: JSON, ctype: str) -> JSON:
    return next(c for c in (obj.get("status") or {}).get("conditions") or []
                if c.get("type") == ctype)


def test_v1beta1_fields_are_published_aggregated_and_conflicts_named(
    clusterset: Clusterset, ns: str
) -> None:
    """West's ClientIP affinity, IP family and exported labels/annotations reach the
    Broker and the aggregated imports; east exporting later with another affinity and
    labels conflicts on both exports, west (the oldest) winning."""
    east, west = clusterset["east"], clusterset["west"]
    west.service(ns, "sticky", sessionAffinity="ClientIP",
                 sessionAffinityConfig={"clientIP": {"timeoutSeconds": 600}})
    exported_at = west.export(ns, "sticky", exportedLabels={"tier": "web"},
                              exportedAnnotations={"owner": "team-a"})["metadata"][
                                  "creationTimestamp"]
    si = clusterset.await_broker(resources.SERVICE_IMPORTS, ns, "sticky", "west")
    assert si["apiVersion"] == resources.MCS_API_VERSION
    assert si["spec"]["sessionAffinity"] == "ClientIP"
    assert si["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 600}}
    assert si["spec"]["ipFamilies"] == ["IPv4"]
    # Kubernetes 1.20 drops these Service fields, so there is nothing to carry.
    assert "internalTrafficPolicy" not in si["spec"]
    assert "trafficDistribution" not in si["spec"]
    assert si["metadata"]["labels"]["tier"] == "web"
    assert si["metadata"]["annotations"]["owner"] == "team-a"

    def aggregated_with(predicate: Callable[[JSON], bool]) -> JSON:
        return await_value(lambda: (obj if (obj := east.local_import(ns, "sticky"))
                                    and predicate(obj) else None),
                           message=f"east's aggregated ServiceImport {ns}/sticky")

    aggregated = aggregated_with(lambda obj: "status" in obj and "ips" in obj["spec"])
    assert aggregated["spec"]["sessionAffinity"] == "ClientIP"
    # West's VIP, not its global IP (that is in west's EndpointSlice).
    assert aggregated["spec"]["ips"] == [vip_of(si)] != si["spec"]["ips"]
    assert aggregated["metadata"]["labels"]["tier"] == "web"
    assert aggregated["metadata"]["annotations"]["owner"] == "team-a"
    # No pod: no ready endpoint anywhere yet.
    assert (condition(aggregated, r.READY)["status"], condition(aggregated, r.READY)["reason"]
            ) == ("False", r.PENDING)
    west.await_export_condition(ns, "sticky", r.VALID, r.REASON_VALID, "True")

    east.service(ns, "sticky")
    # Creation times have whole seconds: east's export must be a later one to be newer
    # (a tie goes to the cluster name, east).
    await_condition(lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) > exported_at,
                    timeout=2.0, message="a second after west's export")
    east.export(ns, "sticky", exportedLabels={"tier": "db"},
                exportedAnnotations={"owner": "team-a"})
    for cluster in (east, west):
        obj = cluster.await_export_condition(
            ns, "sticky", r.CONFLICT, f"{r.SESSION_AFFINITY_CONFLICT},{r.LABELS_CONFLICT}",
            "True")
        message = condition(obj, r.CONFLICT)["message"]
        assert "sessionAffinity is None in east, ClientIP in west" in message, message
        assert "oldest export (west) wins" in message
    aggregated = aggregated_with(lambda obj: len(obj["status"].get("clusters") or []) == 2)
    assert aggregated["spec"]["sessionAffinity"] == "ClientIP"
    assert aggregated["metadata"]["labels"]["tier"] == "web"

    # West drops its annotation and label: they leave the imports, the conflict resolves
    # into the one on affinity alone.
    west.client(resources.SERVICE_EXPORTS).patch(
        "sticky", {"spec": {"exportedLabels": {"tier": "db"}, "exportedAnnotations": None}},
        namespace=ns)
    for cluster in (east, west):
        cluster.await_export_condition(ns, "sticky", r.CONFLICT,
                                       f"{r.SESSION_AFFINITY_CONFLICT},{r.ANNOTATIONS_CONFLICT}",
                                       "True")
    aggregated_with(lambda obj: "owner" not in (obj["metadata"].get("annotations") or {})
                    and obj["metadata"]["labels"].get("tier") == "db")


def test_the_aggregated_import_is_ready_once_a_cluster_has_a_ready_endpoint(
    clusterset: Clusterset, ns: str
) -> None:
    east, west = clusterset["east"], clusterset["west"]
    west.pod(ns, "web-0", "10.244.1.5", {"app": "web"})
    west.service(ns, "web", selector={"app": "web"})
    west.export(ns, "web")
    obj = await_value(
        lambda: (o if (o := east.local_import(ns, "web")) and any(
            c.get("type") == r.READY and c.get("status") == "True"
            for c in (o.get("status") or {}).get("conditions") or []) else None),
        message=f"east's ServiceImport {ns}/web Ready")
    ready = condition(obj, r.READY)
    assert ready["reason"] == r.REASON_READY and "west" in ready["message"]
    assert ready["lastTransitionTime"]


# --- ClusterSetIP --------------------------------------------------------------------------------

def vip_of(obj: JSON) -> str | None:
    return (obj.get("metadata", {}).get("annotations") or {}).get(
        names.CLUSTERSET_IP_ANNOTATION)


def await_import_ips(cluster: Cluster, ns: str, svc: str, ips: list[str]) -> JSON:
    return await_value(
        lambda: o if (o := cluster.local_import(ns, svc)) and (o.get("spec") or {}).get(
            "ips", []) == ips else None,
        message=f"{cluster.name}'s ServiceImport {ns}/{svc} with ips {ips}")


def test_one_clusterset_ip_per_service_the_same_everywhere_until_the_last_export_goes(
    clusterset: Clusterset, ns: str
) -> None:
    """West exports first and picks from its slice; east exports the same service
    and adopts west's VIP; the VIP stays while any export holds it (also after west
    unexported) and is free once the last export is withdrawn."""
    east, west = clusterset["east"], clusterset["west"]
    assert west.clusterset_ip_cidr is not None and east.clusterset_ip_cidr is not None
    west.service(ns, "web")
    west.export(ns, "web")
    si = clusterset.await_broker(resources.SERVICE_IMPORTS, ns, "web", "west",
                                 lambda obj: vip_of(obj) is not None)
    vip = vip_of(si)
    assert vip is not None
    assert ipaddress.ip_address(vip) in ipaddress.ip_network(west.clusterset_ip_cidr)
    assert si["spec"]["ips"] == [west.await_global_ip(ns, "web")]  # the cluster's own IP
    for cluster in (east, west):
        await_import_ips(cluster, ns, "web", [vip])
    allocated = west.await_export_condition(ns, "web", r.CLUSTERSET_IP_ALLOCATED, r.ALLOCATED,
                                            "True")
    assert vip in condition(allocated, r.CLUSTERSET_IP_ALLOCATED)["message"]

    east.service(ns, "web")
    east.export(ns, "web")
    clusterset.await_broker(resources.SERVICE_IMPORTS, ns, "web", "east",
                            lambda obj: vip_of(obj) == vip)
    west.unexport(ns, "web")
    clusterset.await_withdrawn(ns, "web", "west")
    # East holds it now: the same VIP everywhere, nothing picked again.
    for cluster in (east, west):
        await_import_ips(cluster, ns, "web", [vip])
    assert vip_of(clusterset.await_broker(resources.SERVICE_IMPORTS, ns, "web", "east")) == vip

    # A headless export holds none.
    west.service(ns, "db", headless=True)
    west.export(ns, "db")
    clusterset.await_broker(resources.SERVICE_IMPORTS, ns, "db", "west")
    db = west.await_local_import(ns, "db", ["west"])
    assert "ips" not in db["spec"]
    assert vip_of(clusterset.broker_objects(resources.SERVICE_IMPORTS, ns, "db", "west")[0]) \
        is None

    east.unexport(ns, "web")
    clusterset.await_withdrawn(ns, "web", "east")
    await_condition(lambda: east.local_import(ns, "web") is None, timeout=TIMEOUT,
                    message="east's aggregated import of web removed")


def test_an_exhausted_slice_is_a_condition_and_a_freed_vip_is_taken_up(
    clusterset: Clusterset, ns: str
) -> None:
    """East's agent restarted with a two-VIP slice: the third ClusterSetIP export says
    ClusterSetIPPoolExhausted and is still published (reachable by its cluster's
    name); once another export goes, it gets the freed VIP without any other event."""
    east = clusterset["east"]
    assert east.agent is not None and east.clusterset_ip_cidr is not None
    original = east.clusterset_ip_cidr
    east.agent.stop()
    east.clusterset_ip_cidr = "244.0.0.0/31"
    east.start_agent()
    try:
        for svc in ("a", "b", "c"):
            east.service(ns, svc)
            east.export(ns, svc)

        def two_of_three_hold_one() -> dict[str, str | None] | None:
            found = {svc: clusterset.broker_objects(resources.SERVICE_IMPORTS, ns, svc, "east")
                     for svc in ("a", "b", "c")}
            if not all(len(objs) == 1 for objs in found.values()):
                return None
            vips = {svc: vip_of(objs[0]) for svc, objs in found.items()}
            return vips if sum(v is not None for v in vips.values()) == 2 else None

        # Which one starves depends on which the agent's workers took first.
        held = await_value(two_of_three_hold_one,
                           message="a, b and c published, two of them with a VIP")
        starved = next(svc for svc, vip in held.items() if vip is None)
        assert sorted(v for v in held.values() if v) == ["244.0.0.0", "244.0.0.1"]
        exhausted = east.await_export_condition(ns, starved, r.CLUSTERSET_IP_ALLOCATED,
                                                r.CLUSTERSET_IP_POOL_EXHAUSTED, "False")
        message = condition(exhausted, r.CLUSTERSET_IP_ALLOCATED)["message"]
        assert "244.0.0.0/31 is exhausted" in message
        east.await_export_condition(ns, starved, r.READY, r.EXPORTED, "True")
        assert "ips" not in east.await_local_import(ns, starved, ["east"])["spec"]

        freeing = next(svc for svc, vip in held.items() if vip is not None)
        east.unexport(ns, freeing)
        freed = held[freeing]
        assert freed is not None
        clusterset.await_broker(resources.SERVICE_IMPORTS, ns, starved, "east",
                                lambda obj: vip_of(obj) == freed)
        east.await_export_condition(ns, starved, r.CLUSTERSET_IP_ALLOCATED, r.ALLOCATED, "True")
        await_import_ips(east, ns, starved, [freed])
    finally:
        assert east.agent is not None
        east.agent.stop()
        east.clusterset_ip_cidr = original
        east.start_agent()


# --- traffic distribution -------------------------------------------------------------------------

def test_a_balanced_export_spreads_dns_answers_over_both_clusters_by_ready_backends(
    clusterset: Clusterset, ns: str
) -> None:
    """East's export (the oldest) asks for balanced: both clusters' slices say so, with
    their ready backends (east 1, west 3), and east's DNS answers east once for every
    three west answers instead of always east. Taking the annotation away makes the
    service local-first again in every cluster."""
    east, west = clusterset["east"], clusterset["west"]
    east.pod(ns, "web-0", "10.244.1.5", {"app": "web"})
    for i in range(3):
        west.pod(ns, f"web-{i}", f"10.244.1.{5 + i}", {"app": "web"})
    for cluster in (east, west):
        cluster.service(ns, "web", selector={"app": "web"})
    east.client(resources.SERVICE_EXPORTS).create({"metadata": {
        "name": "web", "namespace": ns,
        "annotations": {names.TRAFFIC_DISTRIBUTION_ANNOTATION: r.BALANCED}}})
    west.export(ns, "web")  # no annotation: the oldest export's choice holds

    def balanced(exports: dict[str, Any]) -> bool:
        return set(exports) == {"east", "west"} and all(
            e.balanced and e.ready for e in exports.values()) and (
            exports["east"].weight, exports["west"].weight) == (1, 3)

    west.await_records(ns, "web", balanced, "balanced exports in west, weights 1:3")
    exports = east.await_records(ns, "web", balanced, "balanced exports in east, weights 1:3")
    server = DnsServer(east.records, config=ServerConfig(host="127.0.0.1", port=0))
    query = dns.message.make_query(f"web.{ns}.svc.clusterset.local", dns.rdatatype.A)
    with ServerThread(server) as thread:
        seen = [item.address for _ in range(16) for rrset in dns.query.udp(
            query, "127.0.0.1", port=thread.server.port, timeout=2).answer for item in rrset]
        assert sorted(set(seen)) == sorted({exports["east"].global_ip,
                                            exports["west"].global_ip})
        assert seen.count(exports["west"].global_ip) == 12
        east.client(resources.SERVICE_EXPORTS).patch(
            "web", {"metadata": {"annotations": {names.TRAFFIC_DISTRIBUTION_ANNOTATION: None}}},
            namespace=ns)
        for cluster in (east, west):
            cluster.await_records(ns, "web", lambda e: len(e) == 2 and not any(
                x.balanced for x in e.values()), "local-first again")
        local = {item.address for _ in range(8) for rrset in dns.query.udp(
            query, "127.0.0.1", port=thread.server.port, timeout=2).answer for item in rrset}
        assert local == {exports["east"].global_ip}
        assert not thread.errors


def vip_table_entry(cluster: Cluster, ns: str, svc: str) -> Any:
    """The cluster's VIP table entry of ``ns/svc`` (None: not in its ConfigMap)."""
    from datapath.nftables.clustersetip import plan_from_json

    cm = cluster.client(resources.CONFIGMAPS).get_or_none(
        names.VIP_TABLE_CONFIGMAP, namespace=names.CLUSTER_NAMESPACE)
    plan = ((cm or {}).get("data") or {}).get(names.VIP_TABLE_KEY)
    return next((s for s in plan_from_json(plan) if s.owner == f"{ns}/{svc}"), None) \
        if plan else None


def test_a_clusterset_ip_service_is_in_every_clusters_vip_table_and_dns_answers_the_vip(
    clusterset: Clusterset, ns: str
) -> None:
    """West exports web asking for its ClusterSetIP in DNS: east's VIP table sends the
    VIP's connections to west's global IP and east's DNS answers the VIP; once east
    exports it too (with a ready pod) east's table keeps them local (local-first,
    the local ClusterIP for kube-proxy) while west's keeps them in west. When the
    last export goes, the VIP leaves both tables."""
    east, west = clusterset["east"], clusterset["west"]
    west.pod(ns, "web-0", "10.244.1.5", {"app": "web"})
    west.service(ns, "web", selector={"app": "web"})
    west.client(resources.SERVICE_EXPORTS).create({"metadata": {
        "name": "web", "namespace": ns,
        "annotations": {names.USE_CLUSTERSET_IP_ANNOTATION: "true"}}})
    west_ip = west.await_global_ip(ns, "web")
    entry = await_value(lambda: (e := vip_table_entry(east, ns, "web")) and e.backends and e,
                        message="web in east's VIP table")
    assert [(b.cluster, b.ip, b.local) for b in entry.backends] == [("west", west_ip, False)]
    assert entry.ports == (("tcp", 80),)
    await_import_ips(east, ns, "web", [entry.vip])
    server = DnsServer(east.records, config=ServerConfig(host="127.0.0.1", port=0))
    query = dns.message.make_query(f"web.{ns}.svc.clusterset.local", dns.rdatatype.A)
    by_cluster = dns.message.make_query(f"west.web.{ns}.svc.clusterset.local", dns.rdatatype.A)
    with ServerThread(server) as thread:
        def answer(q: dns.message.Message) -> list[str]:
            return [item.address for rrset in dns.query.udp(
                q, "127.0.0.1", port=thread.server.port, timeout=2).answer for item in rrset]

        assert answer(query) == [entry.vip]
        assert answer(by_cluster) == [west_ip]
        assert not thread.errors

    east.pod(ns, "web-0", "10.244.1.5", {"app": "web"})
    east_service = east.service(ns, "web", selector={"app": "web"})
    east.export(ns, "web")
    local = await_value(
        lambda: (e := vip_table_entry(east, ns, "web")) and e.backends
        and e.backends[0].local and e, message="east's VIP table choosing east")
    assert [(b.cluster, b.ip) for b in local.backends] == [
        ("east", east_service["spec"]["clusterIP"])]
    assert local.vip == entry.vip
    await_value(lambda: (e := vip_table_entry(west, ns, "web")) and [
        b.cluster for b in e.backends] == ["west"] and e, message="west's table choosing west")

    west.unexport(ns, "web")
    east.unexport(ns, "web")
    for cluster in (east, west):
        await_condition(lambda c=cluster: vip_table_entry(c, ns, "web") is None,
                        timeout=TIMEOUT, message=f"web out of {cluster.name}'s VIP table")
