"""lighthouse.agent.dnsfeed and render: imported slices and gateways -> DNS records.

Address conventions: cluster "east" (local) 242.0.0.0/16, "west" 242.1.0.0/16.
``FakeInformer`` stands in for ``kube.informer.Informer`` with the three methods
the feed uses, so the handler logic runs without an API server.
"""

from __future__ import annotations

from typing import Any

from kube import names
from lighthouse.agent import reasons as r
from lighthouse.agent import render
from lighthouse.agent.dnsfeed import DnsFeed, cluster_export, gateway_health
from lighthouse.agent.model import EndpointSpec, Port, Publication
from lighthouse.dns.records import Endpoint, ServicePort, ServiceRecords

JSON = dict[str, Any]
NS = "shop"


class FakeInformer:
    """Cache + handlers, driven by the test as the informer's dispatcher would be."""

    def __init__(self) -> None:
        self.items: dict[str, JSON] = {}
        self.handlers: list[dict[str, Any]] = []

    def add_handler(self, **handlers: Any) -> None:
        self.handlers.append(handlers)

    def get(self, key: str) -> JSON | None:
        return self.items.get(key)

    def list(self) -> list[JSON]:
        return list(self.items.values())

    def put(self, obj: JSON) -> None:
        key = f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}".lstrip("/")
        old = self.items.get(key)
        self.items[key] = obj
        for h in self.handlers:
            if old is None:
                h["on_add"](obj)
            else:
                h["on_update"](old, obj)

    def remove(self, obj: JSON) -> None:
        key = f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}".lstrip("/")
        del self.items[key]
        for h in self.handlers:
            h["on_delete"](obj)


def publication(kind: str, *endpoints: EndpointSpec) -> Publication:
    ports = (Port(name="http", port=80),)
    return Publication(service_type=kind, ports=ports, ips=(), endpoints=endpoints,
                       slice_ports=ports)


def local_slice(cluster: str, svc: str, pub: Publication, *, namespace: str = NS) -> JSON:
    broker = render.endpoint_slice(
        name=render.object_name(NS, svc, cluster), namespace=names.BROKER_NAMESPACE,
        api_version="discovery.k8s.io/v1beta1", cluster=cluster, source_namespace=NS,
        service=svc, publication=pub)
    return render.local_slice_copy(broker, name=broker["metadata"]["name"], namespace=namespace,
                                   api_version="discovery.k8s.io/v1beta1")


# --- pure ---------------------------------------------------------------------------------------

def test_a_cluster_set_ip_slice_is_one_global_ip() -> None:
    pub = publication(r.CLUSTER_SET_IP, EndpointSpec(ip="242.1.0.7", ready=False))
    export = cluster_export("west", [local_slice("west", "web", pub)])
    assert export is not None
    assert (export.global_ip, export.ready, export.headless) == ("242.1.0.7", False, False)
    assert export.ports == (ServicePort(port=80, protocol="TCP", name="http"),)


def test_a_balanced_slice_carries_its_choice_and_ready_backends() -> None:
    """What the exporter labels its slice with reaches the DNS records through the
    local copy; a slice without the labels (an older agent's) is local-first, weight 1."""
    pub = Publication(service_type=r.CLUSTER_SET_IP, ports=(), ips=("242.1.0.7",),
                      endpoints=(EndpointSpec(ip="242.1.0.7", ready=True),), slice_ports=(),
                      ready_backends=4)
    broker = render.endpoint_slice(
        name="web", namespace=names.BROKER_NAMESPACE, api_version="discovery.k8s.io/v1",
        cluster="west", source_namespace=NS, service="web", publication=pub,
        distribution=r.BALANCED)
    copy = render.local_slice_copy(broker, name="web", namespace=NS,
                                   api_version="discovery.k8s.io/v1")
    export = cluster_export("west", [copy])
    assert export is not None and (export.balanced, export.weight) == (True, 4)
    for label in (names.TRAFFIC_DISTRIBUTION_LABEL, names.READY_BACKENDS_LABEL):
        del copy["metadata"]["labels"][label]
    older = cluster_export("west", [copy])
    assert older is not None and (older.balanced, older.weight) == (False, 1)


