"""Suite `service-discovery`: clusterset names, as Lighthouse serves them.

* a service only the target exports answers by `<svc>.<ns>.svc.clusterset.local`
  from a gateway and a non-gateway node of the source, on its global IP;
* a headless service resolves to one global IP per backend pod, and each answers
  as that pod;
* local preference: a service both clusters export resolves, in each cluster, to
  the local ClusterIP and is answered there;
* unexport withdrawal: once the target deletes its ServiceExport, the name stops
  resolving in the source and the GlobalIngressIP is withdrawn.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from kube import resources
from verify import scripts
from verify.clusters import Cluster
from verify.context import ECHO, SOLO, SOLO_HEADLESS, Context, client_nodes, node_text
from verify.results import Outcome, Result

NAME = "service-discovery"
CHECK_NAME = "TCP to a remote service by clusterset name"
CHECK_HEADLESS = "headless service: each pod by its own global IP"
CHECK_LOCAL = "local preference: exported by both, resolves to the local service"
CHECK_UNEXPORT = "unexport: ServiceExport deleted, the name stops resolving"


def run(ctx: Context) -> list[Result]:
    jobs = [functools.partial(_by_name, ctx, kind, node)
            for kind, node in client_nodes(ctx.source)]
    jobs.append(functools.partial(_headless, ctx))
    jobs += [functools.partial(_local, ctx, c) for c in ctx.clusters]
    rows = [r for r in ctx.session.parallel(jobs)]
    return [*rows, _unexport(ctx)]


def _path(ctx: Context) -> str:
    return f"{ctx.source.cluster_id} -> {ctx.target.cluster_id}"


def _by_name(ctx: Context, kind: str, node: str | None) -> Result:
    name, where = ctx.fqdn(SOLO), node_text(kind, node)
    if node is None:
        return Result(NAME, CHECK_NAME, _path(ctx), where, Outcome.SKIP,
                      f"{ctx.source.cluster_id} has no {kind} node")
    ip = ctx.session.global_ip(ctx.target, SOLO, timeout=ctx.timeout)
    if ip is None:
        return Result(NAME, CHECK_NAME, _path(ctx), where, Outcome.FAIL,
                      f"Service {SOLO} got no global IP within {ctx.timeout:.0f} s")
    res, seconds, failure = _connect_by_name(ctx, node, name, [ip], probe_name="name")
    if failure:
        return Result(NAME, CHECK_NAME, _path(ctx), where, Outcome.FAIL, failure, seconds)
    reply = (res.data.get("replies") or {}).get(ip) or {}
    return Result(NAME, CHECK_NAME, _path(ctx), where, Outcome.PASS,
                  f"{name} -> {ip}, answered by {ctx.target.cluster_id}/{reply.get('pod')}",
                  seconds)


def _connect_by_name(ctx: Context, node: Any, name: str, addresses: list[str], *,
                     probe_name: str) -> tuple[Any, float, str]:
    """A probe on `node` resolving `name` to exactly `addresses` of the target cluster
    and connecting to each: (its result, seconds, why it failed or "")."""
    res = ctx.session.probe(ctx.source, node, "connect", {
        "host": name, "port": scripts.ECHO_PORT, "deadline": ctx.timeout,
        "cluster": ctx.target.cluster_id, "addresses": addresses},
        timeout=ctx.timeout + 60, name=probe_name)
    seconds = float(res.data.get("seconds", 0.0))
    if res.ok:
        return res, seconds, ""
    got = res.data.get("addresses")
    resolved = (f" (resolved to {', '.join(got)}, expected {', '.join(addresses)})"
                if got else "")
    return res, seconds, f"{name}: {res.error}{resolved}"


def _headless(ctx: Context) -> Result:
    kind, node = client_nodes(ctx.source)[1]
    if node is None:
        kind, node = client_nodes(ctx.source)[0]
    where, name = node_text(kind, node), ctx.fqdn(SOLO_HEADLESS)
    backends = ctx.servers[ctx.target.cluster_id]
    ips = ctx.session.headless_ips(ctx.target, SOLO_HEADLESS, len(backends),
                                   timeout=ctx.timeout)
    if set(ips) != set(backends):
        return Result(NAME, CHECK_HEADLESS, _path(ctx), where, Outcome.FAIL,
                      f"global IPs for {sorted(ips)} of pods {sorted(backends)} within "
                      f"{ctx.timeout:.0f} s")
    assert node is not None  # the active gateway always exists
    res, seconds, failure = _connect_by_name(ctx, node, name, sorted(ips.values()),
                                             probe_name="headless")
    if failure:
        return Result(NAME, CHECK_HEADLESS, _path(ctx), where, Outcome.FAIL, failure, seconds)
    replies = res.data.get("replies") or {}
    wrong = [f"{ip} answered as {(replies.get(ip) or {}).get('pod')}, not {pod}"
             for pod, ip in ips.items() if (replies.get(ip) or {}).get("pod") != pod]
    if wrong:
        return Result(NAME, CHECK_HEADLESS, _path(ctx), where, Outcome.FAIL,
                      "; ".join(wrong), seconds)
    return Result(NAME, CHECK_HEADLESS, _path(ctx), where, Outcome.PASS,
                  f"{name} -> " + ", ".join(f"{pod} {ip}" for pod, ip in sorted(ips.items())),
                  seconds)


def _local(ctx: Context, c: Cluster) -> Result:
    kind, node = client_nodes(c)[1]
    if node is None:
        kind, node = client_nodes(c)[0]
    assert node is not None
    where, name = node_text(kind, node), ctx.fqdn(ECHO)
    local = ctx.cluster_ips[c.cluster_id]
    res = ctx.session.probe(c, node, "connect", {
        "host": name, "port": scripts.ECHO_PORT, "deadline": ctx.timeout,
        "cluster": c.cluster_id, "addresses": [local]},
        timeout=ctx.timeout + 60, name="local")
    seconds = float(res.data.get("seconds", 0.0))
    if not res.ok:
        got = res.data.get("addresses")
        return Result(NAME, CHECK_LOCAL, c.cluster_id, where, Outcome.FAIL,
                      f"{name}: {res.error}" + (f" (resolved to {', '.join(got)}, expected "
                                                f"the local ClusterIP {local})"
                                                if got else ""), seconds)
    reply = (res.data.get("replies") or {}).get(local) or {}
    return Result(NAME, CHECK_LOCAL, c.cluster_id, where, Outcome.PASS,
                  f"{name} -> {local} (ClusterIP), answered by {c.cluster_id}/"
                  f"{reply.get('pod')}", seconds)


def _unexport(ctx: Context) -> Result:
    """Runs after the checks above, which need SOLO exported."""
    kind, node = client_nodes(ctx.source)[0]
    assert node is not None
    where, name = node_text(kind, node), ctx.fqdn(SOLO)
    started = time.monotonic()
    ctx.session.unexport(ctx.target, SOLO)
    res = ctx.session.probe(ctx.source, node, "gone", {"host": name, "deadline": ctx.timeout},
                            timeout=ctx.timeout + 60, name="unexport")
    giips = ctx.target.client(resources.GLOBAL_INGRESS_IPS)
    withdrawn = False
    while time.monotonic() < started + ctx.timeout:
        if giips.get_or_none(SOLO, namespace=ctx.session.namespace) is None:
            withdrawn = True
            break
        time.sleep(0.2)
    seconds = round(time.monotonic() - started, 1)
    if not res.ok:
        still = ", ".join(res.data.get("addresses") or []) or res.error
        return Result(NAME, CHECK_UNEXPORT, _path(ctx), where, Outcome.FAIL,
                      f"{name} still resolves in {ctx.source.cluster_id} {ctx.timeout:.0f} s "
                      f"after the unexport ({still})", seconds)
    if not withdrawn:
        return Result(NAME, CHECK_UNEXPORT, _path(ctx), where, Outcome.FAIL,
                      f"GlobalIngressIP {SOLO} still in {ctx.target.cluster_id} "
                      f"{ctx.timeout:.0f} s after the unexport", seconds)
    return Result(NAME, CHECK_UNEXPORT, _path(ctx), where, Outcome.PASS,
                  f"{name} no longer resolves in {ctx.source.cluster_id}; its global IP "
                  f"withdrawn in {ctx.target.cluster_id}", seconds)
