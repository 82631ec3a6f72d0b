"""`gnctl benchmark throughput|latency`: pod to pod between two clusters, through
Globalnet, beside the same kind of pair inside one cluster as a reference.

Pairs, one at a time (they would share the nodes' cores otherwise):

* gateway to gateway: a client pod on the source's active gateway node to a server
  pod on the target's, by its exported Service's global IP;
* non-gateway to non-gateway: the same between two non-gateway nodes (their
  traffic also crosses each cluster's route to its gateway);
* reference: inside the source, a client on a non-gateway node to a server on the
  gateway node by pod IP: no tunnel, no translation.

throughput is iperf3 (one TCP stream, `seconds` long) from the test image;
latency is `count` request/response round trips of `size` bytes on one TCP
connection to the echo server (python3 at both ends, as netperf's TCP_RR), after
a warm-up: percentiles in microseconds and transactions per second.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kube import objects as o
from verify import pods, scripts
from verify.clusters import Cluster, check_pair
from verify.session import Session

KINDS = ("throughput", "latency")
WARMUP = 50


@dataclass(frozen=True)
class Pair:
    """A client node and the server pod it measures against."""

    name: str
    client: Cluster
    client_node: str
    server: Cluster
    server_pod: str
    via: str  # "global IP" or "pod IP"


@dataclass
class Figure:
    pair: str
    client: str  # "c1/node"
    server: str  # "c2/node"
    via: str
    address: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"pair": self.pair, "client": self.client, "server": self.server,
                "via": self.via, "address": self.address, **self.values,
                **({"error": self.error} if self.error else {})}


@dataclass(frozen=True)
class Settings:
    kind: str
    seconds: int = 5  # throughput: iperf3 -t
    count: int = 1000  # latency: round trips
    size: int = 1  # latency: bytes per request and response
    timeout: float = 30.0  # to converge: global IPs, the first connection


def pairs(source: Cluster, target: Cluster) -> tuple[list[Pair], dict[str, tuple[Cluster, str]]]:
    """The pairs to measure and the server pods they need (pod -> (cluster, node))."""
    servers: dict[str, tuple[Cluster, str]] = {"bench-gw": (target, target.active_gateway)}
    out = [Pair("gateway to gateway", source, source.active_gateway, target, "bench-gw",
                "global IP")]
    if source.non_gateway and target.non_gateway:
        servers["bench-node"] = (target, target.non_gateway)
        out.append(Pair("non-gateway to non-gateway", source, source.non_gateway, target,
                        "bench-node", "global IP"))
    servers["bench-ref"] = (source, source.active_gateway)
    out.append(Pair(f"reference inside {source.cluster_id}", source,
                    source.non_gateway or source.active_gateway, source, "bench-ref", "pod IP"))
    return out, servers


def run(source: Cluster, target: Cluster, settings: Settings, *, image: str,
        progress: Callable[[str], None] = lambda _m: None) -> list[Figure]:
    check_pair(source, target)
    todo, servers = pairs(source, target)
    with Session([source, target], image=image, progress=progress) as s:
        for name, (c, node) in servers.items():
            s.create(c, s.pod_spec(c).server(name, node, cluster_id=c.cluster_id, app=name,
                                             iperf=True))
            if c is target:
                s.create(c, pods.service(name, s.namespace, name,
                                         ports=(scripts.ECHO_PORT, scripts.IPERF_PORT)))
                s.export(c, name)
        ready: dict[str, o.JSON] = {}
        for c in (source, target):
            mine = [n for n, (k, _) in servers.items() if k is c]
            ready.update(s.await_ready(c, mine))
        figures = []
        for pair in todo:
            progress(f"{settings.kind}: {pair.name}")
            figures.append(_measure(s, pair, servers, ready, settings))
    return figures


def _measure(s: Session, pair: Pair, servers: dict[str, tuple[Cluster, str]],
             ready: dict[str, o.JSON], settings: Settings) -> Figure:
    server_node = servers[pair.server_pod][1]
    fig = Figure(pair.name, f"{pair.client.cluster_id}/{pair.client_node}",
                 f"{pair.server.cluster_id}/{server_node}", pair.via)
    if pair.via == "pod IP":
        address = o.pod_ip(ready[pair.server_pod])
    else:
        address = s.global_ip(pair.server, pair.server_pod, timeout=settings.timeout)
    if not address:
        fig.error = f"no {pair.via} for {pair.server_pod}"
        return fig
    fig.address = address
    if settings.kind == "throughput":
        mode, args = "iperf", {"host": address, "port": scripts.IPERF_PORT,
                               "seconds": settings.seconds, "deadline": settings.timeout}
        budget = settings.timeout + settings.seconds * 4
    else:
        mode, args = "rr", {"host": address, "port": scripts.ECHO_PORT,
                            "count": settings.count, "size": settings.size,
                            "warmup": WARMUP, "deadline": settings.timeout}
        budget = settings.timeout + settings.count * 0.05
    res = s.probe(pair.client, pair.client_node, mode, args, timeout=budget + 60,
                  name=settings.kind[:4])
    if not res.ok:
        fig.error = res.error
        return fig
    fig.values = {k: v for k, v in res.data.items()
                  if k not in ("ok", "seconds", "server", "attempts")}
    return fig
