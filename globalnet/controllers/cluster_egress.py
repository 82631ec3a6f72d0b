"""ClusterGlobalEgressIP: the cluster-wide egress addresses.

Only `cluster-egress.submariner.io` is honoured (others get InvalidInstance);
it is created with 8 addresses when missing; a new `numGlobalIPs` reallocates;
0 releases everything (ZeroInput).
"""

from __future__ import annotations

from globalnet.controllers import objects as o
from globalnet.controllers import reasons as r
from globalnet.controllers.base import BaseController
from globalnet.ipam import PoolExhausted
from kube import errors, resources
from kube.crud import ResourceClient
from kube.reconcile import Result


class ClusterEgressController(BaseController):
    name = "cluster-global-egress-ip"

    def register(self) -> None:
        self.informer = self.ctx.informers.get(resources.CLUSTER_GLOBAL_EGRESS_IPS)
        self.client = ResourceClient(self.ctx.api_client, resources.CLUSTER_GLOBAL_EGRESS_IPS)
        self.watch(self.informer)
        self._failed: set[str] = set()
        self.ctx.pool.on_release.append(self._retry_failed)

    def _retry_failed(self) -> None:
        for key in list(self._failed):
            self.enqueue(key)

    @staticmethod
    def owner(name: str) -> str:
        return r.owner_key(r.KIND_CLUSTER_EGRESS, name)

    def reserve(self) -> list[str]:
        conflicts = []
        for obj in sorted(self.informer.list(), key=_age):
            if o.name(obj) != r.CLUSTER_EGRESS_NAME:
                continue
            reason = self.ctx.pool.reserve_recorded(self.owner(o.name(obj)), o.allocated_ips(obj))
            if reason:
                conflicts.append(f"{self.owner(o.name(obj))}: {reason}")
                self.ctx.extra.setdefault("conflicts", {})[self.owner(o.name(obj))] = reason
        return conflicts

    def ensure_default(self) -> None:
        """Create the cluster's egress object if nobody did (as upstream does at start)."""
        if self.informer.get(r.CLUSTER_EGRESS_NAME) is not None:
            return
        try:
            self.client.create({
                "metadata": {"name": r.CLUSTER_EGRESS_NAME},
                "spec": {"numGlobalIPs": r.DEFAULT_CLUSTER_EGRESS_IPS},
            })
        except Exception as exc:
            if not errors.is_already_exists(exc):
                raise

    def reconcile(self, key: str) -> Result | bool | None:
        obj = self.informer.get(key)
        owner = self.owner(key)
        if obj is None or o.is_deleting(obj):
            self.ctx.pool.release(owner)
            self._failed.discard(key)
            self.ctx.on_change()
            return None
        if key != r.CLUSTER_EGRESS_NAME:
            self.write_status(self.client, obj, changes={"allocatedIPs": None}, condition=(
                r.ALLOCATED, False, r.INVALID_INSTANCE,
                f"Only the ClusterGlobalEgressIP instance named {r.CLUSTER_EGRESS_NAME} "
                "is supported",
            ))
            return None
        count = o.spec(obj).get("numGlobalIPs", r.DEFAULT_CLUSTER_EGRESS_IPS)
        if not isinstance(count, int) or count < 0:
            self.write_status(self.client, obj, changes={}, condition=(
                r.ALLOCATED, False, r.INVALID_INPUT,
                f"numGlobalIPs must be a non-negative integer, got {count!r}",
            ))
            return None
        if count == 0:
            self.ctx.pool.release(owner)
            self._failed.discard(key)
            self.write_status(self.client, obj, changes={"allocatedIPs": []}, condition=(
                r.ALLOCATED, False, r.ZERO_INPUT, "numGlobalIPs is 0: no global IPs allocated",
            ))
            self.ctx.on_change()
            return None
        try:
            ips = self.ctx.pool.ensure(owner, count)
        except PoolExhausted as exc:
            self._failed.add(key)
            self.write_status(self.client, obj, changes={"allocatedIPs": []}, condition=(
                r.ALLOCATED, False, r.IP_POOL_ALLOCATION_FAILED, str(exc),
            ))
            self.ctx.on_change()
            return Result(requeue_after=30.0)
        self._failed.discard(key)
        condition = self.allocation_condition(obj, owner, o.allocated_ips(obj), ips,
                                              f"Allocated {count} global IP(s)")
        self.write_status(self.client, obj, changes={"allocatedIPs": list(ips)},
                          condition=condition)
        self.ctx.on_change()
        return None


def _age(obj: o.JSON) -> tuple[str, str]:
    """Older objects keep their addresses when two records collide."""
    return (str(o.meta(obj).get("creationTimestamp", "")), o.key(obj))
