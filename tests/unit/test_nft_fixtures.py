"""Shared intents for the nftables unit tests, and a check that they are sound.

Address conventions (cluster c1, the gateway under test):
  global CIDR 242.0.0.0/16; remote cluster c2 242.1.0.0/16
  pods 10.244.0.0/16 (node 0: 10.244.0.0/24, node 1: 10.244.1.0/24); services 10.96.0.0/16
  242.0.0.1-8     cluster egress (ClusterGlobalEgressIP)
  242.0.1.1-2     namespace ns1 egress, pods 10.244.0.20 and 10.244.0.21
  242.0.2.1       pod-selector egress ns1/db-egress, pod 10.244.0.21 (beats the namespace)
  242.0.3.10      headless pod ns1/pod-db-0 = 10.244.1.30 (ingress and its own egress)
  242.0.10.1      exported service ns1/web, ClusterIP 10.96.0.10, tcp/80 only
  242.0.255.254   gateway health check
  242.1.0.5       a remote client's egress IP
"""

from __future__ import annotations

from globalnet.intent import (
    EgressGroup,
    EgressKind,
    GlobalIP,
    HealthCheck,
    IngressMapping,
    IngressTarget,
    NatIntent,
    PortSpec,
    Protocol,
)

CLUSTER_EGRESS = EgressGroup(
    EgressKind.CLUSTER, "ClusterGlobalEgressIP cluster-egress.submariner.io",
    tuple(GlobalIP(f"242.0.0.{i}") for i in range(1, 9)),
)
NS_EGRESS = EgressGroup(
    EgressKind.NAMESPACE, "GlobalEgressIP ns1/ns-egress",
    (GlobalIP("242.0.1.1"), GlobalIP("242.0.1.2")), frozenset({"10.244.0.20", "10.244.0.21"}),
)
POD_EGRESS = EgressGroup(
    EgressKind.POD_SELECTOR, "GlobalEgressIP ns1/db-egress",
    (GlobalIP("242.0.2.1"),), frozenset({"10.244.0.21"}),
)
HEADLESS_EGRESS = EgressGroup(
    EgressKind.HEADLESS_POD, "GlobalIngressIP ns1/pod-db-0",
    (GlobalIP("242.0.3.10"),), frozenset({"10.244.1.30"}),
)
WEB = IngressMapping(GlobalIP("242.0.10.1"), "10.96.0.10", IngressTarget.CLUSTER_IP_SERVICE,
                     "GlobalIngressIP ns1/web", (PortSpec(Protocol.TCP, 80),))
HEADLESS = IngressMapping(GlobalIP("242.0.3.10"), "10.244.1.30",
                          IngressTarget.HEADLESS_SERVICE_POD, "GlobalIngressIP ns1/pod-db-0")
HEALTH = HealthCheck(GlobalIP("242.0.255.254"), "Gateway c1-gw")


def mapping(i: int, *, owner: str | None = None) -> IngressMapping:
    """Unrelated ClusterIP mapping number i: 242.0.(100+i//256).(i%256) -> 10.96.(100+...)."""
    hi, lo = 100 + i // 256, i % 256
    return IngressMapping(GlobalIP(f"242.0.{hi}.{lo}"), f"10.96.{hi}.{lo}",
                          IngressTarget.CLUSTER_IP_SERVICE,
                          owner or f"GlobalIngressIP bulk/svc-{i}")


def intent(*, ingress: tuple[IngressMapping, ...] = (), egress: tuple[EgressGroup, ...] = (),
           health: tuple[HealthCheck, ...] = (HEALTH,), **kw: object) -> NatIntent:
    """The base intent plus extra ingress mappings / egress groups."""
    return NatIntent.build(
        cluster_id="c1", global_cidr=str(kw.get("global_cidr", "242.0.0.0/16")),
        local_cidrs=["10.244.0.0/16", "10.96.0.0/16"],
        remote_global_cidrs=list(kw.get("remote", ["242.1.0.0/16"])),  # type: ignore[call-overload]
        egress=[CLUSTER_EGRESS, NS_EGRESS, POD_EGRESS, HEADLESS_EGRESS, *egress],
        ingress=[WEB, HEADLESS, *ingress],
        health_checks=list(health),
    )


def test_shared_intents_are_sound() -> None:
    """Every other nftables unit test builds on these: they must pass validate()."""
    assert intent().validate() == []
    assert intent(ingress=tuple(mapping(i) for i in range(300))).validate() == []
