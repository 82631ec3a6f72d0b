"""The gateway engine's pure parts: what it publishes and whom it connects to.
Addresses: underlay 198.18.0.1x, global CIDRs 242.<i>.0.0/16."""

from __future__ import annotations

import time
from typing import Any

import pytest

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


def test_the_higher_gateway_term_wins_over_the_newer_endpoint() -> None:
    """A deposed gateway's publish held up on a cut link lands after its
    successor's: newer, but of the earlier Lease term."""
    successor = endpoint("c2", "198.18.0.11", "2026-01-01T00:00:01Z")
    successor["spec"]["gatewayTerm"] = 4
    deposed = endpoint("c2", "198.18.0.21", "2026-01-01T00:00:05Z")
    deposed["spec"]["gatewayTerm"] = 3
    assert [e["spec"]["private_ip"] for e in remote_endpoints("c1", [successor, deposed])] \
        == ["198.18.0.11"]
    assert [e["spec"]["private_ip"] for e in remote_endpoints("c1", [deposed, successor])] \
        == ["198.18.0.11"]


def test_the_endpoint_carries_the_term_it_was_published_in() -> None:
    assert endpoint_spec(CFG, None, term=7)["gatewayTerm"] == 7
    assert endpoint_spec(CFG, None)["gatewayTerm"] == 0


def test_rtts_alone_do_not_make_a_new_status() -> None:
    a = {"haStatus": "active", "connections": [{"status": "connected",
                                                "latencyRTT": {"last": "0.1ms"}}]}
    b = {"haStatus": "active", "connections": [{"status": "connected",
                                                "latencyRTT": {"last": "0.2ms"}}]}
    c = {"haStatus": "active", "connections": [{"status": "error"}]}
    assert _without_rtt(a) == _without_rtt(b) != _without_rtt(c)


def test_health_checker_reports_min_average_max_over_the_answered_pings(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """upstream's latencyRTT: the last RTT and the window's min/average/max/stdDev;
    an unanswered ping blanks them (nothing stale is shown as live)."""
    import threading

    from gateway import engine

    answers = iter([1.0, 3.0, 2.0, None])
    done = threading.Event()

    def fake_ping(target: str, timeout_s: int = 1, *, netns_name: str | None = None
                  ) -> float | None:
        try:
            return next(answers)
        except StopIteration:
            done.set()
            return None

    monkeypatch.setattr(engine, "ping", fake_ping)
    checker = engine.HealthChecker(None, 0.05, lambda: None)
    seen: list[dict[str, str]] = []
    checker.watch(["242.1.0.1"])
    checker.start()
    try:
        deadline = time.monotonic() + 5
        while len(seen) < 1 and time.monotonic() < deadline:
            stats = checker.rtt_stats("242.1.0.1")
            if stats.get("max") == "3.000ms" and stats.get("last") == "2.000ms":
                seen.append(stats)
            time.sleep(0.001)
        assert done.wait(5)
    finally:
        checker.stop()
    assert seen and seen[0]["min"] == "1.000ms" and seen[0]["average"] == "2.000ms"
    assert seen[0]["stdDev"] == "0.816ms"
    assert checker.rtt_stats("242.1.0.1") == {}
