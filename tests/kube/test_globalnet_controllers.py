"""Globalnet controllers against the real API server, with a recording datapath.

Address conventions: the module's cluster "east" owns global CIDR 242.4.0.0/26
(62 usable addresses, so exhaustion is reachable); local pods 10.244.0.0/16 and
services 10.96.0.0/16 as in the lab. Pods here are API objects only: a test
writes their status (podIP, Ready) as kubelet would.

Each test works in its own namespace and deletes what it allocated, because
every test shares one controller manager (and one pool) per module.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import netaddr
import pytest

from datapath.recording import RecordingDatapath
from globalnet.controllers import reasons as r
from globalnet.controllers.manager import GlobalnetConfig, GlobalnetManager, Term
from globalnet.controllers.service_export import ServiceExportController
from globalnet.intent import EgressKind, IngressTarget, NatIntent
from kube import crud, names, resources
from kube.client import new_api_client
from kube.testing import ReconcileRecorder, await_condition, temporary_namespace

pytestmark = pytest.mark.kube

GLOBAL_CIDR = "242.4.0.0/26"
LOCAL = ("10.244.0.0/16", "10.96.0.0/16")


def make_manager(api: Any, datapath: RecordingDatapath, **overrides: Any) -> GlobalnetManager:
    cfg = GlobalnetConfig(
        cluster_id=overrides.pop("cluster_id", "east"), global_cidr=GLOBAL_CIDR,
        local_cidrs=LOCAL, namespace="globalnet-test", lease_duration=2.0,
        renew_deadline=1.5, retry_period=0.25, debounce=0.02, **overrides,
    )
    return GlobalnetManager(api, cfg, datapath)


@contextlib.contextmanager
def running(api: Any, datapath: RecordingDatapath) -> Iterator[tuple[GlobalnetManager, Term]]:
    mgr = make_manager(api, datapath)
    mgr.start()
    try:
        yield mgr, mgr.wait_for_term(30)
    finally:
        mgr.stop()


@pytest.fixture(scope="module")
def api(control_plane: Any) -> Iterator[Any]:
    client = new_api_client(control_plane.kubeconfig)
    yield client
    client.close()


@pytest.fixture(scope="module")
def datapath() -> RecordingDatapath:
    return RecordingDatapath()


@pytest.fixture(scope="module")
def term(api: Any, datapath: RecordingDatapath) -> Iterator[Term]:
    with running(api, datapath) as (_, t):
        yield t


@pytest.fixture
def ns(api: Any) -> Iterator[str]:
    with temporary_namespace(api, "gn") as name:
        yield name


class Driver:
    """Create objects the way users and kubelet would, and await controller results."""

    def __init__(self, api: Any, datapath: RecordingDatapath) -> None:
        self.api = api
        self.datapath = datapath
        c = lambda res: crud.ResourceClient(api, res)  # noqa: E731
        self.services = c(resources.SERVICES)
        self.exports = c(resources.SERVICE_EXPORTS)
        self.pods = c(resources.PODS)
        self.endpoints = c(resources.ENDPOINTS)
        self.giips = c(resources.GLOBAL_INGRESS_IPS)
        self.geips = c(resources.GLOBAL_EGRESS_IPS)
        self.cgeips = c(resources.CLUSTER_GLOBAL_EGRESS_IPS)
        self.nodes = c(resources.NODES)

    # --- objects ---------------------------------------------------------------------
    def service(self, ns: str, name: str, *, headless: bool = False,
                selector: dict[str, str] | None = None) -> dict[str, Any]:
        spec: dict[str, Any] = {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
        if headless:
            spec["clusterIP"] = "None"
        if selector is not None:
            spec["selector"] = selector
        return self.services.create({"metadata": {"name": name, "namespace": ns}, "spec": spec})

    def export(self, ns: str, name: str) -> None:
        self.exports.create({"metadata": {"name": name, "namespace": ns}})

    def pod(self, ns: str, name: str, ip: str, labels: dict[str, str],
            ready: bool = True) -> None:
        self.pods.create({"metadata": {"name": name, "namespace": ns, "labels": labels},
                          "spec": {"containers": [{"name": "c", "image": "x"}]}})
        self.set_ready(ns, name, ip, ready)

    def set_ready(self, ns: str, name: str, ip: str, ready: bool) -> None:
        flag = "True" if ready else "False"
        self.pods.patch_status(name, {"status": {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": flag}]}}, namespace=ns)

    # --- awaiting ---------------------------------------------------------------------
    def await_giip_ip(self, ns: str, name: str, timeout: float = 15) -> str:
        def allocated() -> str | None:
            obj = self.giips.get_or_none(name, namespace=ns)
            return (obj or {}).get("status", {}).get("allocatedIP")

        return str(await_condition(allocated, timeout=timeout,
                                   message=f"GlobalIngressIP {ns}/{name} allocated"))

    def await_gone(self, client: crud.ResourceClient, ns: str | None, name: str) -> None:
        await_condition(lambda: client.get_or_none(name, namespace=ns) is None, timeout=15,
                        message=f"{name} deleted")

    def await_condition_reason(self, client: crud.ResourceClient, ns: str | None, name: str,
                               ctype: str, reason: str) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            obj = client.get_or_none(name, namespace=ns) or {}
            for c in obj.get("status", {}).get("conditions") or []:
                if c.get("type") == ctype and c.get("reason") == reason:
                    return obj
            return None

        return dict(await_condition(found, timeout=15,
                                    message=f"{name} condition {ctype}={reason}"))


@pytest.fixture
def driver(api: Any, datapath: RecordingDatapath) -> Driver:
    return Driver(api, datapath)


def ingress_for(intent: NatIntent, owner_suffix: str) -> list[Any]:
    return [m for m in intent.ingress if m.owner.endswith(owner_suffix)]


# --- cluster egress ---------------------------------------------------------------------

def await_cluster_egress(driver: Driver, count: int) -> list[str]:
    """The cluster egress object's addresses once it holds `count` from our CIDR.

    The object is cluster-scoped: another module's cluster may have left its own
    addresses in the status, which this cluster's controller must replace (and
    then reports ReallocatedAfterConflict rather than Success).
    """
    def ours() -> list[str] | None:
        obj = driver.cgeips.get(names.CLUSTER_EGRESS_NAME)
        ips = (obj.get("status") or {}).get("allocatedIPs") or []
        inside = all(netaddr.IPAddress(ip) in netaddr.IPNetwork(GLOBAL_CIDR) for ip in ips)
        allocated = any(c.get("type") == r.ALLOCATED and c.get("status") == "True"
                        for c in obj["status"].get("conditions") or [])
        return ips if len(ips) == count and inside and allocated else None

    return list(await_condition(ours, timeout=15,
                                message=f"{count} cluster egress IPs from our CIDR"))


def test_cluster_egress_is_created_with_eight_ips(term: Term, driver: Driver) -> None:
    ips = await_cluster_egress(driver, 8)
    intent = term.publisher.wait_for(
        lambda i: any(g.kind is EgressKind.CLUSTER for g in i.egress), 15)
    cluster = next(g for g in intent.egress if g.kind is EgressKind.CLUSTER)
    assert list(cluster.global_ips) == ips


def test_changing_the_count_reallocates_and_zero_releases(term: Term, driver: Driver) -> None:
    name = names.CLUSTER_EGRESS_NAME
    await_cluster_egress(driver, 8)
    try:
        driver.cgeips.patch(name, {"spec": {"numGlobalIPs": 3}})
        assert len(set(await_cluster_egress(driver, 3))) == 3
        cond = next(c for c in driver.cgeips.get(name)["status"]["conditions"]
                    if c["type"] == r.ALLOCATED)
        assert (cond["reason"], cond["message"]) == (r.SUCCESS, "Allocated 3 global IP(s)")
        driver.cgeips.patch(name, {"spec": {"numGlobalIPs": 0}})
        obj = driver.await_condition_reason(driver.cgeips, None, name, r.ALLOCATED, r.ZERO_INPUT)
        assert obj["status"]["allocatedIPs"] == []
        term.publisher.wait_for(
            lambda i: not any(g.kind is EgressKind.CLUSTER for g in i.egress), 15)
    finally:
        driver.cgeips.patch(name, {"spec": {"numGlobalIPs": 8}})
        await_cluster_egress(driver, 8)


def test_other_cluster_egress_instances_are_invalid(term: Term, driver: Driver) -> None:
    name = f"other-{uuid.uuid4().hex[:6]}"
    driver.cgeips.create({"metadata": {"name": name}, "spec": {"numGlobalIPs": 2}})
    try:
        obj = driver.await_condition_reason(driver.cgeips, None, name, r.ALLOCATED,
                                            r.INVALID_INSTANCE)
        assert not obj["status"].get("allocatedIPs")
    finally:
        driver.cgeips.delete(name)


# --- global egress ------------------------------------------------------------------------

def test_namespace_and_pod_selector_egress_groups(term: Term, driver: Driver, ns: str) -> None:
    driver.pod(ns, "a", "10.244.1.10", {"app": "a"})
    driver.pod(ns, "b", "10.244.1.11", {"app": "b"})
    driver.geips.create({"metadata": {"name": "all", "namespace": ns},
                         "spec": {"numberOfIPs": 2}})
    driver.geips.create({"metadata": {"name": "only-a", "namespace": ns},
                         "spec": {"podSelector": {"matchLabels": {"app": "a"}}}})
    try:
        intent = term.publisher.wait_for(
            lambda i: {g.owner for g in i.egress} >= {f"GlobalEgressIP {ns}/all",
                                                      f"GlobalEgressIP {ns}/only-a"}, 15)
        groups = {g.owner.split("/")[-1]: g for g in intent.egress if ns in g.owner}
        assert groups["all"].kind is EgressKind.NAMESPACE
        assert groups["all"].pod_ips == {"10.244.1.10", "10.244.1.11"}
        assert len(groups["all"].global_ips) == 2
        assert groups["only-a"].kind is EgressKind.POD_SELECTOR
        assert groups["only-a"].pod_ips == {"10.244.1.10"}
        assert not set(groups["all"].global_ips) & set(groups["only-a"].global_ips)
    finally:
        driver.geips.delete("all", namespace=ns)
        driver.geips.delete("only-a", namespace=ns)


def test_pod_selector_change_is_refused_and_the_old_one_stays(
    term: Term, driver: Driver, ns: str
) -> None:
    driver.pod(ns, "a", "10.244.2.10", {"app": "a"})
    driver.pod(ns, "b", "10.244.2.11", {"app": "b"})
    driver.geips.create({"metadata": {"name": "sel", "namespace": ns},
                         "spec": {"podSelector": {"matchLabels": {"app": "a"}}}})
    try:
        driver.await_condition_reason(driver.geips, ns, "sel", r.ALLOCATED, r.SUCCESS)
        await_condition(lambda: names.ACCEPTED_POD_SELECTOR_ANNOTATION in (
            driver.geips.get("sel", namespace=ns)["metadata"].get("annotations") or {}),
            timeout=15, message="accepted selector recorded")
        driver.geips.patch("sel", {"spec": {"podSelector": {"matchLabels": {"app": "b"}}}},
                           namespace=ns)
        obj = driver.await_condition_reason(driver.geips, ns, "sel", r.UPDATED,
                                            r.POD_SELECTOR_UPDATE_NOT_SUPPORTED)
        assert "not supported" in next(c["message"] for c in obj["status"]["conditions"]
                                       if c["type"] == r.UPDATED)
        intent = term.publisher.wait_for(
            lambda i: any(g.owner == f"GlobalEgressIP {ns}/sel" for g in i.egress), 15)
        group = next(g for g in intent.egress if g.owner == f"GlobalEgressIP {ns}/sel")
        assert group.pod_ips == {"10.244.2.10"}
    finally:
        driver.geips.delete("sel", namespace=ns)


def test_pool_exhaustion_fails_clearly_and_recovers(term: Term, driver: Driver, ns: str) -> None:
    free = term.pool.pool.available
    fillers = []
    try:
        # Take all but 5 addresses, then ask for 10.
        while free > 5:
            n = min(20, free - 5)
            name = f"fill-{len(fillers)}"
            driver.geips.create({"metadata": {"name": name, "namespace": ns},
                                 "spec": {"numberOfIPs": n}})
            fillers.append(name)
            driver.await_condition_reason(driver.geips, ns, name, r.ALLOCATED, r.SUCCESS)
            free -= n
        driver.geips.create({"metadata": {"name": "big", "namespace": ns},
                             "spec": {"numberOfIPs": 10}})
        obj = driver.await_condition_reason(driver.geips, ns, "big", r.ALLOCATED,
                                            r.IP_POOL_ALLOCATION_FAILED)
        assert "no 10 contiguous free addresses" in str(obj["status"]["conditions"])
        # Freeing addresses lets it through without any edit to the object.
        for name in fillers:
            driver.geips.delete(name, namespace=ns)
        fillers.clear()
        obj = driver.await_condition_reason(driver.geips, ns, "big", r.ALLOCATED, r.SUCCESS)
        assert len(obj["status"]["allocatedIPs"]) == 10
    finally:
        for name in [*fillers, "big"]:
            with contextlib.suppress(Exception):
                driver.geips.delete(name, namespace=ns)


# --- ingress --------------------------------------------------------------------------------

def test_exported_cluster_ip_service_maps_its_global_ip_to_the_cluster_ip(
    term: Term, driver: Driver, ns: str
) -> None:
    svc = driver.service(ns, "web", selector={"app": "web"})
    driver.export(ns, "web")
    gip = driver.await_giip_ip(ns, "web")
    giip = driver.giips.get("web", namespace=ns)
    assert giip["spec"] == {"target": names.TARGET_CLUSTER_IP_SERVICE,
                            "serviceRef": {"name": "web"}}
    intent = term.publisher.wait_for(lambda i: bool(ingress_for(i, f"{ns}/web")), 15)
    (mapping,) = ingress_for(intent, f"{ns}/web")
    assert (mapping.global_ip, mapping.target_ip) == (gip, svc["spec"]["clusterIP"])
    assert mapping.target is IngressTarget.CLUSTER_IP_SERVICE
    assert [(p.protocol.value, p.port) for p in mapping.ports] == [("tcp", 80)]
    # Unexport: the object goes, the address returns to the pool, the mapping leaves.
    driver.exports.delete("web", namespace=ns)
    driver.await_gone(driver.giips, ns, "web")
    term.publisher.wait_for(lambda i: not ingress_for(i, f"{ns}/web"), 15)
    assert term.pool.holder(gip) is None


def test_a_service_exported_before_it_exists_gets_its_ip_when_it_appears(
    term: Term, driver: Driver, ns: str
) -> None:
    exports = next(c for c in term.controllers if isinstance(c, ServiceExportController))
    with ReconcileRecorder(exports, witness=lambda key: exports.exports.get(key) is not None
                           ) as recorder:
        driver.export(ns, "late")
        recorder.await_reconciled(f"{ns}/late", timeout=15)
    # The export was reconciled without its service: nothing was created for it.
    assert driver.giips.get_or_none("late", namespace=ns) is None
    driver.service(ns, "late", selector={"app": "late"})
    assert driver.await_giip_ip(ns, "late")
    driver.services.delete("late", namespace=ns)
    driver.await_gone(driver.giips, ns, "late")


def test_headless_service_pods_get_one_ip_each_while_ready(
    term: Term, driver: Driver, ns: str
) -> None:
    for i in range(3):
        driver.pod(ns, f"db-{i}", f"10.244.3.{10 + i}", {"app": "db"})
    driver.service(ns, "db", headless=True, selector={"app": "db"})
    driver.export(ns, "db")
    ips = {driver.await_giip_ip(ns, f"pod-db-{i}") for i in range(3)}
    assert len(ips) == 3
    intent = term.publisher.wait_for(
        lambda i: len([m for m in i.ingress if m.owner.startswith(f"GlobalIngressIP {ns}/")]) == 3,
        15)
    targets = {m.target_ip for m in intent.ingress if m.owner.startswith(f"GlobalIngressIP {ns}/")}
    assert targets == {"10.244.3.10", "10.244.3.11", "10.244.3.12"}
    # Each backend also leaves with its own global IP.
    own = [g for g in intent.egress if g.kind is EgressKind.HEADLESS_POD and ns in g.owner]
    assert {next(iter(g.pod_ips)) for g in own} == targets
    driver.set_ready(ns, "db-1", "10.244.3.11", False)
    driver.await_gone(driver.giips, ns, "pod-db-1")
    driver.exports.delete("db", namespace=ns)
    for i in (0, 2):
        driver.await_gone(driver.giips, ns, f"pod-db-{i}")


def test_headless_service_without_selector_maps_endpoint_addresses(
    term: Term, driver: Driver, ns: str
) -> None:
    driver.service(ns, "ext", headless=True)
    driver.endpoints.create({"metadata": {"name": "ext", "namespace": ns}, "subsets": [
        {"addresses": [{"ip": "10.244.4.1"}, {"ip": "10.244.4.2"}],
         "ports": [{"port": 80}]}]})
    driver.export(ns, "ext")
    for ip in ("10.244.4.1", "10.244.4.2"):
        name = f"ep-ext-{ip.replace('.', '-')}"
        driver.await_giip_ip(ns, name)
        ann = driver.giips.get(name, namespace=ns)["metadata"]["annotations"]
        assert ann[names.HEADLESS_ENDPOINT_IP_ANNOTATION] == ip
    driver.exports.delete("ext", namespace=ns)


def test_gateway_nodes_get_a_health_check_ip(term: Term, driver: Driver) -> None:
    name = f"gw-{uuid.uuid4().hex[:6]}"
    driver.nodes.create({"metadata": {"name": name, "labels": {names.GATEWAY_LABEL: "true"}}})
    try:
        ip = await_condition(lambda: (driver.nodes.get(name)["metadata"].get("annotations")
                                      or {}).get(names.GATEWAY_GLOBAL_IP_ANNOTATION),
                             timeout=15, message="health-check IP annotation")
        intent = term.publisher.wait_for(
            lambda i: any(h.global_ip == ip for h in i.health_checks), 15)
        assert intent.validate() == []
    finally:
        driver.nodes.delete(name)
    await_condition(lambda: term.pool.holder(ip) is None, timeout=15, message="IP released")


def test_datapath_failures_are_retried(term: Term, driver: Driver, datapath: RecordingDatapath,
                                       ns: str) -> None:
    datapath.fail_next(2)
    driver.service(ns, "retry", selector={"app": "r"})
    driver.export(ns, "retry")
    driver.await_giip_ip(ns, "retry")
    term.publisher.wait_for(lambda i: bool(ingress_for(i, f"{ns}/retry")), 20)
    assert datapath.pending_failures == 0  # both injected failures were hit and retried
    assert datapath.current is not None and ingress_for(datapath.current, f"{ns}/retry")


def test_metrics_report_the_pool(term: Term, driver: Driver) -> None:
    from prometheus_client import REGISTRY

    await_cluster_egress(driver, 8)
    term.publisher.mark()

    def sample(name: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"cluster": "east", **labels})

    def pool(name: str) -> float:  # upstream's pool gauges, labelled by CIDR
        return REGISTRY.get_sample_value(name, {"cidr": GLOBAL_CIDR}) or 0

    await_condition(lambda: pool("submariner_cluster_global_egress_IP_allocated") >= 8,
                    timeout=10, message="allocated gauge")
    allocated = pool("submariner_global_IP_allocated")
    available = pool("submariner_global_IP_availability")
    assert allocated + available == 62
    assert (sample("globalnet_allocations", kind="ClusterGlobalEgressIP") or 0) == 1
    assert (sample("globalnet_intent_applies_total", result="ok") or 0) >= 1


def test_gnctl_show_allocations_lists_what_the_statuses_record(
    term: Term, driver: Driver, control_plane: Any, ns: str
) -> None:
    import json
    import subprocess
    import sys

    driver.service(ns, "shown", selector={"app": "s"})
    driver.export(ns, "shown")
    gip = driver.await_giip_ip(ns, "shown")
    out = subprocess.run(
        [sys.executable, "-m", "cli.main", "show", "allocations", "--kubeconfig",
         str(control_plane.kubeconfig), "-o", "json"],
        capture_output=True, text=True, check=True, timeout=60).stdout
    rows = json.loads(out)
    row = next(x for x in rows if x["namespace"] == ns and x["name"] == "shown")
    assert row["global_ips"] == [gip]
    assert row["target"] == "ClusterIPService shown"
    assert row["condition"] == "True/Success"
    assert any(x["kind"] == "ClusterGlobalEgressIP" for x in rows)


def test_remote_global_cidrs_follow_the_cluster_objects(term: Term, api: Any, ns: str) -> None:
    """A member joining, changing its CIDR or leaving reaches the intent by itself."""
    clusters = crud.ResourceClient(api, resources.CLUSTERS)
    body = {"apiVersion": "submariner.io/v1", "kind": "Cluster",
            "metadata": {"name": "west", "namespace": ns},
            "spec": {"cluster_id": "west", "global_cidr": ["242.70.0.0/16"]}}
    clusters.create(body)
    term.publisher.wait_for(lambda i: "242.70.0.0/16" in i.remote_global_cidrs, timeout=15)
    west = clusters.get("west", namespace=ns)
    west["spec"]["global_cidr"] = ["242.71.0.0/16"]
    clusters.update(west)
    term.publisher.wait_for(lambda i: "242.71.0.0/16" in i.remote_global_cidrs
                            and "242.70.0.0/16" not in i.remote_global_cidrs, timeout=15)
    clusters.delete("west", namespace=ns)
    term.publisher.wait_for(lambda i: "242.71.0.0/16" not in i.remote_global_cidrs, timeout=15)
