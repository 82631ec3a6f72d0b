"""Suite `connectivity`: a pod reaches the other cluster's exported service by its
global IP, both ways, from a gateway node and from a non-gateway node; and the
server sees the client cluster's global egress IP, never the client's own pod IP
(which may be an address of the server's cluster too: the CIDRs overlap).
"""

from __future__ import annotations

import functools

from verify import scripts
from verify.clusters import Cluster
from verify.context import ECHO, Context, client_nodes, node_text
from verify.results import Outcome, Result

NAME = "connectivity"
CHECK_TCP = "TCP to a remote service's global IP"
CHECK_SOURCE = "server sees the client cluster's global egress IP"


def run(ctx: Context) -> list[Result]:
    jobs = []
    for client, server in ((ctx.source, ctx.target), (ctx.target, ctx.source)):
        for kind, node in client_nodes(client):
            jobs.append(functools.partial(_check, ctx, client, server, kind, node))
    return [r for rows in ctx.session.parallel(jobs) for r in rows]


def _check(ctx: Context, client: Cluster, server: Cluster, kind: str, node: str | None
           ) -> list[Result]:
    path, where = f"{client.cluster_id} -> {server.cluster_id}", node_text(kind, node)
    if node is None:
        return [Result(NAME, CHECK_TCP, path, where, Outcome.SKIP,
                       f"{client.cluster_id} has no {kind} node")]
    ip = ctx.echo_ips.get(server.cluster_id)
    if ip is None:
        return [Result(NAME, CHECK_TCP, path, where, Outcome.FAIL,
                       f"Service {ECHO} exported by {server.cluster_id} got no global IP "
                       f"within {ctx.timeout:.0f} s")]
    res = ctx.session.probe(client, node, "connect", {
        "host": ip, "port": scripts.ECHO_PORT, "deadline": ctx.timeout,
        "cluster": server.cluster_id}, timeout=ctx.timeout + 60, name="conn")
    seconds = float(res.data.get("seconds", 0.0))
    reply = (res.data.get("replies") or {}).get(ip) or {}
    if not res.ok:
        return [Result(NAME, CHECK_TCP, path, where, Outcome.FAIL,
                       f"{ip}:{scripts.ECHO_PORT}: {res.error}", seconds),
                Result(NAME, CHECK_SOURCE, path, where, Outcome.SKIP, "no connection")]
    rows = [Result(NAME, CHECK_TCP, path, where, Outcome.PASS,
                   f"{ip}:{scripts.ECHO_PORT} answered by {server.cluster_id}/"
                   f"{reply.get('pod')}", seconds)]
    peer, local = str(reply.get("peer", "")), str(reply.get("local", ""))
    if peer in client.egress_ips:
        rows.append(Result(NAME, CHECK_SOURCE, path, where, Outcome.PASS,
                           f"server saw {peer} ({client.cluster_id}'s cluster egress IP); "
                           f"client pod IP {local}"))
    else:
        rows.append(Result(NAME, CHECK_SOURCE, path, where, Outcome.FAIL,
                           f"server saw {peer or 'nothing'}, not one of "
                           f"{', '.join(sorted(client.egress_ips))}"
                           + (" (the client pod's own IP)" if peer == local else "")))
    return rows
