"""A real Prometheus scraping every agent of every lab cluster.

The agents run as host-network pods in the node namespaces, and every cluster
uses the same node and pod addresses, so no single network can reach them all.
Prometheus therefore runs in a namespace of its own (``gn-NAME-prom``, loopback
only) and scrapes one loopback port per agent there; a relay in that namespace
(``lab.relay``: it opens each upstream socket inside the target's namespace)
carries every scrape into the node namespace the agent listens in (the
Lighthouse agent, a pod on the pod network, at its pod IP from its node). Each
target is labelled ``cluster``, ``node`` and ``agent``; the job is the agent's
component name, as in ``deploy/prometheus/``.

The user reaches Prometheus through the lab's host relay, on loopback port
``host_port(plan)``: the one after the clusters' API ports. Its data lives in the
lab's folder (``prometheus/data``); it starts after the agents (``lab up
--globalnet``) and stops with the lab's other processes. Without the
``prometheus`` binary (Debian's package, ``scripts/install-deps.sh``) the lab
runs without it.
"""

from __future__ import annotations

import json
import shutil
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deploy import rbac
from deploy.manifests import METRICS_PORTS
from lab.topology import LabPlan

LISTEN_PORT = 9090  # inside the Prometheus namespace
FIRST_TARGET_PORT = 19100  # relay ports for the targets, inside that namespace too
# Generous: on a loaded 2-core machine an agent's /metrics can take seconds to come.
SCRAPE_INTERVAL = "10s"
BINARY = "prometheus"


@dataclass(frozen=True)
class Target:
    """One agent's metrics endpoint and where the relay reaches it."""

    agent: str  # the component (deploy.rbac): the scrape job
    cluster: str
    node: str
    netns: str  # where the relay opens the connection
    address: str
    port: int


def netns_name(plan: LabPlan) -> str:
    return f"{plan.prefix}prom"


def host_port(plan: LabPlan) -> int:
    """The loopback port the host relay gives Prometheus: after the API ports."""
    return plan.spec.api_port_base + len(plan.clusters) + 1


def binary() -> str | None:
    return shutil.which(BINARY)


def node_targets(plan: LabPlan) -> list[Target]:
    """The host-network agents: engine and Globalnet on every gateway node, a route
    agent on every node (each listens on the node's loopback, too)."""
    out = []
    for c in plan.clusters:
        for n in c.nodes:
            agents = [rbac.ROUTE_AGENT]
            if n.underlay_ip:
                agents = [rbac.GATEWAY_ENGINE, rbac.GLOBALNET, *agents]
            out += [Target(a, c.name, n.name, n.netns, "127.0.0.1", METRICS_PORTS[a])
                    for a in agents]
    return out


def pod_target(cluster: str, node: str, node_netns: str, pod_ip: str) -> Target:
    """The Lighthouse agent: a pod, reached at its IP from its node."""
    return Target(rbac.LIGHTHOUSE_AGENT, cluster, node, node_netns, pod_ip,
                  METRICS_PORTS[rbac.LIGHTHOUSE_AGENT])


def relay_config(targets: list[Target]) -> dict[str, object]:
    """``lab.relay``'s config: target i on loopback port FIRST_TARGET_PORT + i."""
    return {"routes": {str(FIRST_TARGET_PORT + i): [t.netns, t.address, t.port]
                       for i, t in enumerate(targets)}}


def config(targets: list[Target]) -> dict[str, object]:
    """prometheus.yml: one job per agent, a static target per instance of it."""
    jobs: dict[str, list[dict[str, object]]] = {}
    for i, t in enumerate(targets):
        jobs.setdefault(t.agent, []).append({
            "targets": [f"127.0.0.1:{FIRST_TARGET_PORT + i}"],
            # instance: where the agent really listens, not the relay's port.
            "labels": {"cluster": t.cluster, "node": t.node, "agent": t.agent,
                       "instance": f"{t.cluster}/{t.node}:{t.port}"}})
    return {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_INTERVAL,
                   "evaluation_interval": SCRAPE_INTERVAL},
        # honor_labels: an agent's own `cluster` label (the same ID) is kept as it
        # is, not renamed `exported_cluster`.
        "scrape_configs": [{"job_name": job, "honor_labels": True, "static_configs": static}
                           for job, static in jobs.items()],
    }


def argv(prom: str, folder: Path) -> list[str]:
    """Prometheus with its config and data in ``folder``, on the namespace's loopback."""
    return [prom, f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}", "--storage.tsdb.retention.time=1d",
            f"--web.listen-address=127.0.0.1:{LISTEN_PORT}", "--log.level=warn"]


def write(folder: Path, targets: list[Target]) -> tuple[Path, Path]:
    """Write prometheus.yml and the relay's config; returns both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    prom = folder / "prometheus.yml"
    prom.write_text(yaml.safe_dump(config(targets), sort_keys=False))
    relay = folder / "relay.json"
    relay.write_text(json.dumps(relay_config(targets)))
    return prom, relay


# Straight to loopback: an http_proxy in the environment must not see lab traffic.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def api(url: str, path: str, params: dict[str, str] | None = None,
        timeout: float = 5.0) -> Any:
    """GET Prometheus's HTTP API (``/api/v1/...``); the ``data`` of a success."""
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with _OPENER.open(f"{url}{path}{query}", timeout=timeout) as response:
        body = json.loads(response.read())
    if body.get("status") != "success":
        raise RuntimeError(f"Prometheus {path}: {body.get('error', body)}")
    return body["data"]


def query(url: str, promql: str) -> list[dict[str, Any]]:
    """An instant query's vector: ``[{"metric": {...}, "value": [t, "v"]}, ...]``."""
    result = api(url, "/api/v1/query", {"query": promql})
    return list(result.get("result") or [])


def ready(url: str) -> bool:
    """Whether Prometheus answers ``/-/ready``."""
    try:
        with _OPENER.open(f"{url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False
