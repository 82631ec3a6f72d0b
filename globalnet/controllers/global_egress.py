"""GlobalEgressIP: egress addresses for a namespace or for pods selected in it.

`numberOfIPs` (default 1) contiguous addresses; 0 releases them (ZeroInput).
`podSelector` is immutable as upstream: the first accepted selector is kept in
an annotation, a later edit is refused with `Updated=False` and the accepted
selector stays in force (also across restarts). Allocation carries on either way.
"""

from __future__ import annotations

from globalnet.controllers import reasons as r
from globalnet.controllers.egress import EgressAllocationController
from kube import names, resources
from kube import objects as o
from kube.reconcile import Result


class GlobalEgressController(EgressAllocationController):
    name = "global-egress-ip"
    resource = resources.GLOBAL_EGRESS_IPS
    kind = r.KIND_EGRESS
    count_field = "numberOfIPs"
    default_count = r.DEFAULT_EGRESS_IPS

    def register(self) -> None:
        super().register()
        # Pod changes alter the group members in the intent, not allocations.
        self.ctx.informers.get(resources.PODS).add_handler(
            on_add=self._pods_changed, on_update=self._pods_updated,
            on_delete=self._pods_changed,
        )

    def _pods_changed(self, _pod: o.JSON) -> None:
        self.ctx.on_change()

    def _pods_updated(self, _old: o.JSON, _new: o.JSON) -> None:
        self.ctx.on_change()

    def reconcile(self, key: str) -> Result | bool | None:
        obj = self.informer.get(key)
        if obj is not None and not o.is_deleting(obj):
            self._refuse_selector_change(obj)
        return super().reconcile(key)

    def _refuse_selector_change(self, obj: o.JSON) -> None:
        """Record the first selector; report (and ignore) any later change."""
        current = o.selector_fingerprint(o.spec(obj).get("podSelector"))
        accepted = o.annotations_of(obj).get(names.ACCEPTED_POD_SELECTOR_ANNOTATION)
        if accepted is None:
            self.client.patch(o.name(obj), {"metadata": {"annotations": {
                names.ACCEPTED_POD_SELECTOR_ANNOTATION: current}}}, namespace=o.namespace(obj))
        elif accepted != current:
            self.record_status(self.client, obj, changes={}, condition=(
                r.UPDATED, False, r.POD_SELECTOR_UPDATE_NOT_SUPPORTED,
                "PodSelector field updates are not supported; still using the original "
                f"selector {accepted}"))
        elif o.condition_reason(obj, r.UPDATED) == r.POD_SELECTOR_UPDATE_NOT_SUPPORTED:
            self.record_status(self.client, obj, changes={}, condition=(
                r.UPDATED, True, r.SUCCESS, "podSelector matches the accepted one again"))
