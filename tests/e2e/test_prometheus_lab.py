"""The lab's Prometheus scrapes every agent of every cluster, over its HTTP API.

Address conventions (lab/topology.py): two clusters c1 and c2 of two nodes each,
node 0 the gateway (198.18.0.10+i on the underlay), global CIDRs 242.i.0.0/16 from
the Broker. Prometheus listens in the lab's namespace gn-NAME-prom and is reached
through the host relay on 127.0.0.1 (`Lab.prometheus_url`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from deploy import rbac
from lab import globalnet as lab_globalnet
from lab import prometheus
from lab.lab import Lab
from tests.e2e.conftest import running_lab

SCRAPED_WITHIN = 120.0  # seconds: a few scrape intervals on a loaded 2-core machine


@pytest.fixture(scope="module")
def lab(lab_root: Path) -> Iterator[Lab]:
    with running_lab(lab_root, "pm", globalnet=True) as lab:
        yield lab


@pytest.fixture(scope="module")
def url(lab: Lab) -> str:
    found = lab.prometheus_url()
    assert found, "the Globalnet lab runs no Prometheus"
    return found


def _await(what: str, check: Callable[[], Any], timeout: float = SCRAPED_WITHIN) -> Any:
    """Poll until ``check()`` returns something true; fail with the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(1.0)
    pytest.fail(f"no {what} within {timeout:.0f} s (last: {last!r})")


def _values(url: str, promql: str) -> dict[tuple[str, ...], float]:
    """An instant query's samples by (cluster, agent, node) - or by the labels asked."""
    out = {}
    for sample in prometheus.query(url, promql):
        m = sample["metric"]
        out[(m.get("cluster", ""), m.get("agent", ""), m.get("node", ""))] = float(
            sample["value"][1])
    return out


def _last(selector: str) -> str:
    """The selector's latest sample within a minute: a scrape that timed out on a
    loaded machine marks series stale at once, the previous value still counts."""
    return f"last_over_time({selector}[1m])"


def _expected(lab: Lab) -> set[tuple[str, str, str]]:
    """(cluster, agent, node) of every agent the lab runs."""
    out = set()
    for c in lab.plan.clusters:
        for n in c.nodes:
            out.add((c.name, rbac.ROUTE_AGENT, n.name))
            if n.underlay_ip:
                out |= {(c.name, rbac.GATEWAY_ENGINE, n.name), (c.name, rbac.GLOBALNET, n.name)}
        lighthouse = [p for p in lab.pods(c.name, "submariner-operator")
                      if p.name.startswith("globalnet-lighthouse-agent-")]
        assert len(lighthouse) == 1
        out.add((c.name, rbac.LIGHTHOUSE_AGENT, lighthouse[0].node))
    return out


def test_every_agent_of_every_cluster_is_scraped_up(lab: Lab, url: str) -> None:
    expected = _expected(lab)

    def all_up() -> list[dict[str, Any]] | None:
        # The targets' health and `up` together: on a loaded machine a scrape may
        # time out now and then, and the next one succeeds.
        active = prometheus.api(url, "/api/v1/targets", {"state": "active"})["activeTargets"]
        healthy = [t for t in active if t["health"] == "up"]
        if not len(healthy) == len(active) == len(expected):
            return None
        return active if _values(url, "up") == dict.fromkeys(expected, 1.0) else None

    active = _await("target healthy", all_up)
    assert {(t["labels"]["cluster"], t["labels"]["agent"], t["labels"]["node"])
            for t in active} == expected
    assert {t["labels"]["job"] for t in active} == {rbac.GATEWAY_ENGINE, rbac.GLOBALNET,
                                                   rbac.ROUTE_AGENT, rbac.LIGHTHOUSE_AGENT}
    # Every agent is a Python process exporting its memory, a figure worth watching.
    rss = _values(url, _last("process_resident_memory_bytes"))
    assert set(rss) == expected and all(0 < v < 512 * 2**20 for v in rss.values())


