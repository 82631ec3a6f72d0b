"""lighthouse.agent.publication: what one export publishes, and its conditions.

Address conventions: global IPs 242.1.0.0/16 (cluster "west"), pod IPs
10.244.0.0/16, ClusterIPs 10.96.0.0/16. Objects are the plain dicts informers hold.
"""

from __future__ import annotations

from typing import Any

import pytest

from kube import names
from lighthouse.agent import reasons as r
from lighthouse.agent import render
from lighthouse.agent.model import EndpointSpec, Port, Properties
from lighthouse.agent.publication import ExportInputs, decide, dns_label_or_none

JSON = dict[str, Any]
NS = "shop"
EXPORTED_AT = "2024-05-01T12:00:00Z"


def export(name: str = "web") -> JSON:
    return {"metadata": {"name": name, "namespace": NS, "creationTimestamp": EXPORTED_AT}}


def service(name: str = "web", **spec: Any) -> JSON:
    spec.setdefault("ports", [{"name": "http", "port": 80, "protocol": "TCP",
                               "targetPort": 8080}])
    spec.setdefault("clusterIP", "10.96.0.10")
    return {"metadata": {"name": name, "namespace": NS}, "spec": spec}


def endpoints(ready: list[str], unready: tuple[str, ...] | list[str] = (),
              hostnames: dict[str, str] | None = None) -> JSON:
    names = hostnames or {}
    subset: JSON = {"addresses": [{"ip": ip, **({"hostname": names[ip]} if ip in names else {})}
                                  for ip in ready],
                    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}
    if unready:
        subset["notReadyAddresses"] = [{"ip": ip} for ip in unready]
    return {"metadata": {"name": "web", "namespace": NS}, "subsets": [subset]}


def cluster_ip_giip(ip: str | None, name: str = "web", failure: str | None = None) -> JSON:
    status: JSON = {"allocatedIP": ip} if ip else {}
    if failure:
        status["conditions"] = [{"type": "Allocated", "status": "False",
                                 "reason": "IPPoolAllocationFailed", "message": failure}]
    return {"metadata": {"name": name, "namespace": NS,
                         "labels": {names.SERVICE_REF_LABEL: name}},
            "spec": {"target": names.TARGET_CLUSTER_IP_SERVICE, "serviceRef": {"name": name}},
            "status": status}


def pod_giip(pod: str, ip: str | None) -> JSON:
    return {"metadata": {"name": f"pod-{pod}", "namespace": NS,
                         "labels": {names.SERVICE_REF_LABEL: "db"}},
            "spec": {"target": names.TARGET_HEADLESS_POD, "serviceRef": {"name": "db"},
                     "podRef": {"name": pod}},
            "status": {"allocatedIP": ip} if ip else {}}


def pod(name: str, ip: str, *, ready: bool = True, hostname: str | None = None) -> JSON:
    spec: JSON = {"hostname": hostname} if hostname else {}
    return {"metadata": {"name": name, "namespace": NS}, "spec": spec,
            "status": {"phase": "Running", "podIP": ip,
                       "conditions": [{"type": "Ready", "status": str(ready)}]}}


# --- validity -----------------------------------------------------------------------------------

def test_a_gone_export_decides_nothing() -> None:
    decision = decide(ExportInputs(export=None, service=service()))
    assert decision.valid is None and decision.ready is None and decision.publication is None


def test_a_missing_service_is_service_unavailable() -> None:
    decision = decide(ExportInputs(export=export(), service=None))
    assert decision.valid is not None and not decision.valid.status
    assert decision.valid.reason == r.NO_SERVICE
    assert decision.ready is not None and decision.ready.reason == r.PENDING
    assert decision.publication is None


@pytest.mark.parametrize("kind", ["ExternalName", "NodePort", "LoadBalancer"])
def test_other_service_types_are_unsupported(kind: str) -> None:
    decision = decide(ExportInputs(export=export(), service=service(type=kind)))
    assert decision.valid is not None and decision.valid.reason == r.INVALID_SERVICE_TYPE
    assert kind in decision.valid.message
    assert decision.publication is None


# --- ClusterIP ------------------------------------------------------------------------------------

