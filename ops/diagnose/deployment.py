"""`diagnose deployment`: every component running where it should, at one version,
and exactly one active gateway.

Reads the agents' DaemonSets and Deployment (deploy.manifests names them), their
pods, the gateway nodes, the gateway Lease and the engines' Gateway objects. A
DaemonSet is healthy when every node it should run on has a ready pod; the
Lighthouse agent when its one replica is ready; the DNS Service when its Endpoints
hold a ready address (what the cluster DNS forwards `clusterset.local` to).
"""

from __future__ import annotations

from typing import Any

from deploy import manifests, rbac
from kube import names, resources
from kube import objects as o
from kube.leaderelection import holder_of
from ops import gateways, versions
from ops.diagnose.model import Check, failed, passed, warned
from ops.diagnose.target import Target

JSON = dict[str, Any]
GROUP = "deployment"
# Containers each workload must run (gateway pod: engine and Globalnet side by side).
REQUIRED_CONTAINERS: dict[str, tuple[str, ...]] = {
    manifests.GATEWAY_DAEMONSET: (rbac.GATEWAY_ENGINE, rbac.GLOBALNET),
    manifests.ROUTE_AGENT_DAEMONSET: (rbac.ROUTE_AGENT,),
    manifests.LIGHTHOUSE_DEPLOYMENT: (rbac.LIGHTHOUSE_AGENT,),
}
KINDS = {manifests.GATEWAY_DAEMONSET: "DaemonSet", manifests.ROUTE_AGENT_DAEMONSET: "DaemonSet",
         manifests.LIGHTHOUSE_DEPLOYMENT: "Deployment"}
CRASH_REASONS = frozenset({"CrashLoopBackOff", "Error", "ErrImageNeverPull",
                           "ImagePullBackOff", "ErrImagePull", "CreateContainerError",
                           "CreateContainerConfigError", "RunContainerError"})


def _containers(workload: JSON) -> list[str]:
    template = o.spec(workload).get("template") or {}
    return [str(c.get("name")) for c in (template.get("spec") or {}).get("containers") or []]


def _pods_of(workload: JSON, pods: list[JSON]) -> list[JSON]:
    selector = o.spec(workload).get("selector") or {}
    if not selector.get("matchLabels"):
        return []
    return [p for p in pods if o.selector_matches(selector, o.labels(p))]


def _crashing(pods: list[JSON]) -> list[str]:
    """"pod/container (reason)" of containers that keep failing."""
    found = []
    for pod in pods:
        for cs in o.status(pod).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = str(waiting.get("reason") or "")
            if reason in CRASH_REASONS:
                found.append(f"{o.name(pod)}/{cs.get('name')} ({reason}, "
                             f"{cs.get('restartCount', 0)} restarts)")
    return found


def workload_check(name: str, workload: JSON | None, pods: list[JSON], *,
                   cluster: str, gateway_nodes: int = 0) -> list[Check]:
    """One component: deployed, its containers, every pod ready, none crash-looping."""
    what = f"{KINDS[name]} {name}"
    if workload is None:
        return [failed(GROUP, what, "not deployed", "run `gnctl join` again (it applies the "
                       "agents' manifests)", cluster=cluster)]
    out: list[Check] = []
    missing = [c for c in REQUIRED_CONTAINERS[name] if c not in _containers(workload)]
    if missing:
        out.append(failed(GROUP, f"{what} containers", f"no container {', '.join(missing)}",
                          "re-apply the manifests with `gnctl join`", cluster=cluster))
    status = o.status(workload)
    if KINDS[name] == "DaemonSet":
        desired = int(status.get("desiredNumberScheduled") or 0)
        ready = int(status.get("numberReady") or 0)
        where = "gateway nodes" if name == manifests.GATEWAY_DAEMONSET else "nodes"
        if desired == 0:
            out.append(failed(GROUP, what, f"scheduled on no node (no {where} match)",
                              f"label a gateway node {names.GATEWAY_SELECTOR}"
                              if name == manifests.GATEWAY_DAEMONSET else
                              "check the nodes' taints", cluster=cluster))
            return out
        if name == manifests.GATEWAY_DAEMONSET and desired < gateway_nodes:
            out.append(failed(GROUP, f"{what} placement", f"scheduled on {desired} of "
                              f"{gateway_nodes} gateway nodes", "check those nodes' taints "
                              "and readiness", cluster=cluster))
    else:
        desired = int(o.spec(workload).get("replicas") or 0)
        ready = int(status.get("readyReplicas") or 0)
        if desired == 0:
            out.append(failed(GROUP, what, "scaled to 0 replicas: the agent is stopped",
                              f"kubectl -n {o.namespace(workload)} scale deployment {name} "
                              "--replicas=1", cluster=cluster))
            return out
    crashing = _crashing(_pods_of(workload, pods))
    if crashing:
        out.append(failed(GROUP, what, f"crash-looping: {', '.join(crashing)}",
                          f"kubectl -n {o.namespace(workload)} logs POD -c CONTAINER "
                          "--previous", cluster=cluster))
    elif ready < desired:
        out.append(failed(GROUP, what, f"{ready} of {desired} pods ready",
                          f"kubectl -n {o.namespace(workload)} describe {KINDS[name].lower()} "
                          f"{name}", cluster=cluster))
    else:
        out.append(passed(GROUP, what, f"{ready} of {desired} pods ready", cluster=cluster))
    return out


