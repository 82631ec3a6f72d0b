"""lighthouse.agent.aggregate: one view of a service exported by several clusters.

The rules under test (MCS): the oldest export decides the type; ports are the union
by name, the oldest export's entry winning; one port name with different numbers or
protocols is a ``PortConflict`` conflict, a port only some clusters have is not; the
oldest export's MCS v1beta1 properties win, and each disagreement has its MCS reason.
"""

from __future__ import annotations

from typing import Any

import pytest

from lighthouse.agent import reasons as r
from lighthouse.agent.aggregate import aggregate, conflict_condition, precedence
from lighthouse.agent.model import ClusterImport, Port, Properties

HTTP = Port(name="http", port=80)
HTTP_8080 = Port(name="http", port=8080)
HTTP_UDP = Port(name="http", port=80, protocol="UDP")
METRICS = Port(name="metrics", port=9090)


def imp(cluster: str, *ports: Port, at: str = "2024-05-01T12:00:00Z",
        kind: str = r.CLUSTER_SET_IP) -> ClusterImport:
    return ClusterImport(cluster=cluster, service_type=kind, ports=ports, exported_at=at)


def test_nobody_exporting_is_no_aggregate() -> None:
    assert aggregate([]) is None
    assert conflict_condition(None, had_conflict=False) is None


def test_one_cluster_is_its_own_aggregate() -> None:
    agg = aggregate([imp("west", HTTP)])
    assert agg is not None
    assert (agg.service_type, agg.ports, agg.clusters, agg.conflicting) == (
        r.CLUSTER_SET_IP, (HTTP,), ("west",), False)


def test_ports_are_the_union_by_name_and_extra_ports_are_no_conflict() -> None:
    agg = aggregate([imp("east", HTTP), imp("west", HTTP, METRICS)])
    assert agg is not None
    assert agg.ports == (HTTP, METRICS)
    assert agg.clusters == ("east", "west")
    assert not agg.conflicting
    assert conflict_condition(agg, had_conflict=False) is None


def test_same_name_other_port_conflicts_and_the_oldest_wins() -> None:
    agg = aggregate([imp("east", HTTP_8080, at="2024-05-02T00:00:00Z"),
                     imp("west", HTTP, at="2024-05-01T00:00:00Z")])
    assert agg is not None
    assert agg.precedent == "west"
    assert agg.ports == (HTTP,)
    (conflict,) = agg.port_conflicts
    assert conflict.name == "http"
    assert conflict.variants == (("east", HTTP_8080), ("west", HTTP))
    cond = conflict_condition(agg, had_conflict=False)
    assert cond is not None and cond.status and cond.reason == r.PORT_CONFLICT
    assert "80/TCP in west" in cond.message and "8080/TCP in east" in cond.message


def test_same_name_other_protocol_conflicts() -> None:
    agg = aggregate([imp("east", HTTP), imp("west", HTTP_UDP)])
    assert agg is not None and [c.name for c in agg.port_conflicts] == ["http"]


def test_ties_in_time_are_broken_by_cluster_name_so_every_cluster_agrees() -> None:
    one = [imp("west", HTTP_8080), imp("east", HTTP)]
    assert [i.cluster for i in precedence(one)] == ["east", "west"]
    assert aggregate(one) == aggregate(list(reversed(one)))


def test_imports_without_timestamp_come_last() -> None:
    assert [i.cluster for i in precedence([imp("a", at=""), imp("b")])] == ["b", "a"]


def test_type_conflict_keeps_the_oldest_type_and_skips_the_others_ports() -> None:
    agg = aggregate([imp("east", HTTP, at="2024-05-01T00:00:00Z"),
                     imp("west", HTTP_8080, METRICS, at="2024-05-02T00:00:00Z",
                         kind=r.HEADLESS)])
    assert agg is not None
    assert agg.service_type == r.CLUSTER_SET_IP
    assert agg.type_conflicts == ("west",)
    assert agg.ports == (HTTP,)
    assert agg.port_conflicts == ()
    cond = conflict_condition(agg, had_conflict=False)
    assert cond is not None and cond.reason == r.TYPE_CONFLICT


def test_a_resolved_conflict_turns_false_only_where_one_was_shown() -> None:
    agg = aggregate([imp("east", HTTP), imp("west", HTTP)])
    assert conflict_condition(agg, had_conflict=False) is None
    cond = conflict_condition(agg, had_conflict=True)
    assert cond is not None and not cond.status and cond.reason == r.NO_CONFLICTS


# --- MCS v1beta1 properties -------------------------------------------------------------------

OLD, NEW = "2024-05-01T00:00:00Z", "2024-05-02T00:00:00Z"


def with_props(cluster: str, at: str, **props: Any) -> ClusterImport:
    return ClusterImport(cluster=cluster, service_type=r.CLUSTER_SET_IP, ports=(HTTP,),
                         exported_at=at, properties=Properties(**props))


