"""What the two egress controllers share: a count of contiguous addresses per object.

ClusterGlobalEgressIP and GlobalEgressIP differ only in which objects are
valid (`check`) and where the count lives; allocation, the ZeroInput and
IPPoolAllocationFailed paths, and recovery when addresses free up are here.
"""

from __future__ import annotations

from globalnet.controllers import reasons as r
from globalnet.controllers.base import BaseController, by_age
from globalnet.ipam import PoolExhausted
from kube import objects as o
from kube.crud import ResourceClient
from kube.reconcile import Result
from kube.resources import Resource

# How long an object waiting for addresses sleeps between tries; a release in
# the pool wakes it sooner.
EXHAUSTED_RETRY = 30.0


class EgressAllocationController(BaseController):
    resource: Resource
    kind: str
    count_field: str
    default_count: int

    def register(self) -> None:
        self.informer = self.ctx.informers.get(self.resource)
        self.client = ResourceClient(self.ctx.api_client, self.resource)
        self.watch(self.informer)
        self.track_pool_failures()

    def owner(self, key: str) -> str:
        return r.owner_key(self.kind, key)

    def reserve(self) -> list[str]:
        return self.reserve_recorded(
            (self.owner(o.key(obj)), o.allocated_ips(obj))
            for obj in by_age(self.informer.list()) if self.check(obj) is None
        )

    def check(self, obj: o.JSON) -> tuple[str, str] | None:
        """(reason, message) when the object must not get addresses."""
        return None

    def reconcile(self, key: str) -> Result | bool | None:
        owner = self.owner(key)
        obj = self.live_or_release(self.informer, key, owner)
        if obj is None:
            return None
        refused = self.check(obj)
        if refused:
            self.record_status(self.client, obj, changes={"allocatedIPs": None},
                               condition=(r.ALLOCATED, False, *refused))
            return None
        count = o.spec(obj).get(self.count_field, self.default_count)
        if not isinstance(count, int) or count < 0:
            self.record_status(self.client, obj, changes={}, condition=(
                r.ALLOCATED, False, r.INVALID_INPUT,
                f"{self.count_field} must be a non-negative integer, got {count!r}"))
            return None
        if count == 0:
            self.release(owner, key)
            self.record_status(self.client, obj, changes={"allocatedIPs": []}, condition=(
                r.ALLOCATED, False, r.ZERO_INPUT,
                f"{self.count_field} is 0: no global IPs allocated"))
            return None
        try:
            ips = self.ctx.pool.ensure(owner, count)
        except PoolExhausted as exc:
            self.failed.add(key)
            self.record_status(self.client, obj, changes={"allocatedIPs": []}, condition=(
                r.ALLOCATED, False, r.IP_POOL_ALLOCATION_FAILED, str(exc)))
            self.ctx.on_change()
            return Result(requeue_after=EXHAUSTED_RETRY)
        self.failed.discard(key)
        condition = self.allocation_condition(obj, owner, o.allocated_ips(obj), ips,
                                              f"Allocated {count} global IP(s)")
        self.record_status(self.client, obj, changes={"allocatedIPs": list(ips)},
                           condition=condition)
        self.ctx.on_change()
        return None
