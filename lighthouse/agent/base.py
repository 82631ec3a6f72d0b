"""What the agent's controllers share: informer sets, indexes, a work-queue controller
and idempotent writes.

The pattern is Globalnet's (``globalnet/controllers/base.py``): informer handlers
turn events into keys, ``reconcile(key)`` brings one key to its desired state and
returns a ``kube.reconcile.Result``; the queue never hands one key to two workers.
Differences that matter here: the agent talks to two API servers (the cluster and
the Broker), so informers are grouped per server and may be namespace- and
label-scoped; and it owns no IP pool, so there is no leadership term to restart.

Writes are create-or-update against the informer's copy: an object is written only
when its canonical content differs, an update carries the cached resourceVersion
(a stale one fails with 409 and the key is retried from the fresher cache), and a
create that loses a race to an existing object turns into an update of it.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable

from kube import conditions, errors
from kube import objects as o
from kube.crud import ResourceClient
from kube.informer import Informer
from kube.reconcile import Result, Workers, run_workers
from kube.workqueue import WorkQueue
from lighthouse.agent.model import JSON
from lighthouse.agent.publication import ConditionState

log = logging.getLogger(__name__)

MAX_REQUEUES = 15
# Attempts at a write that keeps meeting 409 (our own cache lagging behind our
# previous write) before the key is handed back to the queue.
STATUS_WRITE_ATTEMPTS = 4


class Controller:
    """One work queue of string keys, ``workers`` threads, ``reconcile`` per key."""

    name = "controller"
    workers = 2

    def __init__(self) -> None:
        self.queue: WorkQueue[str] = WorkQueue(name=self.name)
        self._workers: Workers[str] | None = None

    def register(self) -> None:
        """Create informers, indexes and handlers; called before the informers start."""

    def resync_all(self) -> None:
        """Queue every key this controller may own (start-up, after the caches synced)."""

    def reconcile(self, key: str) -> Result | bool | None:
        raise NotImplementedError

    def enqueue(self, key: str | None) -> None:
        if key:
            self.queue.add(key)

    def watch(self, informer: Informer,
              to_keys: Callable[[JSON], Iterable[str | None]] | None = None) -> None:
        """Queue the keys an object maps to (default: its own) on every event."""
        keys = to_keys or (lambda obj: [o.key(obj)])

        def on_event(obj: JSON) -> None:
            for k in keys(obj):
                self.enqueue(k)

        def on_update(old: JSON, new: JSON) -> None:
            if old is not new:
                on_event(old)
            on_event(new)

        informer.add_handler(on_add=on_event, on_update=on_update, on_delete=on_event)

    def start(self) -> None:
        self._workers = run_workers(self.queue, self._reconcile_logged, workers=self.workers,
                                    max_requeues=MAX_REQUEUES, name=self.name)

    def stop(self) -> None:
        self.queue.shutdown()
        if self._workers is not None:
            self._workers.stop()

    def _reconcile_logged(self, key: str) -> Result | bool | None:
        try:
            return self.reconcile(key)
        except Exception as exc:
            if errors.is_conflict(exc) or errors.is_not_found(exc):
                log.debug("%s %s: %s; retrying from a fresher copy", self.name, key, exc)
            else:
                log.warning("%s %s: %s", self.name, key, exc)
            raise


# --- idempotent writes ---------------------------------------------------------------------

Content = Callable[[JSON], object]


def create_or_update(client: ResourceClient, desired: JSON, existing: JSON | None, *,
                     content: Content, fields: tuple[str, ...],
                     owned: Callable[[JSON], bool] = lambda obj: True) -> JSON | None:
    """Make the object ``desired``; return what was written, None if nothing had to be.

    ``existing`` is the cached copy (None: not in the cache). ``content`` gives the
    canonical form compared; ``fields`` are the top-level fields copied from
    ``desired`` on update (labels and our annotations always). A create that finds
    the object, or an update that meets 409 because the cache lags behind our own
    last write, re-reads it and goes on from the fresh copy. An object found under
    the same name that ``owned`` rejects (someone else's) is left alone.
    """
    meta = desired["metadata"]
    if existing is None:
        created = client.create_if_absent(desired)
        if created is not None:
            return created
        existing = client.get(meta["name"], namespace=meta.get("namespace"))
    for _ in range(STATUS_WRITE_ATTEMPTS):
        if not owned(existing):
            log.warning("%s %s/%s exists and is not ours: left alone", desired.get("kind"),
                        meta.get("namespace"), meta["name"])
            return None
        if content(existing) == content(desired):
            return None
        try:
            return client.update(_merged(existing, desired, fields))
        except Exception as exc:
            if not errors.is_conflict(exc):
                raise
        fresh = client.get_or_none(meta["name"], namespace=meta.get("namespace"))
        if fresh is None:
            return create_or_update(client, desired, None, content=content, fields=fields,
                                    owned=owned)
        existing = fresh
    raise RuntimeError(f"{desired.get('kind')} {meta.get('namespace')}/{meta['name']} kept "
                       "changing under us")


def _merged(existing: JSON, desired: JSON, fields: tuple[str, ...]) -> JSON:
    """``existing`` with ``desired``'s labels, our annotations and ``fields``."""
    body = copy.deepcopy(existing)
    meta = body.setdefault("metadata", {})
    meta["labels"] = dict(o.labels(desired))
    wanted_annotations = o.annotations_of(desired)
    if wanted_annotations:
        meta["annotations"] = {**o.annotations_of(existing), **wanted_annotations}
    for field in fields:
        if field in desired:
            body[field] = copy.deepcopy(desired[field])
        else:
            body.pop(field, None)
    return body


def delete_object(client: ResourceClient, obj: JSON) -> None:
    """Delete exactly this object (uid precondition); already gone is fine."""
    try:
        client.delete(o.name(obj), namespace=o.namespace(obj) or None,
                      uid=o.meta(obj).get("uid"))
    except Exception as exc:
        if not (errors.is_not_found(exc) or errors.is_conflict(exc)):
            raise


def write_status(client: ResourceClient, obj: JSON, mutate: Callable[[JSON], bool]) -> bool:
    """Change ``obj``'s status with ``mutate`` (returns whether it changed it); write if so.

    Starts from the cached copy; a 409 (the cache lags behind our own last write)
    re-reads the object and tries again, so status never waits for a queue backoff.
    Returns whether anything was written.
    """
    current: JSON | None = obj
    for _ in range(STATUS_WRITE_ATTEMPTS):
        if current is None:
            return False
        updated = copy.deepcopy(current)
        if not mutate(updated):
            return False
        try:
            client.update_status(updated)
            return True
        except Exception as exc:
            if errors.is_not_found(exc):
                return False
            if not errors.is_conflict(exc):
                raise
        current = client.get_or_none(o.name(obj), namespace=o.namespace(obj) or None)
    raise RuntimeError(f"status of {o.key(obj)} kept changing under us")


def write_conditions(client: ResourceClient, obj: JSON,
                     wanted: Iterable[tuple[str, ConditionState | None]]) -> bool:
    """Set conditions on ``obj``'s status (None entries are left alone); write if changed."""
    states = [(ctype, state) for ctype, state in wanted if state is not None]

    def mutate(updated: JSON) -> bool:
        conds = updated.setdefault("status", {}).setdefault("conditions", [])
        changed = False
        for ctype, state in states:
            changed |= conditions.set_condition(conds, type=ctype, status=state.status,
                                                reason=state.reason, message=state.message)
        return changed

    return write_status(client, obj, mutate)