def test_a_slice_carries_the_services_vip_and_whether_dns_answers_it() -> None:
    pub = Publication(service_type=r.CLUSTER_SET_IP, ports=(), ips=("242.1.0.7",),
                      endpoints=(EndpointSpec(ip="242.1.0.7", ready=True),), slice_ports=())
    for in_dns in (True, False):
        broker = render.endpoint_slice(
            name="web", namespace=names.BROKER_NAMESPACE, api_version="discovery.k8s.io/v1",
            cluster="west", source_namespace=NS, service="web", publication=pub,
            vip="244.0.0.9", vip_in_dns=in_dns)
        export = cluster_export("west", [render.local_slice_copy(
            broker, name="web", namespace=NS, api_version="discovery.k8s.io/v1")])
        assert export is not None and (export.vip, export.vip_in_dns) == ("244.0.0.9", in_dns)
    broker["metadata"]["labels"][names.VIP_LABEL] = "not-an-ip"  # hand-edited: ignored
    export = cluster_export("west", [broker])
    assert export is not None and (export.global_ip, export.vip) == ("242.1.0.7", None)
    no_vip = render.endpoint_slice(
        name="web", namespace=names.BROKER_NAMESPACE, api_version="discovery.k8s.io/v1",
        cluster="west", source_namespace=NS, service="web", publication=pub)
    assert names.VIP_LABEL not in no_vip["metadata"]["labels"]


def test_a_headless_slice_keeps_hostnames_and_readiness() -> None:
    pub = publication(r.HEADLESS, EndpointSpec(ip="242.1.0.10", hostname="primary"),
                      EndpointSpec(ip="242.1.0.11", ready=False))
    export = cluster_export("west", [local_slice("west", "db", pub)])
    assert export is not None and export.headless
    assert export.endpoints == (Endpoint(ip="242.1.0.10", hostname="primary"),
                                Endpoint(ip="242.1.0.11", ready=False))


def test_an_empty_cluster_set_ip_slice_says_nothing_but_headless_exists() -> None:
    assert cluster_export("west", [local_slice("west", "web",
                                               publication(r.CLUSTER_SET_IP))]) is None
    export = cluster_export("west", [local_slice("west", "db", publication(r.HEADLESS))])
    assert export is not None and export.endpoints == ()


def test_gateway_health_reads_the_active_gateways_connections() -> None:
    def gw(ha: str, *conns: tuple[str, str]) -> JSON:
        return {"metadata": {"name": ha}, "status": {"haStatus": ha, "connections": [
            {"status": s, "endpoint": {"cluster_id": c}} for c, s in conns]}}

    gateways = [gw("active", ("west", "connected"), ("north", "error")),
                gw("passive", ("south", "error"))]
    assert gateway_health(gateways) == {"west": True, "north": False}
    assert gateway_health([gw("x", ("west", "error"), ("west", "connected"))]) == {
        "west": True}
    assert gateway_health([]) == {}


def test_object_names_are_upstreams_unless_taken() -> None:
    assert render.object_name("shop", "web", "west") == "web-shop-west"
    # "a-b" in "c" and "a" in "b-c" would collide: the second gets a hashed name.
    hashed = render.object_name("b-c", "a", "west", taken_by_other=True)
    assert hashed.startswith("a-b-c-west-") and hashed != render.object_name("c", "a-b", "west")
    assert len(render.object_name("n" * 63, "s" * 63, "c" * 63 + "x" * 100)) <= 253


def test_canonical_content_ignores_server_defaults() -> None:
    pub = publication(r.CLUSTER_SET_IP, EndpointSpec(ip="242.1.0.7"))
    desired = local_slice("west", "web", pub)
    served = {**desired, "metadata": {**desired["metadata"], "resourceVersion": "7"},
              "endpoints": [{"addresses": ["242.1.0.7"], "conditions": {"ready": True},
                             "topology": {}}]}
    assert render.slice_content(served) == render.slice_content(desired)


# --- the feed ------------------------------------------------------------------------------------

def feed() -> tuple[ServiceRecords, FakeInformer, FakeInformer]:
    records = ServiceRecords()
    slices, gateways = FakeInformer(), FakeInformer()
    DnsFeed(records=records, cluster_id="east", slices=slices,  # type: ignore[arg-type]
            gateways=gateways, ignore_namespace=names.BROKER_NAMESPACE)  # type: ignore[arg-type]
    return records, slices, gateways


