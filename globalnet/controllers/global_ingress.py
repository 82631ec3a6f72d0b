"""GlobalIngressIP: one global address per object, kept for the object's life.

The objects themselves are created and deleted by `service_export.py`; this
controller only allocates (status.allocatedIP) and releases.
"""

from __future__ import annotations

from globalnet.controllers import reasons as r
from globalnet.controllers.base import BaseController, by_age
from globalnet.controllers.egress import EXHAUSTED_RETRY
from globalnet.ipam import PoolExhausted
from kube import names, resources
from kube import objects as o
from kube.crud import ResourceClient
from kube.reconcile import Result

VALID_TARGETS = (names.TARGET_CLUSTER_IP_SERVICE, names.TARGET_HEADLESS_POD,
                 names.TARGET_HEADLESS_ENDPOINTS)


class GlobalIngressController(BaseController):
    # Each key costs one or two API writes: several workers keep the API server busy.
    workers = 4
    name = "global-ingress-ip"

    def register(self) -> None:
        self.informer = self.ctx.informers.get(resources.GLOBAL_INGRESS_IPS)
        self.client = ResourceClient(self.ctx.api_client, resources.GLOBAL_INGRESS_IPS)
        self.watch(self.informer)
        self.track_pool_failures()

    @staticmethod
    def owner(key: str) -> str:
        return r.owner_key(r.KIND_INGRESS, key)

    def reserve(self) -> list[str]:
        return self.reserve_recorded(
            (self.owner(o.key(obj)), [ip] if (ip := o.allocated_ip(obj)) else [])
            for obj in by_age(self.informer.list())
        )

    def reconcile(self, key: str) -> Result | bool | None:
        owner = self.owner(key)
        obj = self.live_or_release(self.informer, key, owner)
        if obj is None:
            return None
        target = o.spec(obj).get("target")
        if target not in VALID_TARGETS:
            self.record_status(self.client, obj, changes={}, condition=(
                r.ALLOCATED, False, r.INVALID_INPUT, f"unknown target {target!r}"))
            return None
        try:
            ips = self.ctx.pool.ensure(owner, 1)
        except PoolExhausted as exc:
            self.failed.add(key)
            self.record_status(self.client, obj, changes={"allocatedIP": None}, condition=(
                r.ALLOCATED, False, r.IP_POOL_ALLOCATION_FAILED, str(exc)))
            return Result(requeue_after=EXHAUSTED_RETRY)
        self.failed.discard(key)
        recorded = [ip] if (ip := o.allocated_ip(obj)) else []
        condition = self.allocation_condition(obj, owner, recorded, ips,
                                              f"Allocated global IP {ips[0]}")
        self.record_status(self.client, obj, changes={"allocatedIP": ips[0]},
                           condition=condition)
        self.ctx.on_change()
        return None
