"""What every Globalnet controller shares: informers, a work queue, status writes.

A controller registers event handlers that turn object events into keys, and
implements `reconcile(key)`. Keys are processed by the controller's worker
threads; the queue never hands one key to two workers at once, and the pool is
shared and thread-safe. Status is written with the
object's resourceVersion, so a stale write fails with 409 and is retried from
the informer's newer copy instead of overwriting someone else's change.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from globalnet import metrics
from globalnet.allocator import OwnedPool
from globalnet.controllers.reasons import ALLOCATED, CONFLICTING_ALLOCATION, SUCCESS
from kube import conditions, errors
from kube import objects as o
from kube.crud import ResourceClient
from kube.informer import Informer
from kube.informers import InformerSet
from kube.reconcile import Result, Workers, run_workers
from kube.workqueue import WorkQueue

log = logging.getLogger(__name__)

JSON = o.JSON
MAX_REQUEUES = 20
NOT_LEADING_RETRY = 0.5


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


class BaseController:
    """One kind of object, one queue, `workers` threads (a key is never processed
    by two at once: the queue guarantees it)."""

    name = "base"
    workers = 1

    def __init__(self, ctx: ControllerContext) -> None:
        self.ctx = ctx
        self.queue: WorkQueue[str] = WorkQueue(name=self.name)
        self._workers: Workers[str] | None = None
        # Keys that could not get addresses: retried as soon as any are released.
        self.failed: set[str] = set()

    # --- wiring --------------------------------------------------------------------
    def register(self) -> None:
        """Add informer handlers; called before the informers start."""

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

    def start(self) -> None:
        self._workers = run_workers(
            self.queue, self._reconcile_counted, workers=self.workers,
            max_requeues=self.ctx.max_requeues, name=self.name,
        )

    def stop(self) -> None:
        if self._workers:
            self._workers.stop()

    def enqueue(self, key: str) -> None:
        self.queue.add(key)

    def resync_all(self) -> None:
        """Queue every object this controller owns (start of a term)."""
        informer = getattr(self, "informer", None)
        if informer is not None:
            for obj in informer.list():
                self.enqueue(o.key(obj))

    def watch(self, informer: Informer, to_keys: Callable[[JSON], list[str]] | None = None,
              *, affects_intent: bool = True) -> None:
        """Enqueue the keys an object maps to on every event."""
        keys = to_keys or (lambda obj: [o.key(obj)])

        def on_event(obj: JSON) -> None:
            for k in keys(obj):
                self.enqueue(k)
            if affects_intent:
                self.ctx.on_change()

        def on_update(old: JSON, new: JSON) -> None:
            on_event(old)
            on_event(new)

        informer.add_handler(on_add=on_event, on_update=on_update, on_delete=on_event)

    # --- reconcile ----------------------------------------------------------------------
    def reconcile(self, key: str) -> Result | bool | None:
        raise NotImplementedError

    def _reconcile_counted(self, key: str) -> Result | bool | None:
        if not self.ctx.is_leading():
            # Not sure we lead (a renewal is late): write nothing now, but keep the
            # key. Dropping it would lose the change if the renewal then succeeds;
            # if leadership is really lost, the term stops and the queue with it.
            return Result(requeue_after=NOT_LEADING_RETRY)
        try:
            return self.reconcile(key)
        except Exception as exc:
            metrics.RECONCILE_ERRORS.labels(cluster=self.ctx.cluster_id,
                                            controller=self.name).inc()
            if errors.is_conflict(exc) or errors.is_not_found(exc):
                log.debug("%s %s: %s; retrying from a fresher copy", self.name, key, exc)
            else:
                log.warning("%s %s: %s", self.name, key, exc)
            raise

    # --- status -------------------------------------------------------------------------
    def allocation_condition(
        self, obj: JSON, owner: str, recorded: list[str], ips: tuple[str, ...], what: str
    ) -> tuple[str, bool, str, str]:
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
    def write_status(
        client: ResourceClient, obj: JSON, *, changes: dict[str, Any],
        condition: tuple[str, bool, str, str] | None = None,
    ) -> bool:
        """Apply `changes` and one condition to obj's status; write only if different."""
        updated = copy.deepcopy(obj)
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
        if status == before:
            return False
        client.update_status(updated)
        return True