def test_feed_sets_the_local_cluster_and_mirrors_slices() -> None:
    records, slices, _ = feed()
    assert records.local_cluster == "east"
    west = local_slice("west", "web", publication(r.CLUSTER_SET_IP,
                                                  EndpointSpec(ip="242.1.0.7")))
    slices.put(west)
    assert records.get_service(namespace=NS, name="web")["west"].global_ip == "242.1.0.7"
    moved = {**west, "endpoints": [{"addresses": ["242.1.0.8"], "conditions": {"ready": True}}]}
    slices.put(moved)
    assert records.get_service(namespace=NS, name="web")["west"].global_ip == "242.1.0.8"
    slices.remove(moved)
    assert records.get_service(namespace=NS, name="web") == {}


def test_feed_ignores_the_broker_namespace() -> None:
    records, slices, _ = feed()
    slices.put(local_slice("west", "web", publication(
        r.CLUSTER_SET_IP, EndpointSpec(ip="242.1.0.7")), namespace=names.BROKER_NAMESPACE))
    assert records.services() == []


def test_feed_ignores_every_member_namespace_of_the_broker() -> None:
    """What west published, seen locally because the Broker shares this API server."""
    records, slices, _ = feed()
    slices.put(local_slice("west", "web", publication(
        r.CLUSTER_SET_IP, EndpointSpec(ip="242.1.0.7")),
        namespace=names.broker_member_namespace("west")))
    assert records.services() == []


def test_feed_keeps_clusters_apart() -> None:
    records, slices, _ = feed()
    slices.put(local_slice("west", "web", publication(r.CLUSTER_SET_IP,
                                                      EndpointSpec(ip="242.1.0.7"))))
    slices.put(local_slice("east", "web", publication(r.CLUSTER_SET_IP,
                                                      EndpointSpec(ip="242.0.0.7"))))
    assert set(records.get_service(namespace=NS, name="web")) == {"east", "west"}


def test_feed_reports_gateway_health_and_forgets_clusters_no_longer_listed() -> None:
    records, _, gateways = feed()
    gw = {"metadata": {"name": "gw", "namespace": names.CLUSTER_NAMESPACE},
          "status": {"haStatus": "active", "connections": [
              {"status": "error", "endpoint": {"cluster_id": "west"}}]}}
    gateways.put(gw)
    assert not records.is_healthy("west")
    gateways.remove(gw)
    assert records.is_healthy("west")


def test_a_new_feed_on_an_old_store_drops_what_the_cache_no_longer_has() -> None:
    records, slices, _ = feed()
    slices.put(local_slice("west", "web", publication(r.CLUSTER_SET_IP,
                                                      EndpointSpec(ip="242.1.0.7"))))
    slices.put(local_slice("west", "db", publication(r.HEADLESS)))
    # A restart: fresh informer whose initial list only has "db" any more.
    fresh = FakeInformer()
    new_feed = DnsFeed(records=records, cluster_id="east",
                       slices=fresh)  # type: ignore[arg-type]
    fresh.put(local_slice("west", "db", publication(r.HEADLESS)))
    new_feed.resync()
    assert records.services() == [(NS, "db")]


def test_the_local_export_is_answered_with_its_clusterip_whichever_comes_first() -> None:
    records, slices, services = ServiceRecords(), FakeInformer(), FakeInformer()
    DnsFeed(records=records, cluster_id="east", slices=slices,  # type: ignore[arg-type]
            services=services)  # type: ignore[arg-type]
    web = {"metadata": {"name": "web", "namespace": NS}, "spec": {"clusterIP": "10.96.0.10"}}
    # The slice before the Service: the global IP until the Service is known.
    slices.put(local_slice("east", "web", publication(r.CLUSTER_SET_IP,
                                                      EndpointSpec(ip="242.0.0.7"))))
    assert records.get_service(namespace=NS, name="web")["east"].global_ip == "242.0.0.7"
    services.put(web)
    assert records.get_service(namespace=NS, name="web")["east"].global_ip == "10.96.0.10"
    # Another cluster's export of the same service keeps its global IP, and a
    # headless local service (no ClusterIP) keeps its endpoints.
    slices.put(local_slice("west", "web", publication(r.CLUSTER_SET_IP,
                                                      EndpointSpec(ip="242.1.0.7"))))
    assert records.get_service(namespace=NS, name="web")["west"].global_ip == "242.1.0.7"
    services.put({"metadata": {"name": "db", "namespace": NS}, "spec": {"clusterIP": "None"}})
    slices.put(local_slice("east", "db", publication(
        r.HEADLESS, EndpointSpec(ip="242.0.3.1", hostname="db-0"))))
    db = records.get_service(namespace=NS, name="db")["east"]
    assert db.global_ip is None and [e.ip for e in db.endpoints] == ["242.0.3.1"]
