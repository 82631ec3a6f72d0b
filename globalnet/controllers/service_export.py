"""Exported services -> the GlobalIngressIP objects that should exist for them.

For an exported Service (a ServiceExport and the Service both exist):
* ClusterIP: one GlobalIngressIP named like the service, target ClusterIPService;
* headless with a selector: one per ready pod, `pod-<pod>`, target HeadlessServicePod;
* headless without a selector: one per endpoint address, target
  HeadlessServiceEndpoints, the address in an annotation.
Everything else the service's label points at is deleted, which is also how
stale GlobalIngressIPs left by a stopped controller are removed at start.
The address itself targets the ClusterIP directly: no internal Service and no
externalIPs are created (DESIGN.md §4.2).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from globalnet.controllers.base import BaseController
from kube import names, resources
from kube import objects as o
from kube.crud import ResourceClient
from kube.informers import Index
from kube.reconcile import Result


class ServiceExportController(BaseController):
    # Each key costs one or two API writes: several workers keep the API server busy.
    workers = 4
    name = "service-export-ingress"

    def register(self) -> None:
        inf = self.ctx.informers
        self.services = inf.get(resources.SERVICES)
        self.exports = inf.get(resources.SERVICE_EXPORTS)
        self.pods = inf.get(resources.PODS)
        self.endpoints = inf.get(resources.ENDPOINTS)
        self.ingress = inf.get(resources.GLOBAL_INGRESS_IPS)
        self.client = ResourceClient(self.ctx.api_client, resources.GLOBAL_INGRESS_IPS)
        # Indexes first: their handlers then run before the ones below queue a key,
        # so a reconcile always finds what the event brought. They make a reconcile
        # cost what its own service owns, not a scan of every object in the cluster.
        self.ingress_by_service = Index(self.ingress, o.ingress_service_keys)
        self.headless_by_ns = Index(self.services, self._headless_namespace)
        self.watch(self.services, affects_intent=True)
        self.watch(self.exports, affects_intent=False)
        self.watch(self.endpoints, affects_intent=False)
        self.watch(self.pods, self._services_selecting, affects_intent=False)
        self.watch(self.ingress, o.ingress_service_keys, affects_intent=False)

    @staticmethod
    def _headless_namespace(svc: o.JSON) -> list[str]:
        selects = o.is_headless(svc) and bool(o.service_selector(svc))
        return [o.namespace(svc)] if selects else []

    def _services_selecting(self, pod: o.JSON) -> list[str]:
        return [
            o.key(svc) for svc in self.headless_by_ns.objects(o.namespace(pod))
            if o.selector_matches({"matchLabels": o.service_selector(svc)}, o.labels(pod))
        ]

    def desired(self, key: str) -> dict[str, o.JSON]:
        """name -> GlobalIngressIP body for service `key`."""
        svc, export = self.services.get(key), self.exports.get(key)
        if svc is None or export is None or o.is_deleting(svc) or o.is_deleting(export):
            return {}
        ns, name = o.namespace(svc), o.name(svc)
        labels = {names.SERVICE_REF_LABEL: name,
                  names.MANAGED_BY_LABEL: names.MANAGED_BY_GLOBALNET}
        if o.service_type(svc) != "ClusterIP":
            return {}
        if not o.is_headless(svc):
            return {name: _giip(ns, name, labels, {
                "target": names.TARGET_CLUSTER_IP_SERVICE, "serviceRef": {"name": name}})}
        out: dict[str, o.JSON] = {}
        selector = o.service_selector(svc)
        if selector:
            for pod in self.pods.list():
                if (o.namespace(pod) == ns and o.pod_is_ready(pod) and o.pod_ip(pod)
                        and o.selector_matches({"matchLabels": selector}, o.labels(pod))):
                    gname = f"pod-{o.name(pod)}"
                    out[gname] = _giip(ns, gname, labels, {
                        "target": names.TARGET_HEADLESS_POD, "serviceRef": {"name": name},
                        "podRef": {"name": o.name(pod)}})
            return out
        ep = self.endpoints.get(key)
        for subset in (ep or {}).get("subsets") or []:
            for addr in subset.get("addresses") or []:
                ip = str(addr.get("ip", ""))
                try:
                    ipaddress.ip_address(ip)
                except ValueError:
                    continue
                gname = f"ep-{name}-{ip.replace('.', '-').replace(':', '-')}"[:253]
                body = _giip(ns, gname, labels, {
                    "target": names.TARGET_HEADLESS_ENDPOINTS, "serviceRef": {"name": name}})
                body["metadata"]["annotations"] = {names.HEADLESS_ENDPOINT_IP_ANNOTATION: ip}
                out[gname] = body
        return out

    def reconcile(self, key: str) -> Result | bool | None:
        want = self.desired(key)
        have = {o.name(g): g for g in self.ingress_by_service.objects(key)}
        for gname, body in want.items():
            existing = have.get(gname)
            if existing is None:
                self.create_if_absent(self.client, body)
            elif o.spec(existing) != body["spec"] or (
                o.annotations_of(existing).get(names.HEADLESS_ENDPOINT_IP_ANNOTATION)
                != o.annotations_of(body).get(names.HEADLESS_ENDPOINT_IP_ANNOTATION)
            ):
                # The target changed identity: a new object gets a clean allocation.
                self._delete(existing)
                return Result(requeue=True)
        for gname, existing in have.items():
            if gname not in want:
                self._delete(existing)
        return None

    def _delete(self, giip: o.JSON) -> None:
        self.client.delete_if_exists(o.name(giip), namespace=o.namespace(giip), uid=o.uid(giip))

    def resync_all(self) -> None:
        """Every service and every service a GlobalIngressIP points at (start-up)."""
        keys = {o.key(s) for s in self.services.list()}
        keys |= {o.key(e) for e in self.exports.list()}
        for g in self.ingress.list():
            keys.update(o.ingress_service_keys(g))
        for k in sorted(keys):
            self.enqueue(k)


def _giip(ns: str, name: str, labels: dict[str, str], spec: dict[str, Any]) -> o.JSON:
    return {"metadata": {"name": name, "namespace": ns, "labels": dict(labels)}, "spec": spec}
