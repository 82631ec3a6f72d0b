"""A JSON file of service records, for demos and benchmarks without an agent.

The real Lighthouse agent feeds :class:`ServiceRecords` in-process; this file
format lets ``python -m lighthouse.dns --records-file`` serve a fixed clusterset
(and reload it on SIGHUP). Shape::

    {
      "local_cluster": "east",
      "clusters": {"west": {"healthy": false}},
      "services": [
        {"namespace": "default", "name": "web", "exports": [
          {"cluster": "east", "global_ip": "242.0.0.7", "ready": true,
           "balanced": false, "weight": 1,
           "ports": [{"name": "http", "protocol": "TCP", "port": 80}]},
          {"cluster": "west", "endpoints": [
             {"ip": "242.1.0.5", "hostname": "web-0", "ready": true}]}
        ]}
      ]
    }

An export with ``global_ip`` is a ClusterIP service (``balanced`` and ``weight``
optional: local-first, weight 1); one with ``endpoints`` is headless. Loading
replaces the store's whole content by difference.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lighthouse.dns.records import (
    ClusterExport,
    Endpoint,
    ServiceKey,
    ServicePort,
    ServiceRecords,
)

Exports = list[tuple[ServiceKey, ClusterExport]]


def parse(doc: dict[str, Any]) -> tuple[str | None, dict[str, bool], Exports]:
    """(local cluster, cluster health, exports) from a decoded records document."""
    health = {str(c): bool(v.get("healthy", True)) for c, v in doc.get("clusters", {}).items()}
    exports: Exports = []
    for svc in doc.get("services", []):
        key = (str(svc["namespace"]).lower(), str(svc["name"]).lower())
        for exp in svc.get("exports", []):
            ports = tuple(
                ServicePort(
                    port=int(p["port"]),
                    protocol=str(p.get("protocol", "TCP")),
                    name=str(p.get("name", "")),
                )
                for p in exp.get("ports", [])
            )
            endpoints = tuple(
                Endpoint(
                    ip=str(e["ip"]),
                    hostname=e.get("hostname"),
                    ready=bool(e.get("ready", True)),
                )
                for e in exp.get("endpoints", [])
            )
            ip = exp.get("global_ip")
            exports.append(
                (
                    key,
                    ClusterExport(
                        cluster=str(exp["cluster"]),
                        ports=ports,
                        global_ip=str(ip) if ip else None,
                        ready=bool(exp.get("ready", True)),
                        endpoints=endpoints,
                        balanced=bool(exp.get("balanced", False)),
                        weight=int(exp.get("weight", 1)),
                    ),
                )
            )
    local = doc.get("local_cluster")
    return (str(local) if local else None), health, exports


def load(path: Path, records: ServiceRecords) -> int:
    """Make ``records`` hold exactly what the file says; returns the generation."""
    local, health, exports = parse(json.loads(path.read_text()))
    with records.lock:
        records.set_local_cluster(cluster=local)
        for cluster, healthy in health.items():
            records.set_cluster_health(cluster=cluster, healthy=healthy)
        return records.replace_all(exports=exports)


def dump(records: ServiceRecords) -> dict[str, Any]:
    """The store as a records document (the inverse of :func:`load`)."""
    services: dict[ServiceKey, list[dict[str, Any]]] = {}
    for key, export in records:
        entry: dict[str, Any] = {"cluster": export.cluster, "ready": export.ready}
        if export.global_ip is not None:
            entry["global_ip"] = export.global_ip
            entry["balanced"], entry["weight"] = export.balanced, export.weight
        else:
            entry["endpoints"] = [
                {"ip": e.ip, "hostname": e.hostname, "ready": e.ready} for e in export.endpoints
            ]
        entry["ports"] = [
            {"name": p.name, "protocol": p.protocol, "port": p.port} for p in export.ports
        ]
        services.setdefault(key, []).append(entry)
    return {
        "local_cluster": records.local_cluster,
        "services": [
            {"namespace": ns, "name": name, "exports": exps}
            for (ns, name), exps in sorted(services.items())
        ],
    }
