"""The cluster's VIP table: computed from the DNS records (``lighthouse.agent.viptable``),
carried as JSON (``datapath.nftables.clustersetip.plan_json``) and read back by the
route agents.

Address conventions: cluster ``east`` is local (ClusterIP 10.96.0.7), ``west`` and
``north`` remote (global IPs 242.1.0.7, 242.2.0.7); VIPs from 244.0.0.0/24.
"""

from __future__ import annotations

import pytest

from datapath.nftables.clustersetip import VipBackend, VipService, plan_from_json, plan_json
from lighthouse.agent.viptable import configmap, vip_services
from lighthouse.dns.records import ClusterExport, ServicePort, ServiceRecords

VIP = "244.0.0.9"
HTTP = ServicePort(port=80, protocol="TCP", name="http")
DNS = ServicePort(port=53, protocol="UDP", name="dns")


def records_with(*exports: ClusterExport, svc: str = "web") -> ServiceRecords:
    records = ServiceRecords(local_cluster="east")
    for e in exports:
        records.upsert_service(namespace="shop", name=svc, export=e)
    return records


def test_local_first_takes_the_local_clusterip_alone_while_it_has_ready_backends() -> None:
    records = records_with(
        ClusterExport(cluster="east", global_ip="10.96.0.7", vip=VIP, ports=(HTTP,)),
        ClusterExport(cluster="west", global_ip="242.1.0.7", vip=VIP, ports=(HTTP, DNS)))
    assert vip_services(records) == [VipService(
        vip=VIP, owner="shop/web", ports=(("tcp", 80), ("udp", 53)),
        backends=(VipBackend("east", "10.96.0.7", 1, local=True),))]
    records.upsert_service(namespace="shop", name="web", export=ClusterExport(
        cluster="east", global_ip="10.96.0.7", vip=VIP, ready=False, ports=(HTTP,)))
    records.upsert_service(namespace="shop", name="web", export=ClusterExport(
        cluster="north", global_ip="242.2.0.7", vip=VIP, weight=9, ports=(HTTP,)))
    (service,) = vip_services(records)
    assert service.backends == (VipBackend("north", "242.2.0.7", 1),
                                VipBackend("west", "242.1.0.7", 1))


def test_balanced_weights_by_ready_backends_and_an_unhealthy_cluster_drops_out() -> None:
    records = records_with(
        ClusterExport(cluster="east", global_ip="10.96.0.7", vip=VIP, balanced=True, weight=2),
        ClusterExport(cluster="west", global_ip="242.1.0.7", vip=VIP, balanced=True, weight=6))
    (service,) = vip_services(records)
    assert service.backends == (VipBackend("east", "10.96.0.7", 2, local=True),
                                VipBackend("west", "242.1.0.7", 6))
    records.set_cluster_health(cluster="west", healthy=False)
    (service,) = vip_services(records)
    assert [b.cluster for b in service.backends] == ["east"]


def test_services_without_a_vip_are_not_in_the_table_and_a_vip_stated_twice_is_kept_once(
) -> None:
    records = records_with(ClusterExport(cluster="west", global_ip="242.1.0.7"))
    assert vip_services(records) == []
    for svc in ("web", "api"):
        records.upsert_service(namespace="shop", name=svc, export=ClusterExport(
            cluster="west", global_ip="242.1.0.7", vip=VIP))
    assert [s.owner for s in vip_services(records)] == ["shop/api"]


def test_a_vip_without_any_usable_cluster_stays_in_the_table_with_no_backend() -> None:
    """Its connections are dropped on the node rather than leaking by the default route."""
    records = records_with(ClusterExport(cluster="west", global_ip="242.1.0.7", vip=VIP,
                                         ready=False, ports=(HTTP,)))
    (service,) = vip_services(records)
    assert service.backends == () and service.usable == ()


def test_the_plan_round_trips_as_json_and_equal_plans_are_equal_text() -> None:
    services = [VipService(vip=VIP, owner="shop/web", ports=(("udp", 53), ("tcp", 80)),
                           backends=(VipBackend("west", "242.1.0.7", 6),
                                     VipBackend("east", "10.96.0.7", 2, local=True)))]
    text = plan_json(services)
    assert plan_json(plan_from_json(text)) == text
    assert [s.backends for s in plan_from_json(text)] == [tuple(sorted(services[0].backends))]
    cm = configmap(text)
    assert cm["data"]["table.json"] == text
    assert cm["metadata"]["labels"]["lighthouse.submariner.io/vip-table"] == "true"


@pytest.mark.parametrize(("text", "message"), [
    ("{", "the VIP table is not JSON"),
    ('{"version": 2, "services": []}', "not a version 1 plan"),
    ('{"version": 1, "services": [{"vip": "244.0.0.9"}]}', "entry is malformed (KeyError"),
    ('{"version": 1, "services": [{"vip": "244.0.0", "owner": "shop/web", "ports": [],'
     ' "backends": []}]}', "shop/web: VIP '244.0.0' is not an IPv4 address"),
    ('{"version": 1, "services": [{"vip": "244.0.0.9", "owner": "shop/web",'
     ' "ports": [["tcp", 99999]], "backends": []}]}', "port tcp/99999"),
])
def test_a_bad_plan_is_refused_in_one_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=None) as err:
        plan_from_json(text)
    assert message in str(err.value) and "\n" not in str(err.value)