def test_cluster_ip_waits_for_its_global_ip() -> None:
    decision = decide(ExportInputs(export=export(), service=service(),
                                   ingress_ips=[cluster_ip_giip(None)]))
    assert decision.valid is not None and not decision.valid.status
    assert decision.valid.reason == r.SERVICE_GLOBAL_IP_UNAVAILABLE
    assert decision.publication is None


def test_cluster_ip_says_why_globalnet_could_not_allocate() -> None:
    decision = decide(ExportInputs(export=export(), service=service(), ingress_ips=[
        cluster_ip_giip(None, failure="no free addresses")]))
    assert decision.valid is not None and "no free addresses" in decision.valid.message


def test_cluster_ip_publishes_its_global_ip_ready_when_a_backend_is() -> None:
    decision = decide(ExportInputs(export=export(), service=service(),
                                   endpoints=endpoints(["10.244.0.5"]),
                                   ingress_ips=[cluster_ip_giip("242.1.0.7")]))
    pub = decision.publication
    assert pub is not None
    assert (pub.service_type, pub.ips) == (r.CLUSTER_SET_IP, ("242.1.0.7",))
    assert pub.endpoints == (EndpointSpec(ip="242.1.0.7", ready=True),)
    # Clients reach the service port through the global IP.
    assert pub.ports == pub.slice_ports == (Port(name="http", protocol="TCP", port=80),)
    assert pub.exported_at == EXPORTED_AT
    assert decision.valid is not None and decision.valid.status
    assert decision.ready is not None and decision.ready.reason == r.EXPORTED


def test_the_traffic_distribution_annotation_and_ready_backends_are_published() -> None:
    balanced = export()
    balanced["metadata"]["annotations"] = {names.TRAFFIC_DISTRIBUTION_ANNOTATION: r.BALANCED}
    two_ready = endpoints(["10.244.0.5", "10.244.0.6"], ["10.244.0.9"])
    decision = decide(ExportInputs(export=balanced, service=service(), endpoints=two_ready,
                                   ingress_ips=[cluster_ip_giip("242.1.0.7")]))
    pub = decision.publication
    assert pub is not None
    assert (pub.properties.distribution, pub.properties.spread, pub.ready_backends) == (
        r.BALANCED, r.BALANCED, 2)
    assert pub.properties.spread != Properties().spread == r.LOCAL_FIRST
    typo = export()
    typo["metadata"]["annotations"] = {names.TRAFFIC_DISTRIBUTION_ANNOTATION: "round-robin"}
    decision = decide(ExportInputs(export=typo, service=service(), endpoints=endpoints([]),
                                   ingress_ips=[cluster_ip_giip("242.1.0.7")]))
    assert decision.publication is not None
    assert decision.publication.properties.spread == r.LOCAL_FIRST
    assert decision.valid is not None and decision.valid.status
    assert "'round-robin': expected local-first or balanced, local-first used" in \
        decision.valid.message


def test_the_use_clusterset_ip_annotation_is_published_and_read_back() -> None:
    """true/false travel on the Broker ServiceImport (the oldest export's choice is
    the service's); another value is noted in Valid and ignored."""
    for value, wanted in (("true", True), ("False", False), ("yes", None)):
        exp = export()
        exp["metadata"]["annotations"] = {names.USE_CLUSTERSET_IP_ANNOTATION: value}
        decision = decide(ExportInputs(export=exp, service=service(), endpoints=endpoints([]),
                                       ingress_ips=[cluster_ip_giip("242.1.0.7")]))
        pub = decision.publication
        assert pub is not None and pub.properties.use_clusterset_ip is wanted
        on_broker = render.service_import(
            name="web", namespace="broker", cluster="west", source_namespace="default",
            service="web", publication=pub)
        assert render.properties_of(on_broker).use_clusterset_ip is wanted
        assert decision.valid is not None and decision.valid.status
        assert ("expected true or false, ignored" in decision.valid.message) == (wanted is None)


def test_cluster_ip_without_ready_backends_is_published_not_ready() -> None:
    decision = decide(ExportInputs(export=export(), service=service(),
                                   endpoints=endpoints([], ["10.244.0.5"]),
                                   ingress_ips=[cluster_ip_giip("242.1.0.7")]))
    assert decision.publication is not None
    assert decision.publication.endpoints == (EndpointSpec(ip="242.1.0.7", ready=False),)