def test_each_gateway_is_connected_to_the_other_cluster_with_a_latency(
        lab: Lab, url: str) -> None:
    clusters = [c.name for c in lab.plan.clusters]
    pairs = {(a, b) for a in clusters for b in clusters if a != b}

    def connected() -> set[tuple[str, str]] | None:
        found = {(s["metric"]["local_cluster"], s["metric"]["remote_cluster"])
                 for s in prometheus.query(url, _last('submariner_connections{status="connected"}'))
                 if float(s["value"][1]) == 1}
        return found if found == pairs else None

    _await("connected pair of clusters", connected)
    assert {(s["metric"]["cluster"], s["metric"]["cable_driver"])
            for s in prometheus.query(url, _last("submariner_connections"))} == {
        (c, "vxlan") for c in clusters}
    latency = prometheus.query(url, _last("submariner_connection_latency_seconds"))
    assert len(latency) == len(pairs)
    assert all(0 < float(s["value"][1]) < 1 for s in latency)
    established = prometheus.query(
        url, f"time() - {_last('submariner_connection_established_timestamp')}")
    assert len(established) == len(pairs)
    assert all(0 <= float(s["value"][1]) < 3600 for s in established)
    # One gateway per cluster, and it is the active one.
    for promql in (f"sum by (cluster) ({_last('submariner_gateways')})",
                   f"sum by (cluster) ({_last('globalnet_gateway_active')})"):
        assert {s["metric"]["cluster"]: float(s["value"][1])
                for s in prometheus.query(url, promql)} == dict.fromkeys(clusters, 1.0)


def test_global_ips_are_allocated_from_each_clusters_pool(lab: Lab, url: str) -> None:
    state = lab.state
    assert state is not None
    cidrs = state.global_cidrs  # cluster -> its global CIDR
    allocated = {s["metric"]["cluster"]: (s["metric"]["cidr"], float(s["value"][1]))
                 for s in prometheus.query(
                     url, _last("submariner_cluster_global_egress_IP_allocated"))}
    # The ClusterGlobalEgressIP's 8 addresses (upstream's default numGlobalIPs).
    assert allocated == {c: (cidr, 8.0) for c, cidr in cidrs.items()}
    for c in cidrs:
        total = sum(_values(
            url, _last(f'submariner_global_IP_allocated{{cluster="{c}"}}')).values())
        free = sum(_values(
            url, _last(f'submariner_global_IP_availability{{cluster="{c}"}}')).values())
        assert total >= 9, c  # the cluster egress IPs and the gateway's health-check IP
        assert free > 0 and total + free <= 65536, c
    remote = _values(url, _last('globalnet_datapath_mappings{kind="remote_cidr"}'))
    assert sorted(remote.values()) == [1.0] * len(cidrs)


def test_routes_dns_and_reconciles_are_measured(lab: Lab, url: str) -> None:
    routes = _values(url, _last("globalnet_route_agent_routes"))
    for c in lab.plan.clusters:
        for n in c.nodes:
            # Every other node routes the one remote global CIDR via the gateway node.
            want = 0.0 if n.underlay_ip else 1.0
            assert routes[(c.name, rbac.ROUTE_AGENT, n.name)] == want
    # One query per cluster's DNS server, from its gateway node: counted by type and rcode.
    for c in lab.plan.clusters:
        _await(f"answer from {c.name}'s DNS server", lambda c=c: lab_globalnet.dns_query(
            c.gateway.netns, lab_globalnet.dns_server(c), "lab-probe.invalid") is not None,
            timeout=10)

    def counted() -> dict[str, float] | None:
        queries = _last('lighthouse_dns_queries_total{qtype="A"}')
        found = {k[0]: v for k, v in _values(url, f"sum by (cluster) ({queries})").items()}
        return found if set(found) == {c.name for c in lab.plan.clusters} and all(
            v > 0 for v in found.values()) else None

    queries = _await("DNS queries counted in every cluster", counted)
    latency = _values(url, _last("lighthouse_dns_answer_latency_seconds_count"))
    assert all(v > 0 for v in latency.values()) and len(latency) == len(queries)
    # Every agent with work-queue controllers exports their error counters (the
    # engine: its Broker syncer's), from 0 on.
    errors = {k[1] for k in _values(url, _last("globalnet_reconcile_errors_total"))}
    assert errors == {rbac.GATEWAY_ENGINE, rbac.GLOBALNET, rbac.LIGHTHOUSE_AGENT}


def test_lab_status_says_where_prometheus_listens(lab: Lab, url: str) -> None:
    assert lab.status()["prometheus"] == url
    assert prometheus.ready(url)
