"""GlobalEgressIP: egress addresses for a namespace or for pods selected in it.

`numberOfIPs` (default 1) contiguous addresses; 0 releases them (ZeroInput).
`podSelector` is immutable as upstream: the first accepted selector is kept in
an annotation, a later edit is refused with `Updated=False` and the accepted
selector stays in force (also across restarts).
"""

from __future__ import annotations

from globalnet.controllers import objects as o
from globalnet.controllers import reasons as r
from globalnet.controllers.base import BaseController
from globalnet.controllers.cluster_egress import _age
from globalnet.ipam import PoolExhausted
from kube import resources
from kube.crud import ResourceClient
from kube.reconcile import Result


class GlobalEgressController(BaseController):
    name = "global-egress-ip"

    def register(self) -> None:
        self.informer = self.ctx.informers.get(resources.GLOBAL_EGRESS_IPS)
        self.client = ResourceClient(self.ctx.api_client, resources.GLOBAL_EGRESS_IPS)
        self.watch(self.informer)
        # Pod changes alter the group members in the intent, not allocations.
        pods = self.ctx.informers.get(resources.PODS)
        pods.add_handler(
            on_add=lambda _: self.ctx.on_change(),
            on_update=lambda _a, _b: self.ctx.on_change(),
            on_delete=lambda _: self.ctx.on_change(),
        )
        self._failed: set[str] = set()
        self.ctx.pool.on_release.append(lambda: [self.enqueue(k) for k in list(self._failed)])

    @staticmethod
    def owner(key: str) -> str:
        return r.owner_key(r.KIND_EGRESS, key)

    def reserve(self) -> list[str]:
        conflicts = []
        for obj in sorted(self.informer.list(), key=_age):
            owner = self.owner(o.key(obj))
            reason = self.ctx.pool.reserve_recorded(owner, o.allocated_ips(obj))
            if reason:
                conflicts.append(f"{owner}: {reason}")
                self.ctx.extra.setdefault("conflicts", {})[owner] = reason
        return conflicts

    def reconcile(self, key: str) -> Result | bool | None:
        obj = self.informer.get(key)
        owner = self.owner(key)
        if obj is None or o.is_deleting(obj):
            self.ctx.pool.release(owner)
            self._failed.discard(key)
            self.ctx.on_change()
            return None
        # A refused selector edit is reported; allocation carries on regardless.
        self._refuse_selector_change(obj)
        count = o.spec(obj).get("numberOfIPs", r.DEFAULT_EGRESS_IPS)
        if not isinstance(count, int) or count < 0:
            self.write_status(self.client, obj, changes={}, condition=(
                r.ALLOCATED, False, r.INVALID_INPUT,
                f"numberOfIPs must be a non-negative integer, got {count!r}",
            ))
            return None
        if count == 0:
            self.ctx.pool.release(owner)
            self._failed.discard(key)
            self.write_status(self.client, obj, changes={"allocatedIPs": []}, condition=(
                r.ALLOCATED, False, r.ZERO_INPUT, "numberOfIPs is 0: no global IPs allocated",
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

    def _refuse_selector_change(self, obj: o.JSON) -> bool:
        """Record the first selector; report (and ignore) any later change."""
        current = o.selector_fingerprint(o.spec(obj).get("podSelector"))
        accepted = o.annotations(obj).get(r.ACCEPTED_POD_SELECTOR_ANNOTATION)
        if accepted is None:
            self.client.patch(o.name(obj), {"metadata": {"annotations": {
                r.ACCEPTED_POD_SELECTOR_ANNOTATION: current}}}, namespace=o.namespace(obj))
            return False
        if accepted == current:
            if _condition_reason(obj, r.UPDATED) == r.POD_SELECTOR_UPDATE_NOT_SUPPORTED:
                self.write_status(self.client, obj, changes={}, condition=(
                    r.UPDATED, True, r.SUCCESS, "podSelector matches the accepted one again",
                ))
            return False
        self.write_status(self.client, obj, changes={}, condition=(
            r.UPDATED, False, r.POD_SELECTOR_UPDATE_NOT_SUPPORTED,
            "PodSelector field updates are not supported; still using the original selector "
            f"{accepted}",
        ))
        return True


def _condition_reason(obj: o.JSON, ctype: str) -> str | None:
    for c in o.status(obj).get("conditions") or []:
        if c.get("type") == ctype:
            return str(c.get("reason"))
    return None
