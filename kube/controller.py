"""One base for the work-queue controllers of Globalnet, Lighthouse and the gateway.

A controller turns informer events into keys (``watch(informer, to_keys)``) and
implements ``reconcile(key)``, which brings one key to its desired state and returns
``Result | bool | None`` (``kube.reconcile``). ``workers`` threads take keys from one
``WorkQueue``, which never hands a key to two of them at once. Subclasses add only
what is theirs (an IP pool, create-or-update of published objects, mirroring).

Rules every controller gets from here:

* **Leader term** (optional ``is_leading``), checked before each reconcile. While it
  says no - a renewal is late - nothing is written and the key comes back after
  ``NOT_LEADING_RETRY``: dropping it would lose the change if the renewal then
  succeeds, and if leadership is really lost the owner stops the controller.
* **Failures** go back to the queue with the key's backoff. A conflict or a
  not-found is expected (the cache lags behind the server) and logged at debug.
  Every failure counts in ``globalnet_reconcile_errors_total{controller}``
  (``kube.metrics``), here and nowhere else.
* **Status writes** have one conflict policy, ``write_status``: start from the cached
  copy, write only a change, and on 409 re-read the object and apply the change again,
  at most ``WRITE_ATTEMPTS`` times; an object that is gone has no status to
  write. Deletes go through ``ResourceClient.delete_if_exists`` (gone is fine).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable
from typing import Self

from kube import errors, metrics
from kube import objects as o
from kube.crud import ResourceClient
from kube.informer import Cache
from kube.reconcile import Result, Workers, run_workers
from kube.workqueue import WorkQueue

log = logging.getLogger(__name__)

JSON = o.JSON
KeysOf = Callable[[JSON], Iterable[str | None]]
"""The work keys an object's event concerns (None and "" are skipped)."""

DEFAULT_MAX_REQUEUES = 20
# How soon a key is tried again while leadership is uncertain.
NOT_LEADING_RETRY = 0.5
# Attempts at a write that keeps meeting 409 (usually our own cache lagging
# behind our previous write) before the key is handed back to the queue.
WRITE_ATTEMPTS = 4


class Controller:
    """One kind of work: a queue of string keys, ``workers`` threads, ``reconcile``."""

    name = "controller"
    workers = 1

    def __init__(
        self,
        *,
        is_leading: Callable[[], bool] | None = None,
        max_requeues: int | None = DEFAULT_MAX_REQUEUES,
    ) -> None:
        self.queue: WorkQueue[str] = WorkQueue(name=self.name)
        metrics.RECONCILE_ERRORS.labels(controller=self.name)  # exported from 0 on
        self.is_leading = is_leading
        self.max_requeues = max_requeues
        self._workers: Workers[str] | None = None

    # --- what subclasses implement ---------------------------------------------------------
    def register(self) -> None:
        """Create informers, indexes and handlers; called before the informers start."""

    def resync_all(self) -> None:
        """Queue every key this controller may own (start-up, once the caches synced)."""

    def reconcile(self, key: str) -> Result | bool | None:
        raise NotImplementedError

    def reconcile_failed(self, key: str, exc: Exception) -> None:
        """Told of every reconcile that raised, before the key is retried."""

    # --- wiring ------------------------------------------------------------------------------
    def enqueue(self, key: str | None) -> None:
        if key:
            self.queue.add(key)

    def watch(
        self,
        informer: Cache,
        to_keys: KeysOf | None = None,
        *,
        notify: Callable[[], None] | None = None,
    ) -> None:
        """Queue the keys an object maps to (default: its own) on every event of
        ``informer``; then call ``notify``, if given (state derived from the caches)."""
        keys = to_keys or (lambda obj: [o.key(obj)])

        def on_event(obj: JSON) -> None:
            for key in keys(obj):
                self.enqueue(key)
            if notify is not None:
                notify()

        def on_update(old: JSON, new: JSON) -> None:
            if old is not new:
                on_event(old)
            on_event(new)

        informer.add_handler(on_add=on_event, on_update=on_update, on_delete=on_event)

    def start(self) -> Self:
        """Start the workers (once the caches synced and ``resync_all`` queued the keys)."""
        self._workers = run_workers(self.queue, self.process, workers=self.workers,
                                    max_requeues=self.max_requeues, name=self.name)
        return self

    def stop(self) -> None:
        """Take no new keys; wait for the workers to finish the ones they hold."""
        self.queue.shutdown()
        if self._workers is not None:
            self._workers.stop()

    def process(self, key: str) -> Result | bool | None:
        """One reconcile as the workers run it: leader check, then failure logging."""
        if self.is_leading is not None and not self.is_leading():
            return Result(requeue_after=NOT_LEADING_RETRY)
        try:
            return self.reconcile(key)
        except Exception as exc:
            metrics.RECONCILE_ERRORS.labels(controller=self.name).inc()
            self.reconcile_failed(key, exc)
            if errors.is_conflict(exc) or errors.is_not_found(exc):
                log.debug("%s %s: %s; retrying from a fresher copy", self.name, key, exc)
            else:
                log.warning("%s %s: %s", self.name, key, exc)
            raise


# --- writes ----------------------------------------------------------------------------------

def write_status(client: ResourceClient, obj: JSON, mutate: Callable[[JSON], bool]) -> bool:
    """Change ``obj``'s status with ``mutate`` (which says whether it changed anything);
    write it if so. Returns whether anything was written (``write_changed`` to the
    status subresource)."""
    return write_changed(client, obj, mutate, client.update_status)


def write_changed(client: ResourceClient, obj: JSON, mutate: Callable[[JSON], bool],
                  write: Callable[[JSON], object]) -> bool:
    """Change ``obj`` with ``mutate`` (which says whether it changed anything) and
    ``write`` it if so (``client.update``, ``client.update_status``). Returns whether
    anything was written.

    Starts from ``obj``, the cached copy. A 409 (the cache lags behind the server,
    usually behind our own last write) re-reads the object and applies ``mutate`` to the
    fresh copy, so a write never waits for a queue backoff; after
    ``WRITE_ATTEMPTS`` conflicts the key goes back to the queue (RuntimeError). An
    object that is gone (404, on the write or the re-read) has nothing to write.
    """
    current: JSON | None = obj
    for _ in range(WRITE_ATTEMPTS):
        if current is None:
            return False
        updated = copy.deepcopy(current)
        if not mutate(updated):
            return False
        try:
            write(updated)
            return True
        except Exception as exc:
            if errors.is_not_found(exc):
                return False
            if not errors.is_conflict(exc):
                raise
        current = client.get_or_none(o.name(obj), namespace=o.namespace(obj) or None)
    raise RuntimeError(f"{client.resource.kind} {o.key(obj)} kept changing under us")