def test_the_oldest_exports_properties_are_the_aggregates() -> None:
    agg = aggregate([
        with_props("east", NEW, ip_families=("IPv6",), traffic_distribution="PreferClose"),
        with_props("west", OLD, ip_families=("IPv4",), session_affinity="ClientIP",
                   session_affinity_timeout=60, labels=(("tier", "web"),)),
        with_props("north", NEW, ip_families=("IPv4",), session_affinity="ClientIP",
                   session_affinity_timeout=60, labels=(("tier", "web"),)),
    ])
    assert agg is not None and agg.precedent == "west"
    assert agg.properties.ip_families == ("IPv4",)
    assert agg.properties.traffic_distribution is None
    assert agg.ips == ()  # the ClusterSetIP VIP hook: nothing allocates one yet
    # IP families and traffic distribution never conflict (the MCS API names no reason).
    assert r.SESSION_AFFINITY_CONFLICT in agg.conflict_reasons
    assert [c.reason for c in agg.property_conflicts] == [
        r.SESSION_AFFINITY_CONFLICT, r.LABELS_CONFLICT]


@pytest.mark.parametrize(("old", "new", "reason", "shown"), [
    pytest.param({}, {"session_affinity": "ClientIP", "session_affinity_timeout": 10800},
                 r.SESSION_AFFINITY_CONFLICT, "sessionAffinity is ClientIP in east, None in west",
                 id="affinity"),
    pytest.param({"session_affinity": "ClientIP", "session_affinity_timeout": 60},
                 {"session_affinity": "ClientIP", "session_affinity_timeout": 600},
                 r.SESSION_AFFINITY_CONFIG_CONFLICT, "timeoutSeconds is 600 in east, 60 in west",
                 id="timeout"),
    pytest.param({"internal_traffic_policy": "Local"}, {},
                 r.INTERNAL_TRAFFIC_POLICY_CONFLICT,
                 "internalTrafficPolicy is Cluster in east, Local in west", id="itp"),
    pytest.param({"labels": (("tier", "web"),)}, {"labels": (("tier", "db"),)},
                 r.LABELS_CONFLICT, "exportedLabels is {tier=db} in east, {tier=web} in west",
                 id="labels"),
    pytest.param({"annotations": (("owner", "a"),)}, {},
                 r.ANNOTATIONS_CONFLICT, "exportedAnnotations is {} in east, {owner=a} in west",
                 id="annotations"),
])
def test_each_property_conflict_has_its_mcs_reason_and_the_oldest_wins(
        old: dict[str, Any], new: dict[str, Any], reason: str, shown: str) -> None:
    agg = aggregate([with_props("west", OLD, **old), with_props("east", NEW, **new)])
    assert agg is not None
    assert agg.properties == Properties(**old)
    cond = conflict_condition(agg, had_conflict=False)
    assert cond is not None and cond.status and cond.reason == reason
    assert shown in cond.message and "oldest export (west) wins" in cond.message


def test_several_conflicts_join_their_reasons_in_a_fixed_order() -> None:
    agg = aggregate([
        ClusterImport(cluster="west", service_type=r.CLUSTER_SET_IP, ports=(HTTP,),
                      exported_at=OLD, properties=Properties(labels=(("a", "1"),))),
        ClusterImport(cluster="east", service_type=r.CLUSTER_SET_IP, ports=(HTTP_8080,),
                      exported_at=NEW, properties=Properties(session_affinity="ClientIP",
                                                             session_affinity_timeout=5)),
    ])
    cond = conflict_condition(agg, had_conflict=False)
    assert cond is not None
    assert cond.reason == "PortConflict,SessionAffinityConflict,LabelsConflict"


def test_clusters_of_another_type_take_no_part_in_property_conflicts() -> None:
    agg = aggregate([
        with_props("west", OLD),
        ClusterImport(cluster="east", service_type=r.HEADLESS, ports=(HTTP,), exported_at=NEW,
                      properties=Properties(session_affinity="ClientIP")),
    ])
    assert agg is not None and agg.conflict_reasons == (r.TYPE_CONFLICT,)


def test_the_vip_is_the_one_of_the_oldest_export_holding_one() -> None:
    """Every cluster applies this rule to the same Broker objects, so all agree: a
    newer export's own pick loses to an older export's VIP."""
    def with_vip(cluster: str, at: str, vip: str, kind: str = r.CLUSTER_SET_IP
                 ) -> ClusterImport:
        return ClusterImport(cluster=cluster, service_type=kind, ports=(HTTP,),
                             exported_at=at, clusterset_ip=vip)

    old, new = "2024-05-01T12:00:00Z", "2024-05-02T12:00:00Z"
    both = aggregate([with_vip("west", new, "244.0.1.9"), with_vip("east", old, "244.0.0.7")])
    assert both is not None and both.ips == ("244.0.0.7",)
    # The oldest export holds none yet: the next one's VIP is the service's.
    waiting = aggregate([with_vip("west", new, "244.0.1.9"), with_vip("east", old, "")])
    assert waiting is not None and waiting.ips == ("244.0.1.9",)
    nobody = aggregate([with_vip("east", old, "")])
    assert nobody is not None and nobody.ips == ()
    # A Headless aggregate has no VIP, and an export of the other type takes no part.
    headless = aggregate([with_vip("east", old, "", r.HEADLESS),
                          with_vip("west", new, "244.0.1.9")])
    assert headless is not None and headless.ips == ()
    mixed = aggregate([with_vip("east", old, "244.0.0.7"),
                       with_vip("west", "2024-04-01T00:00:00Z", "244.0.1.9", r.HEADLESS)])
    assert mixed is not None and mixed.service_type == r.HEADLESS and mixed.ips == ()

