"""The gateway engine's pure parts: what it publishes and whom it connects to.
Addresses: underlay 198.18.0.1x, global CIDRs 242.<i>.0.0/16."""

from __future__ import annotations

from typing import Any

from gateway.engine import EngineConfig, _without_rtt, endpoint_spec, remote_endpoints

CFG = EngineConfig(cluster_id="c1", node_name="gw", private_ip="198.18.0.10",
                   subnets=("242.0.0.0/16",))


def endpoint(cluster: str, ip: str, created: str) -> dict[str, Any]:
    return {"metadata": {"name": f"{cluster}-{ip}", "creationTimestamp": created},
            "spec": {"cluster_id": cluster, "private_ip": ip, "subnets": ["242.1.0.0/16"]}}


def test_the_endpoint_names_the_cable_end_and_the_health_check_ip() -> None:
    spec = endpoint_spec(CFG, "242.0.0.9")
    assert (spec["private_ip"], spec["subnets"], spec["backend"]) == (
        "198.18.0.10", ["242.0.0.0/16"], "vxlan")
    assert spec["healthCheckIP"] == "242.0.0.9"
    assert "healthCheckIP" not in endpoint_spec(CFG, None)


def test_one_remote_endpoint_per_cluster_the_newest_and_never_our_own() -> None:
    eps = [endpoint("c1", "198.18.0.10", "2026-01-01T00:00:00Z"),
           endpoint("c2", "198.18.0.11", "2026-01-01T00:00:00Z"),
           endpoint("c2", "198.18.0.21", "2026-01-02T00:00:00Z"),  # after a failover
           endpoint("c3", "198.18.0.12", "2026-01-01T00:00:00Z")]
    assert [e["spec"]["private_ip"] for e in remote_endpoints("c1", eps)] == [
        "198.18.0.21", "198.18.0.12"]


def test_rtts_alone_do_not_make_a_new_status() -> None:
    a = {"haStatus": "active", "connections": [{"status": "connected",
                                                "latencyRTT": {"last": "0.1ms"}}]}
    b = {"haStatus": "active", "connections": [{"status": "connected",
                                                "latencyRTT": {"last": "0.2ms"}}]}
    c = {"haStatus": "active", "connections": [{"status": "error"}]}
    assert _without_rtt(a) == _without_rtt(b) != _without_rtt(c)
