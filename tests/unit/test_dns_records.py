"""The service-records store the Lighthouse agent feeds and the DNS server reads.

Pinned down here: input validation, which changes notify subscribers (and with
which dependency keys, which decide the cached answers dropped), that no-op
updates notify nobody, resync by difference, and the health rules.

Address convention: cluster ``east`` is local and owns 242.0.0.0/16, ``west``
242.1.0.0/16, ``north`` 242.2.0.0/16.
"""

from __future__ import annotations

import pytest

from lighthouse.dns.records import (
    ALL,
    ClusterExport,
    DepKey,
    Endpoint,
    ServicePort,
    ServiceRecords,
)


def recorder(records: ServiceRecords) -> list[frozenset[DepKey] | None]:
    calls: list[frozenset[DepKey] | None] = []
    records.subscribe(calls.append)
    return calls


def web(cluster: str = "east", ip: str = "242.0.0.7", **kw: object) -> ClusterExport:
    return ClusterExport(cluster=cluster, global_ip=ip, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "build",
    [
        lambda: ClusterExport(cluster="east", global_ip="10.0.0.300"),
        lambda: ClusterExport(cluster="east", global_ip="fd00::1"),
        lambda: ClusterExport(cluster="East_1", global_ip="242.0.0.1"),
        lambda: ClusterExport(
            cluster="east", global_ip="242.0.0.1", endpoints=(Endpoint(ip="242.0.0.2"),)
        ),
        lambda: Endpoint(ip="242.0.0.2", hostname="not a label"),
        lambda: ClusterExport(cluster="east", global_ip="242.0.0.1", weight=-1),
        lambda: ServicePort(port=0),
        lambda: ServicePort(port=80, protocol="ICMP"),
    ],
    ids=["bad-ip", "ipv6", "bad-cluster", "ip-and-endpoints", "bad-hostname", "negative-weight",
         "port-0", "proto"],
)
def test_invalid_input_is_rejected_when_built_not_when_answered(build: object) -> None:
    with pytest.raises(ValueError):
        build()  # type: ignore[operator]


def test_names_are_stored_lowercase() -> None:
    records = ServiceRecords()
    records.upsert_service(namespace="Default", name="Web", export=web(cluster="EAST"))
    assert records.services() == [("default", "web")]
    assert list(records.get_service(namespace="DEFAULT", name="WEB")) == ["east"]
    assert ServicePort(port=53, protocol="udp", name="DNS") == ServicePort(
        port=53, protocol="UDP", name="dns"
    )


def test_the_first_service_of_a_namespace_changes_the_empty_non_terminals_too() -> None:
    records = ServiceRecords()
    calls = recorder(records)
    g1 = records.upsert_service(namespace="default", name="web", export=web())
    g2 = records.upsert_service(namespace="default", name="api", export=web(ip="242.0.0.8"))
    assert calls == [
        frozenset({("svc", "default", "web"), ("ns", "default"), ("zone",)}),
        frozenset({("svc", "default", "api")}),
    ]
    assert g2 == g1 + 1 == records.generation


def test_upserting_an_identical_export_notifies_nobody() -> None:
    records = ServiceRecords()
    http = (ServicePort(port=80),)
    records.upsert_service(namespace="default", name="web", export=web(ports=http))
    calls = recorder(records)
    generation = records.generation
    same = web(ports=(ServicePort(port=80),))  # equal, not the same object
    records.upsert_service(namespace="default", name="web", export=same)
    assert calls == []
    assert records.generation == generation


def test_removing_the_last_export_removes_the_service_and_its_namespace() -> None:
    records = ServiceRecords()
    records.upsert_service(namespace="default", name="web", export=web())
    records.upsert_service(namespace="default", name="web", export=web("west", "242.1.0.7"))
    calls = recorder(records)
    records.remove_service(namespace="default", name="web", cluster="west")
    assert calls[-1] == frozenset({("svc", "default", "web")})
    records.remove_service(namespace="default", name="web")
    assert calls[-1] == frozenset({("svc", "default", "web"), ("ns", "default"), ("zone",)})
    assert not records.has_namespace("default") and len(records) == 0
    records.remove_service(namespace="default", name="web")
    assert len(calls) == 2


