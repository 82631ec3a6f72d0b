"""lighthouse.agent.aggregate: one view of a service exported by several clusters.

The rules under test (MCS): the oldest export decides the type; ports are the union
by name, the oldest export's entry winning; one port name with different numbers or
protocols is a ``ConflictingPorts`` conflict, a port only some clusters have is not.
"""

from __future__ import annotations

from lighthouse.agent import reasons as r
from lighthouse.agent.aggregate import aggregate, conflict_condition, precedence
from lighthouse.agent.model import ClusterImport, Port

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
    assert cond is not None and cond.status and cond.reason == r.CONFLICTING_PORTS
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
    assert cond is not None and cond.reason == r.CONFLICTING_TYPE


def test_a_resolved_conflict_turns_false_only_where_one_was_shown() -> None:
    agg = aggregate([imp("east", HTTP), imp("west", HTTP)])
    assert conflict_condition(agg, had_conflict=False) is None
    cond = conflict_condition(agg, had_conflict=True)
    assert cond is not None and not cond.status and cond.reason == r.NO_CONFLICT
