"""What the suites share: the session, the two clusters and the servers made for them.

`prepare` makes, in each cluster, two echo server pods (one on the active gateway
node, one on another node, where there is one) behind Service `echo`, exported by
both clusters (connectivity both ways, local preference); for service discovery the
target cluster also exports `solo` (a ClusterIP Service only it exports) and
`solo-hl` (headless), over the same pods.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

from kube import objects as o
from verify import pods
from verify.clusters import Cluster
from verify.session import Session

ECHO = "echo"  # exported by both clusters
SOLO = "solo"  # exported by the target only
SOLO_HEADLESS = "solo-hl"  # headless, exported by the target only
SERVER_APP = "verify-echo"


@dataclass
class Context:
    session: Session
    source: Cluster
    target: Cluster
    timeout: float  # how long one check may wait for the clusterset to converge
    servers: dict[str, dict[str, str]] = field(default_factory=dict)  # id -> pod -> node
    echo_ips: dict[str, str | None] = field(default_factory=dict)  # id -> echo's global IP
    cluster_ips: dict[str, str] = field(default_factory=dict)  # id -> echo's ClusterIP

    @property
    def clusters(self) -> tuple[Cluster, Cluster]:
        return self.source, self.target

    def fqdn(self, service: str) -> str:
        return f"{service}.{self.session.namespace}.svc.clusterset.local"


def server_nodes(c: Cluster) -> dict[str, str]:
    """Pod name -> node of the echo servers of `c`."""
    out = {"echo-gw": c.active_gateway}
    if c.non_gateway is not None:
        out["echo-node"] = c.non_gateway
    return out


def client_nodes(c: Cluster) -> list[tuple[str, str | None]]:
    """(kind, node) a check runs from: the active gateway and a non-gateway node."""
    return [("gateway", c.active_gateway), ("non-gateway", c.non_gateway)]


def prepare(ctx: Context, *, discovery: bool) -> None:
    """Servers, Services and exports; waits for the servers to be Ready and for
    echo's global IPs (a missing one is recorded as None: the checks then fail)."""
    s = ctx.session
    for c in ctx.clusters:
        spec = s.pod_spec(c)
        ctx.servers[c.cluster_id] = server_nodes(c)
        for name, node in ctx.servers[c.cluster_id].items():
            s.create(c, spec.server(name, node, cluster_id=c.cluster_id, app=SERVER_APP))
        svc = s.create(c, pods.service(ECHO, s.namespace, SERVER_APP))
        ctx.cluster_ips[c.cluster_id] = o.cluster_ip(svc) or ""
        s.export(c, ECHO)
    if discovery:
        s.create(ctx.target, pods.service(SOLO, s.namespace, SERVER_APP))
        s.create(ctx.target, pods.service(SOLO_HEADLESS, s.namespace, SERVER_APP,
                                          headless=True))
        s.export(ctx.target, SOLO)
        s.export(ctx.target, SOLO_HEADLESS)
    s.parallel([functools.partial(s.await_ready, c, list(ctx.servers[c.cluster_id]))
                for c in ctx.clusters])
    for c in ctx.clusters:
        ctx.echo_ips[c.cluster_id] = s.global_ip(c, ECHO, timeout=ctx.timeout)
    s.progress(f"servers ready; {ECHO}'s global IPs: "
               + ", ".join(f"{k} {v or 'none'}" for k, v in ctx.echo_ips.items()))


def node_text(kind: str, node: str | None) -> str:
    return f"{kind} {node}" if node else f"{kind} (none)"
