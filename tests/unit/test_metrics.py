"""The agents' metric modules, the manifests' metrics ports and the Prometheus configs.

Address conventions: local gateway 198.18.0.11 of cluster c1 (node c1-node-0), remote
gateway 198.18.0.12 of c2; global CIDRs 242.x.0.0/16 with x unique per test, so the
process-wide default registry never mixes two tests' pool series.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY, CollectorRegistry

from deploy import manifests, rbac
from gateway.metrics import GatewayCollector, rtt_seconds
from globalnet import metrics as globalnet_metrics
from kube import controller, names
from kube import metrics as kube_metrics
from lab import prometheus as lab_prometheus
from lab.topology import LabSpec, plan_lab
from lighthouse.agent.metrics import register as register_agent
from lighthouse.dns.records import ClusterExport, ServiceRecords

DEPLOY_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
LOCAL = {"cluster_id": "c1", "hostname": "c1-node-0", "public_ip": "198.18.0.11"}
REMOTE = {"cluster_id": "c2", "hostname": "c2-node-0", "public_ip": "198.18.0.12",
          "private_ip": "198.18.0.12"}
CONNECTION = {"cable_driver": "vxlan", "local_cluster": "c1", "local_hostname": "c1-node-0",
              "local_endpoint_ip": "198.18.0.11", "remote_cluster": "c2",
              "remote_hostname": "c2-node-0", "remote_endpoint_ip": "198.18.0.12"}


def _gateway(status: dict[str, Any], now: float,
             collector: GatewayCollector | None = None) -> tuple[GatewayCollector,
                                                                 CollectorRegistry]:
    collector = collector or GatewayCollector()
    collector.observe(cluster="c1", hostname="c1-node-0", driver="vxlan",
                      endpoint_ip="198.18.0.11", status=status, now=now)
    registry = CollectorRegistry()
    registry.register(collector)
    return collector, registry


def _active(connection_status: str, **extra: Any) -> dict[str, Any]:
    return {"haStatus": "active", "localEndpoint": LOCAL, "connections": [
        {"endpoint": REMOTE, "status": connection_status, **extra}]}


def test_rtt_is_read_from_the_gateway_status_in_seconds() -> None:
    assert rtt_seconds({"latencyRTT": {"last": "0.5ms"}}) == pytest.approx(0.0005)
    assert rtt_seconds({"latencyRTT": {"last": "bogus"}}) is None
    assert rtt_seconds({}) is None


def test_a_connected_gateway_reports_upstreams_connection_series() -> None:
    collector, registry = _gateway(_active("connected", latencyRTT={"last": "2.0ms"},
                                           cable={"rxBytes": 10, "txBytes": 20}), now=100.0)
    value = registry.get_sample_value
    assert value("submariner_connections", {**CONNECTION, "status": "connected"}) == 1
    assert value("submariner_connection_latency_seconds", CONNECTION) == pytest.approx(0.002)
    assert value("submariner_connection_established_timestamp", CONNECTION) == 100.0
    assert value("submariner_gateway_rx_bytes", CONNECTION) == 10
    assert value("submariner_gateway_tx_bytes", CONNECTION) == 20
    assert value("submariner_connections_short",
                 {"cable_driver": "vxlan", "status": "connected"}) == 1
    assert value("submariner_gateways") == 1
    local = {"local_cluster": "c1", "local_hostname": "c1-node-0"}
    assert value("globalnet_gateway_active", local) == 1
    assert value("submariner_gateway_creation_timestamp", local) == 100.0
    assert value("submariner_gateway_sync_iterations_total") == 1

    # Still connected later: the connection was established at 100, not again.
    _gateway(_active("connected"), now=150.0, collector=collector)
    assert value("submariner_connection_established_timestamp", CONNECTION) == 100.0


def test_a_lost_connection_changes_status_and_forgets_when_it_was_established() -> None:
    collector, registry = _gateway(_active("connected"), now=100.0)
    _gateway(_active("error"), now=110.0, collector=collector)
    value = registry.get_sample_value
    assert value("submariner_connections", {**CONNECTION, "status": "error"}) == 1
    assert value("submariner_connections", {**CONNECTION, "status": "connected"}) is None
    assert value("submariner_connection_established_timestamp", CONNECTION) is None
    _gateway(_active("connected"), now=120.0, collector=collector)
    assert value("submariner_connection_established_timestamp", CONNECTION) == 120.0


def test_a_passive_gateway_has_no_connections() -> None:
    _, registry = _gateway({"haStatus": "passive", "connections": []}, now=1.0)
    assert registry.get_sample_value(
        "globalnet_gateway_active", {"local_cluster": "c1", "local_hostname": "c1-node-0"}) == 0
    assert registry.get_sample_value(
        "submariner_connections", {**CONNECTION, "status": "connected"}) is None


def test_pool_gauges_use_upstreams_names_per_cidr() -> None:
    cidr = "242.201.0.0/16"
    globalnet_metrics.observe_pool("c9", cidr, 65000, {
        "ClusterGlobalEgressIP/cluster-egress.submariner.io": ("242.201.0.1",) * 8,
        "GlobalIngressIP/default/web": ("242.201.0.9",),
        "Node/c9-node-0": ("242.201.0.10",)})

    def value(name: str) -> float | None:
        return REGISTRY.get_sample_value(name, {"cidr": cidr})

    assert value("submariner_global_IP_availability") == 65000
    assert value("submariner_global_IP_allocated") == 10
    assert value("submariner_cluster_global_egress_IP_allocated") == 8
    assert value("submariner_global_ingress_IP_allocated") == 1
    assert value("submariner_global_egress_IP_allocated") == 0
    assert REGISTRY.get_sample_value("globalnet_allocations",
                                     {"cluster": "c9", "kind": "Node"}) == 1


class _Failing(controller.Controller):
    name = "test-failing"

    def reconcile(self, key: str) -> None:
        raise RuntimeError(f"cannot reconcile {key}")


def test_the_controller_base_counts_every_reconcile_error_by_controller() -> None:
    labels = {"controller": _Failing.name}
    before = REGISTRY.get_sample_value("globalnet_reconcile_errors_total", labels) or 0
    failing = _Failing()
    for key in ("a", "b"):
        with pytest.raises(RuntimeError):
            failing.process(key)
    assert REGISTRY.get_sample_value("globalnet_reconcile_errors_total", labels) == before + 2


def test_the_lighthouse_agent_reports_exports_and_health_per_cluster() -> None:
    records = ServiceRecords(local_cluster="c1")
    records.upsert_service(namespace="default", name="web",
                           export=ClusterExport(cluster="c1", global_ip="242.1.0.5"))
    records.upsert_service(namespace="default", name="web",
                           export=ClusterExport(cluster="c2", global_ip="242.2.0.5"))
    records.set_cluster_health(cluster="c2", healthy=False)
    registry = CollectorRegistry()
    register_agent(records, registry)
    assert registry.get_sample_value("lighthouse_services") == 1
    assert registry.get_sample_value("lighthouse_cluster_exports", {"cluster": "c2"}) == 1
    assert registry.get_sample_value("lighthouse_cluster_healthy", {"cluster": "c1"}) == 1
    assert registry.get_sample_value("lighthouse_cluster_healthy", {"cluster": "c2"}) == 0


# --- manifests and Prometheus configs ------------------------------------------------------

def _agents() -> list[dict[str, Any]]:
    opts = manifests.Options(cluster_id="c1", global_cidr="242.1.0.0/16",
                             cluster_cidrs=("10.244.0.0/16",), service_cidrs=("10.96.0.0/16",))
    return [o for o in manifests.render(opts) if o["kind"] in ("DaemonSet", "Deployment")]


def test_every_agent_container_serves_metrics_on_a_port_of_its_own() -> None:
    seen: dict[int, str] = {}
    for workload in _agents():
        template = workload["spec"]["template"]
        ports = []
        for c in template["spec"]["containers"]:
            if c["name"] == "cable":  # wireguard-go / charon: not ours to measure
                continue
            port = manifests.METRICS_PORTS[c["name"]]
            named = [p for p in c["ports"] if p["name"] == manifests.METRICS_PORT_NAME]
            assert named == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
            assert f"--metrics-port={port}" in c["args"]
            assert port not in seen, f"{c['name']} and {seen.get(port)} share {port}"
            seen[port] = c["name"]
            ports.append(port)
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(ports[0])
    assert set(seen.values()) == {rbac.GATEWAY_ENGINE, rbac.GLOBALNET, rbac.ROUTE_AGENT,
                                  rbac.LIGHTHOUSE_AGENT}


def test_metrics_ports_are_neither_node_ports_nor_ephemeral_ports() -> None:
    """An ephemeral port may be held by any outgoing connection when the agent starts."""
    ephemeral = range(32768, 61000)
    node_ports = range(30000, 32768)
    for agent, port in manifests.METRICS_PORTS.items():
        assert port not in ephemeral, f"{agent}'s {port} is an ephemeral port"
        assert port not in node_ports, f"{agent}'s {port} is a NodePort"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_taken_metrics_port_is_served_once_it_is_free(
        caplog: pytest.LogCaptureFixture) -> None:
    port = _free_port()
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", port))
    holder.listen()
    with caplog.at_level(logging.WARNING, logger="kube.metrics"):
        assert kube_metrics.serve(port, host="127.0.0.1", what="test", retry_seconds=0.05)
    assert f"test metrics: cannot listen on 127.0.0.1:{port}" in caplog.text
    holder.close()
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                assert b"globalnet_reconcile_errors" in r.read()
            break
        except OSError:
            assert time.monotonic() < deadline, "the metrics server never bound the freed port"
            time.sleep(0.05)


def test_no_metrics_port_serves_nothing() -> None:
    assert kube_metrics.serve(0) is False


def _promtool(config: dict[str, Any], tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: scripts/install-deps.sh installs prometheus"
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    check = subprocess.run([promtool, "check", "config", str(path)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_deploy_scrape_config_keeps_the_manifests_metrics_ports(tmp_path: Path) -> None:
    config = yaml.safe_load((DEPLOY_CONFIG / "prometheus.yml").read_text())
    job = config["scrape_configs"][0]
    assert job["kubernetes_sd_configs"] == [
        {"role": "pod", "namespaces": {"names": [names.CLUSTER_NAMESPACE]}}]
    keep = {r["source_labels"][0]: r["regex"] for r in job["relabel_configs"]
            if r.get("action") == "keep"}
    assert keep == {"__meta_kubernetes_pod_label_app_kubernetes_io_part_of": manifests.PART_OF,
                    "__meta_kubernetes_pod_container_port_name": manifests.METRICS_PORT_NAME}
    # Debian's promtool has no Kubernetes discovery: check the rest with a static target.
    del job["kubernetes_sd_configs"]
    job["static_configs"] = [{"targets": ["127.0.0.1:29780"]}]
    _promtool(config, tmp_path)


def test_the_pod_monitor_selects_the_agents_metrics_ports() -> None:
    monitor = yaml.safe_load((DEPLOY_CONFIG / "podmonitor.yaml").read_text())
    assert monitor["kind"] == "PodMonitor"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [names.CLUSTER_NAMESPACE]}
    selector = monitor["spec"]["selector"]["matchLabels"]
    for workload in _agents():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()
    assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["metrics"]


def test_the_lab_scrapes_every_agent_of_every_cluster(tmp_path: Path) -> None:
    plan = plan_lab(LabSpec(name="t", clusters=2, nodes=3, gateways=2, globalnet=True))
    targets = lab_prometheus.node_targets(plan)
    targets.append(lab_prometheus.pod_target("c1", "c1-node-1", "gn-t-c1-n1", "10.244.1.5"))
    # Per cluster: engine and Globalnet on 2 gateway nodes, 3 route agents; + 1 Lighthouse.
    assert len(targets) == 2 * (2 * 2 + 3) + 1
    relay = lab_prometheus.relay_config(targets)["routes"]
    assert isinstance(relay, dict) and len(relay) == len(targets)
    assert relay[str(lab_prometheus.FIRST_TARGET_PORT)] == [
        "gn-t-c1-n0", "127.0.0.1", manifests.METRICS_PORTS[rbac.GATEWAY_ENGINE]]
    config = lab_prometheus.config(targets)
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}  # type: ignore[attr-defined]
    assert set(jobs) == set(manifests.METRICS_PORTS)
    assert len(jobs[rbac.ROUTE_AGENT]["static_configs"]) == 6
    assert lab_prometheus.host_port(plan) == plan.spec.api_port_base + 3
    _promtool(config, tmp_path)


def test_route_agent_metrics_are_exported_by_the_route_agent_only() -> None:
    from gateway import metrics as gateway_metrics

    registry = CollectorRegistry()
    assert registry.get_sample_value("globalnet_route_agent_routes") is None
    gateway_metrics.register_route_agent(registry)
    # The counters are the process's: route agents other tests ran counted already.
    before = registry.get_sample_value("globalnet_route_agent_converges_total",
                                       {"result": "ok"}) or 0
    gateway_metrics.ROUTES.set(2)
    gateway_metrics.ROUTE_CONVERGES.labels(result="ok").inc()
    assert registry.get_sample_value("globalnet_route_agent_routes") == 2
    assert registry.get_sample_value("globalnet_route_agent_converges_total",
                                     {"result": "ok"}) == before + 1
    assert REGISTRY.get_sample_value("globalnet_route_agent_routes") is None
