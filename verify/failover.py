"""Suite `gateway-failover` (disruptive, only with `--disruptive`): the target's
active gateway loses its gateway pod (engine, Broker syncer, Globalnet: deleted
through the API, the one disruption possible from outside), and connectivity from
the source must come back.

A probe in the source opens a new connection to the target's `echo` global IP
every INTERVAL_S from before the deletion until MIN_S have passed and the last
RECOVER_S all answered; the longest gap between two answers is the outage. With
more than one gateway node the Lease may move to another: the row says where the
active gateway is afterwards.
"""

from __future__ import annotations

import time

from deploy import manifests
from kube import names, resources
from kube import objects as o
from kube.leaderelection import holder_of
from verify import scripts
from verify.context import ECHO, Context, client_nodes, node_text
from verify.results import Outcome, Result

NAME = "gateway-failover"
CHECK = "connectivity comes back after the active gateway's pod is deleted"
INTERVAL_S = 0.1
MIN_S = 20.0
RECOVER_S = 3.0
BASELINE_S = 2.0  # connections answered before the disruption


def run(ctx: Context) -> list[Result]:
    target = ctx.target
    kind, node = client_nodes(ctx.source)[1]
    if node is None:
        kind, node = client_nodes(ctx.source)[0]
    assert node is not None
    path, where = f"{ctx.source.cluster_id} -> {target.cluster_id}", node_text(kind, node)
    ip = ctx.echo_ips.get(target.cluster_id)
    victim = _gateway_pod(ctx)
    if ip is None or victim is None:
        why = (f"Service {ECHO} has no global IP" if ip is None else
               f"no gateway pod ({manifests.GATEWAY_DAEMONSET}) on {target.active_gateway}")
        return [Result(NAME, CHECK, path, where, Outcome.FAIL, why)]
    deleted: list[float] = []

    def disrupt() -> None:
        time.sleep(BASELINE_S)
        target.client(resources.PODS).delete(o.name(victim), namespace=names.CLUSTER_NAMESPACE)
        deleted.append(time.monotonic())
        ctx.session.progress(f"deleted {target.cluster_id}'s gateway pod {o.name(victim)} "
                             f"on {target.active_gateway}")

    res = ctx.session.probe(ctx.source, node, "streak", {
        "host": ip, "port": scripts.ECHO_PORT, "interval": INTERVAL_S, "min_s": MIN_S,
        "max_s": MIN_S + ctx.timeout, "recover_s": RECOVER_S},
        timeout=MIN_S + ctx.timeout + 60, name="failover", started=disrupt)
    back = _replacement_ready(ctx, o.uid(victim))
    lease = target.client(resources.LEASES).get_or_none(
        names.GATEWAY_LEASE, namespace=names.CLUSTER_NAMESPACE)
    active = holder_of(lease) or "nobody"
    answered, failed = int(res.data.get("answered", 0)), int(res.data.get("failed", 0))
    summary = (f"longest gap {res.data.get('max_gap_s', '?')} s, "
               f"{answered}/{answered + failed} connections answered; active gateway now {active} "
               f"(was {target.active_gateway})")
    seconds = float(res.data.get("seconds", 0.0))
    if not deleted:
        return [Result(NAME, CHECK, path, where, Outcome.FAIL,
                       f"the probe never ran: {res.error}", seconds)]
    if not res.ok:
        return [Result(NAME, CHECK, path, where, Outcome.FAIL,
                       f"not back within {ctx.timeout:.0f} s: {summary}", seconds)]
    if back is None:
        return [Result(NAME, CHECK, path, where, Outcome.FAIL,
                       f"traffic flows, but no gateway pod is Ready again: {summary}", seconds)]
    return [Result(NAME, CHECK, path, where, Outcome.PASS,
                   f"{summary}; a new gateway pod was Ready on {back}", seconds)]


def _gateway_pods(ctx: Context) -> list[o.JSON]:
    return ctx.target.client(resources.PODS).list(
        namespace=names.CLUSTER_NAMESPACE,
        label_selector=f"{manifests.NAME_LABEL}={manifests.GATEWAY_DAEMONSET}").items


def _gateway_pod(ctx: Context) -> o.JSON | None:
    return next((p for p in _gateway_pods(ctx)
                 if o.spec(p).get("nodeName") == ctx.target.active_gateway
                 and not o.is_deleting(p)), None)


def _replacement_ready(ctx: Context, old_uid: str | None) -> str | None:
    """The node of a Ready gateway pod other than the deleted one (None: none in time)."""
    deadline = time.monotonic() + ctx.timeout
    while time.monotonic() < deadline:
        for pod in _gateway_pods(ctx):
            if o.uid(pod) != old_uid and o.pod_is_ready(pod):
                return str(o.spec(pod).get("nodeName"))
        time.sleep(0.5)
    return None
