"""`diagnose service-discovery`: each export followed along the chain Lighthouse
builds, and DNS forwarding for `clusterset.local`.

For a ServiceExport in cluster X: its Valid/Ready conditions (the exporter's); under
Globalnet, the GlobalIngressIP named like a ClusterIP Service, allocated; X's
EndpointSlice on the Broker (in X's member namespace); then in every cluster
diagnosed (X too: every importer imports its own exports) the EndpointSlice copy
from X and the aggregated ServiceImport naming X. A missing ServiceImport is the
FAIL users meet as "NXDOMAIN". DNS: the Lighthouse DNS server answering from inside
the cluster when the nodes can be reached (the lab), else the CoreDNS Corefile
forwarding the zone to the Lighthouse DNS Service (deploy/coredns).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

from deploy import manifests
from globalnet.controllers import reasons as gr
from kube import conditions, discovery, errors, names, resources
from kube import objects as o
from kube.crud import ResourceClient
from kube.resources import Resource
from lighthouse.agent import reasons as lr
from lighthouse.agent.render import import_status
from ops import inventory
from ops.broker import BrokerConnection
from ops.diagnose.model import Check, failed, passed, warned
from ops.diagnose.target import NotChecked, Target

JSON = dict[str, Any]
GROUP = "service-discovery"
ZONE = "clusterset.local"
COREDNS_NAMESPACE, COREDNS_CONFIGMAP = "kube-system", "coredns"
_FORWARD = re.compile(r"(?ms)^\s*" + re.escape(ZONE) + r"\.?(?::53)?\s*\{(?P<body>[^}]*)\}")


@functools.lru_cache(maxsize=16)
def _slice_resource(api: Any) -> Resource:
    """EndpointSlice at the version `api` serves, asked once per client (per command)."""
    return discovery.endpointslices(api)


def _slices(t: Target) -> list[JSON]:
    return t.state.read_list(_slice_resource(t.state.api),
                             label_selector=names.LIGHTHOUSE_SELECTOR)


def _from(slices: list[JSON], *, cluster: str, namespace: str, name: str) -> list[JSON]:
    return [s for s in slices
            if o.labels(s).get(names.SOURCE_CLUSTER_LABEL) == cluster
            and o.labels(s).get(names.SERVICE_NAME_LABEL) == name
            and o.labels(s).get(names.SOURCE_NAMESPACE_LABEL) == namespace]


def _condition_line(obj: JSON, ctype: str) -> tuple[str, str]:
    """(status, "reason: message") of a condition; status "" when absent."""
    cond = conditions.get_condition(o.status(obj).get("conditions"), ctype) or {}
    why = f"{cond.get('reason') or '-'}: {cond.get('message') or ''}"
    return str(cond.get("status") or ""), why


def export_checks(x: Target, export: JSON, every: Sequence[Target],
                  broker: BrokerConnection | None) -> list[Check]:
    ns, name = o.namespace(export), o.name(export)
    svc = f"{ns}/{name}"
    x_id = x.state.local_cluster_id() or x.name
    out: list[Check] = []
    valid, valid_why = _condition_line(export, lr.VALID)
    ready, ready_why = _condition_line(export, lr.READY)
    if valid == "False" or ready == "False":
        why = valid_why if valid == "False" else ready_why
        out.append(failed(GROUP, f"ServiceExport {svc}", f"not exported: {why}",
                          f"kubectl -n {ns} get serviceexport {name} -o yaml", cluster=x.name))
    elif valid == ready == "True":
        out.append(passed(GROUP, f"ServiceExport {svc}", "Valid and Ready (exported)",
                          cluster=x.name))
    else:
        out.append(warned(GROUP, f"ServiceExport {svc}", "no Valid/Ready conditions: the "
                          "Lighthouse agent has not processed it", "is the Lighthouse agent "
                          "running? (`gnctl diagnose deployment`)", cluster=x.name))
    out += _ingress_ip_check(x, ns, name)
    out.append(_broker_slice_check(x, x_id, ns, name, broker))
    for y in every:
        out += _import_checks(y, x_id, ns, name)
    return out


def _ingress_ip_check(x: Target, ns: str, name: str) -> list[Check]:
    service = x.state.read_one(resources.SERVICES, name, namespace=ns)
    if service is None or o.is_headless(service) or not inventory_enabled(x):
        return []  # no Service: said above; headless: one per backend pod
    what = f"GlobalIngressIP {ns}/{name}"
    giip = next((g for g in x.state.ingress_ips()
                 if o.namespace(g) == ns and o.name(g) == name), None)
    if giip is None:
        return [failed(GROUP, what, "missing: the service has no global IP",
                       "is the Globalnet agent running? (`gnctl diagnose deployment`)",
                       cluster=x.name)]
    status, why = _condition_line(giip, gr.ALLOCATED)
    if status != "True" or not o.allocated_ip(giip):
        return [failed(GROUP, what, f"not allocated ({why})",
                       "`gnctl diagnose globalnet` tells why", cluster=x.name)]
    return [passed(GROUP, what, f"allocated {o.allocated_ip(giip)}", cluster=x.name)]


def inventory_enabled(t: Target) -> bool:
    return bool(inventory.global_cidrs_of(t.state))


def _broker_slice_check(x: Target, x_id: str, ns: str, name: str,
                        broker: BrokerConnection | None) -> Check:
    what = f"Broker EndpointSlice of {ns}/{name}"
    if broker is None:
        return warned(GROUP, what, "not checked: the Broker is not reachable from here",
                      "name it with --broker-kubeconfig", cluster=x.name)
    member = names.broker_member_namespace(x_id, broker.namespace or names.BROKER_NAMESPACE)
    try:
        found = ResourceClient(broker.api, _slice_resource(broker.api)).list(
            namespace=member, label_selector=names.LIGHTHOUSE_SELECTOR).items
    except Exception as exc:
        if not (errors.is_forbidden(exc) or errors.is_connection_error(exc)):
            raise
        return warned(GROUP, what, f"not checked: the Broker at {broker.server} did not let "
                      f"us read {member}", cluster=x.name)
    if not _from(found, cluster=x_id, namespace=ns, name=name):
        return failed(GROUP, what, f"none in {member} on the Broker: the export was not "
                      "published", "check the Lighthouse agent's logs (the Broker refused?)",
                      cluster=x.name)
    return passed(GROUP, what, f"published in {member}", cluster=x.name)


def _import_checks(y: Target, x_id: str, ns: str, name: str) -> list[Check]:
    svc = f"{ns}/{name}"
    if y.state.read_one(resources.NAMESPACES, ns) is None:
        return [warned(GROUP, f"ServiceImport {svc} in {y.name}", f"namespace {ns} does not "
                       f"exist in {y.name}: nothing is imported there",
                       f"create namespace {ns} there to consume the service", cluster=y.name)]
    out: list[Check] = []
    if not _from(_slices(y), cluster=x_id, namespace=ns, name=name):
        out.append(failed(GROUP, f"EndpointSlice of {svc} from {x_id} in {y.name}",
                          "not imported", "is the Lighthouse agent running there?",
                          cluster=y.name))
    imported = next((i for i in y.state.read_list(resources.SERVICE_IMPORTS, namespace=ns)
                     if o.name(i) == name), None)
    what = f"ServiceImport {svc} in {y.name}"
    if imported is None:
        out.append(failed(GROUP, what, f"missing: {name}.{ns}.svc.{ZONE} does not resolve "
                          f"in {y.name}", f"is the Lighthouse agent of {y.name} running? "
                          "(`gnctl diagnose deployment`)", cluster=y.name))
    elif x_id not in import_status(imported):
        out.append(failed(GROUP, what, f"does not list cluster {x_id} (lists "
                          f"{', '.join(import_status(imported)) or 'none'})",
                          "check the Lighthouse agent's logs", cluster=y.name))
    else:
        listed = f"lists {', '.join(import_status(imported))}"
        ready, why = _condition_line(imported, lr.READY)
        if ready == "False":  # listed, but the name resolves to nothing that works
            out.append(warned(GROUP, what, f"{listed} but is not Ready ({why})",
                              "the exporting clusters have no ready endpoint: check their "
                              "pods", cluster=y.name))
        else:
            out.append(passed(GROUP, what, listed, cluster=y.name))
    return out


def dns_check(t: Target) -> Check:
    what = f"DNS forwarding of {ZONE}"
    try:
        answers = t.access.dns_answers()
    except NotChecked:
        return _coredns_check(t)
    if answers:
        return passed(GROUP, what, f"the Lighthouse DNS server answers ({t.access.how})",
                      cluster=t.name)
    return failed(GROUP, what, f"the Lighthouse DNS server does not answer ({t.access.how})",
                  f"check Deployment {manifests.LIGHTHOUSE_DEPLOYMENT} and Service "
                  f"{manifests.LIGHTHOUSE_DNS_SERVICE}", cluster=t.name)


def forward_targets(corefile: str) -> list[str] | None:
    """The `forward . IP...` targets of the clusterset.local server block; None: no block."""
    match = _FORWARD.search(corefile)
    if match is None:
        return None
    for line in match.group("body").splitlines():
        words = line.split()
        if len(words) >= 3 and words[0] == "forward" and words[1] == ".":
            return [w.split(":")[0] for w in words[2:]]
    return []


def _coredns_check(t: Target) -> Check:
    what = f"DNS forwarding of {ZONE}"
    cm = t.state.read_one(resources.CONFIGMAPS, COREDNS_CONFIGMAP, namespace=COREDNS_NAMESPACE)
    if cm is None:
        return warned(GROUP, what, f"not checked: no ConfigMap {COREDNS_NAMESPACE}/"
                      f"{COREDNS_CONFIGMAP} (another cluster DNS?)",
                      f"make the cluster DNS forward {ZONE} to Service "
                      f"{manifests.LIGHTHOUSE_DNS_SERVICE}", cluster=t.name)
    targets = forward_targets(str((cm.get("data") or {}).get("Corefile") or ""))
    service = t.state.read_one(resources.SERVICES, manifests.LIGHTHOUSE_DNS_SERVICE,
                               namespace=t.state.namespace)
    ip = o.cluster_ip(service) if service else None
    hint = f"deploy/coredns/add-clusterset-forward.sh {ip or 'LIGHTHOUSE_DNS_IP'}"
    if not targets:
        return failed(GROUP, what, f"CoreDNS does not forward {ZONE}", hint, cluster=t.name)
    if ip and ip not in targets:
        return failed(GROUP, what, f"CoreDNS forwards {ZONE} to {', '.join(targets)}, not to "
                      f"the Lighthouse DNS Service {ip}", hint, cluster=t.name)
    return passed(GROUP, what, f"CoreDNS forwards {ZONE} to {', '.join(targets)}",
                  cluster=t.name)


def run(t: Target, every: Sequence[Target], broker: BrokerConnection | None) -> list[Check]:
    exports = t.state.read_list(resources.SERVICE_EXPORTS)
    out: list[Check] = [dns_check(t)]
    for export in sorted(exports, key=o.key):
        out += export_checks(t, export, every, broker)
    if not exports:
        out.append(passed(GROUP, "ServiceExports", "none in this cluster: nothing to follow",
                          cluster=t.name))
    return out