def test_cluster_ip_ignores_global_ips_of_other_targets() -> None:
    decision = decide(ExportInputs(export=export(), service=service(),
                                   ingress_ips=[pod_giip("web", "242.1.0.9")]))
    assert decision.publication is None


def test_without_globalnet_the_cluster_ip_is_published() -> None:
    decision = decide(ExportInputs(export=export(), service=service(), globalnet=False))
    assert decision.publication is not None and decision.publication.ips == ("10.96.0.10",)


# --- headless ------------------------------------------------------------------------------------

def headless_inputs(**overrides: Any) -> ExportInputs:
    base: JSON = {
        "export": export("db"),
        "service": service("db", clusterIP="None", selector={"app": "db"}),
        "endpoints": endpoints(["10.244.0.10", "10.244.0.11"]),
        "ingress_ips": [pod_giip("db-0", "242.1.0.10"), pod_giip("db-1", "242.1.0.11")],
        "pods": {"db-0": pod("db-0", "10.244.0.10", hostname="primary"),
                 "db-1": pod("db-1", "10.244.0.11")},
    }
    base.update(overrides)
    return ExportInputs(**base)


def test_headless_publishes_each_pods_global_ip_with_its_hostname() -> None:
    decision = decide(headless_inputs())
    pub = decision.publication
    assert pub is not None and pub.service_type == r.HEADLESS and pub.ips == ()
    assert pub.endpoints == (EndpointSpec(ip="242.1.0.10", hostname="primary"),
                             EndpointSpec(ip="242.1.0.11", hostname="db-1"))
    # Clients connect to the pods directly: the backend (target) port.
    assert pub.slice_ports == (Port(name="http", protocol="TCP", port=8080),)
    assert pub.ports == (Port(name="http", protocol="TCP", port=80),)
    assert decision.ready is not None and decision.ready.reason == r.EXPORTED


def test_headless_publishes_what_it_has_and_says_what_is_missing() -> None:
    decision = decide(headless_inputs(ingress_ips=[pod_giip("db-0", "242.1.0.10"),
                                                   pod_giip("db-1", None)]))
    assert decision.publication is not None
    assert [e.ip for e in decision.publication.endpoints] == ["242.1.0.10"]
    assert decision.ready is not None and not decision.ready.status
    assert decision.ready.reason == r.SERVICE_GLOBAL_IP_UNAVAILABLE
    assert "1 of 2" in decision.ready.message


def test_headless_skips_global_ips_of_pods_that_are_gone() -> None:
    decision = decide(headless_inputs(pods={"db-0": pod("db-0", "10.244.0.10")},
                                      endpoints=endpoints(["10.244.0.10"])))
    assert decision.publication is not None
    assert [e.ip for e in decision.publication.endpoints] == ["242.1.0.10"]


def test_pod_names_that_are_not_dns_labels_get_no_hostname() -> None:
    decision = decide(headless_inputs(pods={"db-0": pod("db.0", "10.244.0.10")},
                                      ingress_ips=[pod_giip("db-0", "242.1.0.10")],
                                      endpoints=endpoints(["10.244.0.10"])))
    assert decision.publication is not None
    assert decision.publication.endpoints[0].hostname is None


def test_headless_without_selector_uses_the_endpoint_global_ips() -> None:
    giip = {"metadata": {"name": "ep-db-10-244-0-20", "namespace": NS,
                         "annotations": {names.HEADLESS_ENDPOINT_IP_ANNOTATION: "10.244.0.20"}},
            "spec": {"target": names.TARGET_HEADLESS_ENDPOINTS, "serviceRef": {"name": "db"}},
            "status": {"allocatedIP": "242.1.0.20"}}
    decision = decide(headless_inputs(
        service=service("db", clusterIP="None"), pods={}, ingress_ips=[giip],
        endpoints=endpoints(["10.244.0.20"], hostnames={"10.244.0.20": "ext"})))
    assert decision.publication is not None
    assert decision.publication.endpoints == (EndpointSpec(ip="242.1.0.20", hostname="ext"),)
    assert decision.ready is not None and decision.ready.status


def test_headless_without_globalnet_publishes_pod_ips_and_readiness() -> None:
    decision = decide(headless_inputs(
        globalnet=False, endpoints=endpoints(["10.244.0.10"], ["10.244.0.11"])))
    assert decision.publication is not None
    assert decision.publication.endpoints == (EndpointSpec(ip="10.244.0.10"),
                                              EndpointSpec(ip="10.244.0.11", ready=False))


