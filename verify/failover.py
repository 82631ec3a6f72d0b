"""Suite `gateway-failover` (disruptive, only with `--disruptive`): the target's
active gateway loses its gateway pod (engine, Broker syncer, Globalnet: deleted
through the API, the one disruption possible from outside), and connectivity from
the source must come back.

A probe in the source opens a new connection to the target's `echo` global IP
every INTERVAL_S from before the deletion until MIN_S have passed and the last
RECOVER_S all answered; the longest gap between two answers is the outage. With
more than one gateway node the Lease may move to another: the row says where the
active gateway is afterwards.

The DaemonSet makes the replacement pod only once the old one is gone, and a
kubelet of Kubernetes 1.20 (the lab's) sometimes keeps a deleted pod's dead
containers, and so the pod, until its next once-a-minute container garbage
collection (seen here: 7-12 s on a quiet machine, 47 s under load): the
replacement may come up to REPLACEMENT_S after the deletion, so the suite waits
that long for it (or the check timeout, if longer) and, if it never comes, says
which step it stuck at.
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
# The kubelet's container GC period (60 s), its status sync (10 s) and a start.
REPLACEMENT_S = 80.0
LEASE_WAIT_S = 20.0  # a Ready pod's engine starts, syncs its caches, then takes the Lease


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
    if not deleted:
        return [Result(NAME, CHECK, path, where, Outcome.FAIL,
                       f"the probe never ran: {res.error}", float(res.data.get("seconds", 0.0)))]
    budget = max(ctx.timeout, REPLACEMENT_S)
    ctx.session.progress(f"waiting for the replacement gateway pod (up to {budget:.0f} s "
                         "after the deletion)")
    back, stuck = _replacement_ready(ctx, o.uid(victim), deleted[0] + budget)
    replaced_s = time.monotonic() - deleted[0]
    active = _lease_holder(ctx, wait_s=LEASE_WAIT_S if back else 0.0) or "nobody"
    answered, failed = int(res.data.get("answered", 0)), int(res.data.get("failed", 0))
    summary = (f"longest gap {res.data.get('max_gap_s', '?')} s, "
               f"{answered}/{answered + failed} connections answered; active gateway now {active} "
               f"(was {target.active_gateway})")
    seconds = float(res.data.get("seconds", 0.0))
    if not res.ok:
        return [Result(NAME, CHECK, path, where, Outcome.FAIL,
                       f"not back within {ctx.timeout:.0f} s: {summary}", seconds)]
    if back is None:
        return [Result(NAME, CHECK, path, where, Outcome.FAIL,
                       f"traffic flows, but no gateway pod is Ready again {budget:.0f} s after "
                       f"the deletion ({stuck}): {summary}", seconds)]
    return [Result(NAME, CHECK, path, where, Outcome.PASS,
                   f"{summary}; a new gateway pod was Ready on {back} {replaced_s:.0f} s after "
                   "the deletion", seconds)]


def _gateway_pods(ctx: Context) -> list[o.JSON]:
    return ctx.target.client(resources.PODS).list(
        namespace=names.CLUSTER_NAMESPACE,
        label_selector=f"{manifests.NAME_LABEL}={manifests.GATEWAY_DAEMONSET}").items


def _gateway_pod(ctx: Context) -> o.JSON | None:
    return next((p for p in _gateway_pods(ctx)
                 if o.spec(p).get("nodeName") == ctx.target.active_gateway
                 and not o.is_deleting(p)), None)


def _replacement_ready(ctx: Context, old_uid: str | None,
                       deadline: float) -> tuple[str | None, str]:
    """The node of a Ready gateway pod other than the deleted one (None: none by
    `deadline`, a monotonic time), and otherwise where the replacement stuck."""
    while True:
        pods = _gateway_pods(ctx)
        for pod in pods:
            if o.uid(pod) != old_uid and o.pod_is_ready(pod):
                return str(o.spec(pod).get("nodeName")), ""
        stuck = _where_stuck(pods, old_uid)
        if time.monotonic() >= deadline:
            return None, stuck
        time.sleep(0.5)


def _lease_holder(ctx: Context, *, wait_s: float) -> str:
    """The gateway Lease's holder, waiting up to `wait_s` for one ("": nobody)."""
    deadline = time.monotonic() + wait_s
    while True:
        holder = holder_of(ctx.target.client(resources.LEASES).get_or_none(
            names.GATEWAY_LEASE, namespace=names.CLUSTER_NAMESPACE))
        if holder or time.monotonic() >= deadline:
            return holder
        time.sleep(0.2)


def _where_stuck(pods: list[o.JSON], old_uid: str | None) -> str:
    """"the deleted pod X is still terminating" or "pod Y: Pending, gateway-engine
    waiting (ContainerCreating)": what a user looks at next."""
    new = [p for p in pods if o.uid(p) != old_uid]
    if not new:
        old = next((p for p in pods if o.uid(p) == old_uid), None)
        return (f"the deleted pod {o.name(old)} is still terminating" if old is not None
                else "the DaemonSet made no new pod")
    return "; ".join(
        f"pod {o.name(pod)}: {o.status(pod).get('phase', 'unknown')}"
        + "".join(f", {_container_state(cs)}"
                  for cs in o.status(pod).get("containerStatuses") or [])
        for pod in new)


def _container_state(status: o.JSON) -> str:
    """"engine waiting (ContainerCreating)", "engine running"."""
    phase, detail = next(iter((status.get("state") or {"unknown": {}}).items()))
    reason = (detail or {}).get("reason")
    return f"{status.get('name')} {phase}" + (f" ({reason})" if reason else "")
