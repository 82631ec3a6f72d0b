"""What every Globalnet controller adds to `kube.controller`: the term's shared pool.

Queue, workers, the leader-term check and the status-write conflict policy are
`kube.controller`'s. Here: the context one leadership term shares (pool, informers,
the intent's change signal), reservation of recorded allocations at start, release
and retry when addresses free up, and the Allocated condition that says when a
conflicting record was replaced. Status is written with the object's
resourceVersion, so a stale write never overwrites someone else's change: it is
re-read and the same change applied again.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from globalnet.allocator import OwnedPool
from globalnet.controllers.reasons import ALLOCATED, CONFLICTING_ALLOCATION, SUCCESS
from kube import conditions, controller, errors
from kube import objects as o
from kube.crud import ResourceClient
from kube.informer import Cache, Informer
from kube.informers import InformerSet

JSON = o.JSON
MAX_REQUEUES = controller.DEFAULT_MAX_REQUEUES
# A condition to set: (type, status, reason, message).
Condition = tuple[str, bool, str, str]


def by_age(objs: list[JSON]) -> list[JSON]:
    """Oldest first: when two records claim one address, the older keeps it."""
    return sorted(objs, key=lambda x: (str(o.meta(x).get("creationTimestamp", "")), o.key(x)))


@dataclass
class ControllerContext:
    """What controllers of one cluster share."""

    api_client: Any
    cluster_id: str
    pool: OwnedPool
    informers: InformerSet
    # Called on every event that may change the NAT intent.
    on_change: Callable[[], None] = lambda: None
    # Checked before each reconcile: a term that just lost leadership writes nothing.
    is_leading: Callable[[], bool] = lambda: True
    max_requeues: int = MAX_REQUEUES
    extra: dict[str, Any] = field(default_factory=dict)


class BaseController(controller.Controller):
    """One kind of object of one leadership term; writes nothing while the term's
    leadership is uncertain (`ControllerContext.is_leading`)."""

    name = "base"

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(is_leading=ctx.is_leading, max_requeues=ctx.max_requeues)
        self.ctx = ctx
        # Keys that could not get addresses: retried as soon as any are released.
        self.failed: set[str] = set()

    # --- wiring --------------------------------------------------------------------
    def reserve(self) -> list[str]:
        """Take back recorded allocations; called after sync, before any worker runs.

        Returns the conflicts found (records refused for their owner)."""
        return []

    def reserve_recorded(self, records: Iterable[tuple[str, list[str]]]) -> list[str]:
        """Reserve (owner, addresses) pairs in order; refused ones are remembered so
        the owner's next reconcile reallocates and says why."""
        conflicts = []
        for owner, ips in records:
            reason = self.ctx.pool.reserve_recorded(owner, ips)
            if reason:
                conflicts.append(f"{owner}: {reason}")
                self.ctx.extra.setdefault("conflicts", {})[owner] = reason
        return conflicts

    def track_pool_failures(self) -> None:
        self.ctx.pool.on_release.append(self._retry_failed)

    def _retry_failed(self) -> None:
        for key in list(self.failed):
            self.enqueue(key)

    def release(self, owner: str, key: str) -> None:
        """The object is gone or wants nothing: its addresses return to the pool."""
        self.ctx.pool.release(owner)
        self.failed.discard(key)
        self.ctx.on_change()

    def live_or_release(self, informer: Informer, key: str, owner: str) -> JSON | None:
        """The object behind `key`; None (`owner`'s addresses released) when it is
        gone or being deleted - the first step of an allocating reconcile."""
        obj = informer.get(key)
        if obj is None or o.is_deleting(obj):
            self.release(owner, key)
            return None
        return obj

    def resync_all(self) -> None:
        """Queue every object this controller owns (start of a term)."""
        informer = getattr(self, "informer", None)
        if informer is not None:
            for obj in informer.list():
                self.enqueue(o.key(obj))

    def watch(self, informer: Cache, to_keys: controller.KeysOf | None = None, *,
              notify: Callable[[], None] | None = None, affects_intent: bool = True) -> None:
        """Queue the keys an object maps to on every event; unless the events cannot
        change the NAT intent (``affects_intent=False``), mark the intent dirty too."""
        if notify is None and affects_intent:
            notify = self.ctx.on_change
        super().watch(informer, to_keys, notify=notify)

    # --- status -------------------------------------------------------------------------
    def allocation_condition(
        self, obj: JSON, owner: str, recorded: list[str], ips: tuple[str, ...], what: str
    ) -> Condition:
        """Allocated=True, saying so when a conflicting record was replaced.

        The conflict found at start-up stays in the condition for as long as the
        replacement addresses do, so later reconciles do not hide it.
        """
        conflict = self.ctx.extra.get("conflicts", {}).pop(owner, None)
        if conflict:
            return (ALLOCATED, True, CONFLICTING_ALLOCATION,
                    f"{what} (the recorded ones were refused: {conflict})")
        for cond in o.status(obj).get("conditions") or []:
            if (cond.get("type") == ALLOCATED and cond.get("reason") == CONFLICTING_ALLOCATION
                    and list(ips) == recorded):
                return (ALLOCATED, True, CONFLICTING_ALLOCATION, str(cond.get("message", "")))
        return (ALLOCATED, True, SUCCESS, what)

    # --- writes -------------------------------------------------------------------------
    @staticmethod
    def create_if_absent(client: ResourceClient, body: JSON) -> None:
        """Create; an existing object, or a namespace on its way out, is not an error."""
        try:
            client.create_if_absent(body)
        except Exception as exc:
            if not errors.is_namespace_terminating(exc):
                raise

    @staticmethod
    def record_status(
        client: ResourceClient, obj: JSON, *, changes: dict[str, Any],
        condition: Condition | None = None,
    ) -> bool:
        """Record `changes` (None removes a field) and one condition in obj's status;
        written only if that changes it (`kube.controller.write_status`)."""

        def mutate(updated: JSON) -> bool:
            status = updated.setdefault("status", {})
            before = copy.deepcopy(status)
            for k, v in changes.items():
                if v is None:
                    status.pop(k, None)
                else:
                    status[k] = v
            if condition:
                ctype, ok, reason, message = condition
                conds = status.setdefault("conditions", [])
                conditions.set_condition(conds, type=ctype, status=ok, reason=reason,
                                         message=message)
            return bool(status != before)

        return controller.write_status(client, obj, mutate)
