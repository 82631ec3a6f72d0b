"""The NAT intent as a pure function of API objects.

Address conventions: cluster global CIDR 242.0.0.0/24; pods 10.244.0.0/16;
services 10.96.0.0/16; a remote cluster at 242.1.0.0/24.
"""

from __future__ import annotations

from typing import Any

from globalnet.controllers.intent_builder import IntentInputs, build_intent
from globalnet.intent import EgressKind, IngressTarget, egress_for
from kube import names


def obj(name: str, ns: str = "", *, created: str = "2026-01-01T00:00:00Z", **rest: Any
        ) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "creationTimestamp": created}
    if ns:
        meta["namespace"] = ns
    meta.update(rest.pop("meta", {}))
    return {"metadata": meta, **rest}


def pod(name: str, ip: str, labels: dict[str, str], ns: str = "app") -> dict[str, Any]:
    return obj(name, ns, meta={"labels": labels}, status={
        "phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]})


def inputs(**kw: Any) -> IntentInputs:
    base: dict[str, Any] = dict(
        cluster_id="east", global_cidr="242.0.0.0/24",
        local_cidrs=("10.244.0.0/16", "10.96.0.0/16"), pods=[], services=[],
        global_egress_ips=[], cluster_global_egress_ips=[], global_ingress_ips=[],
        gateway_nodes=[], clusters=[])
    base.update(kw)
    return IntentInputs(**base)


def test_egress_precedence_follows_upstream() -> None:
    pods = [pod("a", "10.244.0.5", {"app": "a"}), pod("b", "10.244.0.6", {"app": "b"}),
            pod("h", "10.244.0.7", {"app": "h"})]
    intent = build_intent(inputs(
        pods=pods,
        cluster_global_egress_ips=[obj(names.CLUSTER_EGRESS_NAME,
                                       status={"allocatedIPs": ["242.0.0.1", "242.0.0.2"]})],
        global_egress_ips=[
            obj("ns-wide", "app", status={"allocatedIPs": ["242.0.0.10"]}),
            obj("only-a", "app", spec={"podSelector": {"matchLabels": {"app": "a"}}},
                status={"allocatedIPs": ["242.0.0.20"]}),
        ],
        global_ingress_ips=[obj("pod-h", "app", spec={
            "target": names.TARGET_HEADLESS_POD, "podRef": {"name": "h"}},
            status={"allocatedIP": "242.0.0.30"})],
    ))
    assert [g.kind for g in intent.egress] == [EgressKind.POD_SELECTOR, EgressKind.HEADLESS_POD,
                                                EgressKind.NAMESPACE, EgressKind.CLUSTER]
    picked = {ip: egress_for(intent, ip) for ip in ("10.244.0.5", "10.244.0.6", "10.244.0.7",
                                                     "10.244.9.9")}
    assert picked["10.244.0.5"].global_ips == ("242.0.0.20",)  # type: ignore[union-attr]
    assert picked["10.244.0.7"].global_ips == ("242.0.0.30",)  # type: ignore[union-attr]
    assert picked["10.244.0.6"].global_ips == ("242.0.0.10",)  # type: ignore[union-attr]
    assert picked["10.244.9.9"].kind is EgressKind.CLUSTER  # type: ignore[union-attr]
    assert egress_for(intent, "192.168.1.1") is None
    assert intent.validate() == []


def test_ingress_targets_the_cluster_ip_with_its_ports() -> None:
    svc = obj("web", "app", spec={"clusterIP": "10.96.0.10", "ports": [
        {"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]})
    giip = obj("web", "app", spec={"target": names.TARGET_CLUSTER_IP_SERVICE,
                                   "serviceRef": {"name": "web"}},
               status={"allocatedIP": "242.0.0.40"})
    (mapping,) = build_intent(inputs(services=[svc], global_ingress_ips=[giip])).ingress
    assert (mapping.global_ip, mapping.target_ip) == ("242.0.0.40", "10.96.0.10")
    assert mapping.target is IngressTarget.CLUSTER_IP_SERVICE
    assert sorted((p.protocol.value, p.port) for p in mapping.ports) == [("tcp", 80), ("udp", 53)]


def test_headless_targets_admit_only_the_services_ports() -> None:
    svc = obj("db", "app", spec={"clusterIP": "None", "ports": [
        {"port": 5432, "targetPort": 15432, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"},
        {"port": 80, "targetPort": "http"}]})
    giips = [
        obj("pod-db-0", "app", spec={"target": names.TARGET_HEADLESS_POD,
                                     "serviceRef": {"name": "db"}, "podRef": {"name": "db-0"}},
            status={"allocatedIP": "242.0.0.70"}),
        obj("ep-db", "app", spec={"target": names.TARGET_HEADLESS_ENDPOINTS,
                                  "serviceRef": {"name": "db"}},
            meta={"annotations": {names.HEADLESS_ENDPOINT_IP_ANNOTATION: "10.244.3.3"}},
            status={"allocatedIP": "242.0.0.71"}),
    ]
    intent = build_intent(inputs(services=[svc], pods=[pod("db-0", "10.244.0.9", {})],
                                 global_ingress_ips=giips))
    for m in intent.ingress:
        assert [(p.protocol.value, p.port) for p in m.ports] == [
            ("tcp", 80), ("tcp", 15432), ("udp", 53)], m.owner
    assert {m.target for m in intent.ingress} == {IngressTarget.HEADLESS_SERVICE_POD,
                                                  IngressTarget.HEADLESS_SERVICE_ENDPOINTS}


def test_unsound_records_are_left_out_instead_of_spoiling_the_intent() -> None:
    svc = obj("web", "app", spec={"clusterIP": "10.96.0.10"})
    ref = {"target": names.TARGET_CLUSTER_IP_SERVICE, "serviceRef": {"name": "web"}}
    giips = [
        obj("older", "app", created="2026-01-01T00:00:00Z", spec=ref,
            status={"allocatedIP": "242.0.0.50"}),
        # Same address, newer record: the controllers reallocate it; meanwhile skipped.
        obj("newer", "app", created="2026-01-02T00:00:00Z", spec=ref,
            status={"allocatedIP": "242.0.0.50"}),
        # Someone else's CIDR (left by another cluster's controller): skipped.
        obj("foreign", "app", spec=ref, status={"allocatedIP": "242.9.0.1"}),
        obj("garbage", "app", spec=ref, status={"allocatedIP": "not-an-ip"}),
    ]
    intent = build_intent(inputs(services=[svc], global_ingress_ips=giips))
    assert [m.owner for m in intent.ingress] == ["GlobalIngressIP app/older"]
    assert intent.validate() == []


def test_equal_inputs_in_any_order_give_equal_intents() -> None:
    pods = [pod(f"p{i}", f"10.244.0.{i + 2}", {"app": "x"}) for i in range(5)]
    geip = obj("all", "app", status={"allocatedIPs": ["242.0.0.60", "242.0.0.61"]})
    remote = obj("west", names.CLUSTER_NAMESPACE, spec={"cluster_id": "west",
                                                        "global_cidr": ["242.1.0.0/24"]})
    own = obj("east", names.CLUSTER_NAMESPACE, spec={"cluster_id": "east",
                                                     "global_cidr": ["242.0.0.0/24"]})
    a = build_intent(inputs(pods=pods, global_egress_ips=[geip], clusters=[own, remote]))
    b = build_intent(inputs(pods=list(reversed(pods)), global_egress_ips=[geip],
                            clusters=[remote, own]))
    assert a == b and hash(a) == hash(b)
    assert a.remote_global_cidrs == ("242.1.0.0/24",)


def test_a_passive_gateway_holds_every_mapping_but_translates_toward_no_cluster() -> None:
    """Hot standby: the passive gateway node programs the same mappings and groups,
    with no remote global CIDR, so nothing it forwards is translated (its pods'
    traffic goes to the active gateway like any node's); turning active adds the
    remote CIDRs and nothing else."""
    svc = obj("web", "app", spec={"clusterIP": "10.96.0.10", "ports": [
        {"port": 80, "protocol": "TCP"}]})
    giip = obj("web", "app", spec={"target": names.TARGET_CLUSTER_IP_SERVICE,
                                   "serviceRef": {"name": "web"}},
               status={"allocatedIP": "242.0.0.40"})
    egress = obj(names.CLUSTER_EGRESS_NAME, status={"allocatedIPs": ["242.0.0.1"]})
    clusters = [{"metadata": {"name": c}, "spec": {"cluster_id": c, "global_cidr": [g]}}
                for c, g in (("east", "242.0.0.0/24"), ("west", "242.1.0.0/24"))]
    common = dict(services=[svc], global_ingress_ips=[giip],
                  cluster_global_egress_ips=[egress], clusters=clusters)
    active, passive = (build_intent(inputs(**common, passive=p)) for p in (False, True))
    assert active.remote_global_cidrs == ("242.1.0.0/24",)
    assert passive.remote_global_cidrs == ()
    assert (passive.ingress, passive.egress) == (active.ingress, active.egress)
    assert passive.validate() == []