def test_headless_before_endpoints_uses_the_numeric_target_port() -> None:
    decision = decide(headless_inputs(endpoints=None))
    assert decision.publication is not None
    assert decision.publication.slice_ports == (Port(name="http", protocol="TCP", port=8080),)


@pytest.mark.parametrize(("name", "expected"), [
    ("db-0", "db-0"), ("DB", None), ("db.0", None), ("-x", None), ("", None), (None, None),
    ("a" * 63, "a" * 63), ("a" * 64, None),
])
def test_dns_label_or_none(name: str | None, expected: str | None) -> None:
    assert dns_label_or_none(name) == expected


# --- MCS v1beta1 properties ----------------------------------------------------------------------

def published_properties(svc: JSON, exp: JSON | None = None) -> Properties:
    decision = decide(ExportInputs(export=exp or export(), service=svc,
                                   ingress_ips=[cluster_ip_giip("242.1.0.5")]))
    assert decision.publication is not None
    return decision.publication.properties


def test_a_plain_1_20_service_has_no_affinity_and_no_traffic_fields() -> None:
    """1.20 drops internalTrafficPolicy and trafficDistribution: they stay unset."""
    props = published_properties(service(ipFamilies=["IPv4"]))
    assert props == Properties(session_affinity="None", ip_families=("IPv4",))


def test_client_ip_affinity_and_its_timeout_come_from_the_service() -> None:
    props = published_properties(service(
        sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 300}}))
    assert (props.session_affinity, props.session_affinity_timeout) == ("ClientIP", 300)
    # A timeout without ClientIP affinity means nothing and is not carried.
    props = published_properties(service(
        sessionAffinity="None", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 300}}))
    assert props.session_affinity_timeout is None


def test_ip_families_fall_back_to_the_cluster_ips() -> None:
    assert published_properties(service(clusterIP="10.96.0.10")).ip_families == ("IPv4",)
    assert published_properties(service(
        clusterIP="10.96.0.10", clusterIPs=["10.96.0.10", "fd00::a"])).ip_families == (
            "IPv4", "IPv6")


def test_traffic_fields_are_read_where_the_server_has_them() -> None:
    props = published_properties(service(internalTrafficPolicy="Local",
                                         trafficDistribution="PreferClose"))
    assert (props.internal_traffic_policy, props.traffic_distribution) == (
        "Local", "PreferClose")


def test_exported_labels_and_annotations_are_carried_less_reserved_keys() -> None:
    exp = export()
    exp["spec"] = {
        "exportedLabels": {"tier": "web", names.SOURCE_CLUSTER_LABEL: "east"},
        "exportedAnnotations": {"owner": "team-a", names.EXPORTED_AT_ANNOTATION: "x"},
    }
    decision = decide(ExportInputs(export=exp, service=service(),
                                   ingress_ips=[cluster_ip_giip("242.1.0.5")]))
    assert decision.publication is not None
    props = decision.publication.properties
    assert props.labels == (("tier", "web"),)
    assert props.annotations == (("owner", "team-a"),)
    assert decision.valid is not None and decision.valid.reason == r.REASON_VALID
    assert names.SOURCE_CLUSTER_LABEL in decision.valid.message
    assert names.EXPORTED_AT_ANNOTATION in decision.valid.message


def test_exported_entries_the_server_would_refuse_are_left_out_and_named() -> None:
    exp = export()
    exp["spec"] = {"exportedLabels": {"ok": "yes", "bad key!": "x", "tier": "not valid!"},
                   "exportedAnnotations": {"example.com/note": "any text at all", "-x": "y"}}
    decision = decide(ExportInputs(export=exp, service=service(),
                                   ingress_ips=[cluster_ip_giip("242.1.0.5")]))
    assert decision.publication is not None and decision.valid is not None
    props = decision.publication.properties
    assert props.labels == (("ok", "yes"),)
    assert props.annotations == (("example.com/note", "any text at all"),)
    assert decision.valid.status and "\n" not in decision.valid.message
    for shown in ("label bad key! (not a valid key)",
                  "label tier=not valid! (not a valid label value)",
                  "annotation -x (not a valid key)"):
        assert shown in decision.valid.message, decision.valid.message