def test_a_cluster_leaving_withdraws_everything_it_exported() -> None:
    records = ServiceRecords()
    for svc in ("a", "b"):
        records.upsert_service(namespace="ns1", name=svc, export=web("west", "242.1.0.7"))
    records.upsert_service(namespace="ns1", name="a", export=web())
    calls = recorder(records)
    records.remove_cluster(cluster="west")
    assert calls == [frozenset({("svc", "ns1", "a"), ("svc", "ns1", "b")})]
    assert records.services() == [("ns1", "a")]


def test_replace_cluster_applies_only_the_difference() -> None:
    records = ServiceRecords()
    records.upsert_service(namespace="ns1", name="keep", export=web("west", "242.1.0.1"))
    records.upsert_service(namespace="ns1", name="gone", export=web("west", "242.1.0.2"))
    calls = recorder(records)
    records.replace_cluster(
        cluster="west",
        services={
            ("ns1", "keep"): web("west", "242.1.0.1"),
            ("ns2", "new"): web("west", "242.1.0.3"),
        },
    )
    assert calls == [
        frozenset({("svc", "ns1", "gone"), ("svc", "ns2", "new"), ("ns", "ns2")})
    ]
    with pytest.raises(ValueError):
        records.replace_cluster(cluster="west", services={("ns1", "x"): web("east")})


def test_replace_all_makes_the_store_exactly_the_given_exports() -> None:
    records = ServiceRecords()
    records.upsert_service(namespace="ns1", name="old", export=web("north", "242.2.0.1"))
    records.replace_all(exports=[(("ns1", "new"), web("west", "242.1.0.1"))])
    assert [(k, e.cluster) for k, e in records] == [(("ns1", "new"), "west")]


def test_health_changes_touch_only_the_services_that_cluster_exports() -> None:
    records = ServiceRecords(local_cluster="east")
    records.upsert_service(namespace="ns1", name="a", export=web("west", "242.1.0.7"))
    records.upsert_service(namespace="ns1", name="b", export=web())
    calls = recorder(records)
    records.set_cluster_health(cluster="west", healthy=False)
    assert calls == [frozenset({("svc", "ns1", "a")})]
    records.set_cluster_health(cluster="west", healthy=False)
    assert len(calls) == 1
    assert not records.is_healthy("west")


def test_unknown_clusters_are_healthy_by_default_and_the_local_one_always() -> None:
    records = ServiceRecords(local_cluster="east")
    assert records.is_healthy("west")
    calls = recorder(records)
    records.set_cluster_health(cluster="east", healthy=False)
    assert records.is_healthy("east")
    assert calls == []
    strict = ServiceRecords(default_healthy=False)
    assert not strict.is_healthy("west")


def test_changing_the_local_cluster_invalidates_everything() -> None:
    records = ServiceRecords(local_cluster="east")
    calls = recorder(records)
    records.set_local_cluster(cluster="west")
    records.set_local_cluster(cluster="west")
    assert calls == [ALL]
    assert records.local_cluster == "west"


def test_unsubscribed_listeners_hear_nothing() -> None:
    records = ServiceRecords()
    calls: list[object] = []
    unsubscribe = records.subscribe(calls.append)
    unsubscribe()
    records.upsert_service(namespace="default", name="web", export=web())
    assert calls == []


def test_endpoints_without_hostname_are_named_by_their_dashed_ip() -> None:
    assert Endpoint(ip="242.1.0.12").dns_name == "242-1-0-12"
    assert Endpoint(ip="242.1.0.12", hostname="DB-0").dns_name == "db-0"