def components(t: Target) -> list[Check]:
    by_name = {o.name(w): w for w in t.state.workloads()}
    pods = t.state.pods()
    gateway_nodes = len(t.state.gateway_nodes())
    return [check for name in KINDS
            for check in workload_check(name, by_name.get(name), pods, cluster=t.name,
                                        gateway_nodes=gateway_nodes)]


def versions_check(t: Target) -> Check:
    """Every agent container at the same image, and its pods running that one."""
    view = versions.versions_view(t.state.workloads(), t.state.pods())
    agents = [c for c in view.components if c.kind != "CLI"]
    configured = sorted({f"{c.repository}:{c.version}" for c in agents})
    if not configured:
        return failed(GROUP, "versions", "no agent workload found", "run `gnctl join`",
                      cluster=t.name)
    if len(configured) > 1:
        detail = ", ".join(f"{c.component}/{c.container} {c.repository}:{c.version}"
                           for c in agents)
        return failed(GROUP, "versions", f"components at different images: {detail}",
                      "upgrade every component to one version (`gnctl join` again)",
                      cluster=t.name)
    rolling = [f"{c.component}/{c.container}" for c in agents if len(c.running) > 1]
    if rolling:
        return warned(GROUP, "versions", f"all configured {configured[0]}, but pods of "
                      f"{', '.join(rolling)} run different images", "a rollout in progress? "
                      "wait, then check again", cluster=t.name)
    return passed(GROUP, "versions", f"every component at {configured[0]}", cluster=t.name)


def dns_service_check(t: Target) -> Check:
    """The Lighthouse DNS Service with a ready address behind it."""
    what = f"DNS Service {manifests.LIGHTHOUSE_DNS_SERVICE}"
    ns = t.state.namespace
    service = t.state.read_one(resources.SERVICES, manifests.LIGHTHOUSE_DNS_SERVICE,
                               namespace=ns)
    if service is None:
        return failed(GROUP, what, "not found", "run `gnctl join` again", cluster=t.name)
    endpoints = t.state.read_one(resources.ENDPOINTS, manifests.LIGHTHOUSE_DNS_SERVICE,
                                 namespace=ns)
    ready = [a.get("ip") for s in (endpoints or {}).get("subsets") or []
             for a in s.get("addresses") or []]
    if not ready:
        return failed(GROUP, what, f"ClusterIP {o.cluster_ip(service)} has no ready backend: "
                      "clusterset.local does not resolve",
                      f"check Deployment {manifests.LIGHTHOUSE_DEPLOYMENT}", cluster=t.name)
    return passed(GROUP, what, f"ClusterIP {o.cluster_ip(service)} -> {', '.join(map(str, ready))}",
                  cluster=t.name)


def gateway_nodes_check(t: Target) -> Check:
    nodes = sorted(o.name(n) for n in t.state.gateway_nodes())
    if not nodes:
        return failed(GROUP, "gateway nodes", f"no node labelled {names.GATEWAY_SELECTOR}",
                      f"kubectl label node NODE {names.GATEWAY_SELECTOR}", cluster=t.name)
    return passed(GROUP, "gateway nodes", f"labelled: {', '.join(nodes)}", cluster=t.name)


def active_gateway_check(t: Target) -> Check:
    """Exactly one active gateway: the Lease holder, a labelled node, reporting active."""
    holder = holder_of(t.state.gateway_lease())
    labelled = {o.name(n) for n in t.state.gateway_nodes()}
    reporting = sorted(o.name(g) for g in t.state.gateways()
                       if o.status(g).get("haStatus") == gateways.ACTIVE)
    name = "active gateway"
    if not holder:
        return failed(GROUP, name, "nobody holds the gateway Lease "
                      f"({names.GATEWAY_LEASE})" + (f"; reporting active: {', '.join(reporting)}"
                                                     if reporting else ""),
                      "is a gateway engine running? (deployment checks above)", cluster=t.name)
    if holder not in labelled:
        return failed(GROUP, name, f"Lease holder {holder} is not a labelled gateway node",
                      f"kubectl label node {holder} {names.GATEWAY_SELECTOR}", cluster=t.name)
    if reporting != [holder]:
        seen = ", ".join(reporting) or "none"
        return failed(GROUP, name, f"Lease held by {holder}, but Gateway status active on: "
                      f"{seen}", "an engine is taking over or has stopped writing; check "
                      "again in a few seconds, then its logs", cluster=t.name)
    return passed(GROUP, name, f"{holder} (holds the Lease, reports active)", cluster=t.name)


def run(t: Target) -> list[Check]:
    return [*components(t), versions_check(t), dns_service_check(t), gateway_nodes_check(t),
            active_gateway_check(t)]
