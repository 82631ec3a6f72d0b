"""One resource across a set of namespaces that changes at run time.

On the Broker every member publishes into a namespace of its own
(``names.broker_member_namespace``), and a member's identity may read only those
namespaces, never the resource cluster-wide. The readers (the Broker syncer, the
Lighthouse agent's Broker cache) still want one cache of every member's objects:
``MultiNamespaceInformer`` is that cache, with the interface of ``kube.informer.Cache``.

Which namespaces count comes from another informer (the Broker's ``Cluster``
objects) through ``namespace_of``; each namespace gets its own namespaced
``kube.informer.Informer`` underneath, with its guarantees (watch resumed from the
last resourceVersion, relist and diff on 410, resync). On top of them:

* When a namespace leaves the set, every object cached from it is reported deleted
  at once, whether or not the objects still exist (a cluster that left is dropped
  even while its agents still run); when one joins, its objects are reported added.
* Every handler runs on this informer's one dispatcher thread, in order, so
  handlers and ``kube.informers.Index`` see the namespaces' events one at a time.
  The cache (``get``/``list``) is what the handlers were told, updated just before
  each event is delivered; events an informer of a namespace that left the set still
  had in flight are dropped.
* ``wait_for_sync`` returns once the namespace source synced and every namespace it
  named then had its initial objects delivered.
"""

from __future__ import annotations

import builtins
import collections
import logging
import threading
from collections.abc import Callable
from typing import Any

from kube.informer import Informer, OnAdd, OnDelete, OnUpdate
from kube.resources import Resource
from kube.store import JSON, JSONList, Store, object_key

log = logging.getLogger(__name__)

NamespaceOf = Callable[[JSON], str | None]
"""The namespace an object of the source informer stands for (None: none)."""

# Items on the dispatch queue: ("namespaces",) recompute the set from the source;
# ("source-synced",); ("event", informer, kind, *objects) from one namespace's
# informer; ("synced", informer) after that informer's initial events.
_Item = tuple[Any, ...]


class MultiNamespaceInformer:
    """``resource`` in every namespace ``namespace_of`` gives for ``namespaces``' objects."""

    def __init__(
        self,
        api_client: Any,
        resource: Resource,
        *,
        namespaces: Informer,
        namespace_of: NamespaceOf,
        label_selector: str | None = None,
        resync_period: float | None = None,
        watch_timeout: float = 300.0,
        name: str | None = None,
    ) -> None:
        """``namespaces`` is registered on here and must not be started yet; its owner
        starts and stops it (it is often shared, like the Broker's Cluster informer)."""
        if not resource.namespaced:
            raise ValueError(f"{resource.kind} is cluster-scoped")
        self.resource = resource
        self.label_selector = label_selector
        self.resync_period = resync_period
        self.watch_timeout = watch_timeout
        self.name = name or f"{resource.qualified_name}@*"
        self.store = Store()
        self._api_client = api_client
        self._source = namespaces
        self._namespace_of = namespace_of
        self._handlers: list[tuple[OnAdd | None, OnUpdate | None, OnDelete | None]] = []
        # namespace -> its informer; written by the dispatcher thread only.
        self._members: dict[str, Informer] = {}
        self._members_lock = threading.Lock()
        self._unsynced: set[Informer] = set()
        self._source_synced = False
        self._synced = threading.Event()
        self._stopped = threading.Event()
        self._pending: collections.deque[_Item] = collections.deque()
        self._pending_cond = threading.Condition()
        self._recompute_queued = False
        self._thread: threading.Thread | None = None
        namespaces.add_handler(on_add=self._namespaces_changed,
                               on_update=lambda _old, new: self._namespaces_changed(new),
                               on_delete=self._namespaces_changed,
                               on_synced=lambda: self._enqueue(("source-synced",)))

    # -- public API (kube.informer.Cache) ------------------------------------------------

    def add_handler(self, *, on_add: OnAdd | None = None, on_update: OnUpdate | None = None,
                    on_delete: OnDelete | None = None) -> None:
        """Register callbacks; only before ``start()`` so no handler misses initial events."""
        if self._thread is not None:
            raise RuntimeError("register handlers before start()")
        self._handlers.append((on_add, on_update, on_delete))

    def start(self) -> None:
        """Start the dispatcher; the namespaces' informers start as the source names them."""
        if self._thread is not None:
            raise RuntimeError("informer already started")
        self._thread = threading.Thread(target=self._dispatch, name=f"dispatch-{self.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the dispatcher, then every namespace's informer."""
        self._stopped.set()
        with self._pending_cond:
            self._pending_cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        with self._members_lock:
            members = list(self._members.values())
        for informer in members:
            informer.stop(timeout)

    def wait_for_sync(self, timeout: float | None = None) -> bool:
        """Block until the source synced and the namespaces it named then were delivered."""
        return self._synced.wait(timeout)

    def list(self) -> JSONList:
        return self.store.list()

    def get(self, key: str) -> JSON | None:
        """The cached object for ``key`` ("namespace/name")."""
        return self.store.get(key)

    @property
    def namespaces(self) -> builtins.list[str]:
        """The namespaces watched now."""
        with self._members_lock:
            return sorted(self._members)

    def member(self, namespace: str) -> Informer | None:
        """The informer of one watched namespace (for diagnostics and tests)."""
        with self._members_lock:
            return self._members.get(namespace)

    def disconnect(self) -> None:
        """Cut every namespace's current watch (each resumes from its resourceVersion).

        For tests and for diagnosing a watch suspected to be stuck.
        """
        with self._members_lock:
            members = list(self._members.values())
        for informer in members:
            informer.disconnect()

    # -- events in (other threads) -------------------------------------------------------

    def _enqueue(self, item: _Item) -> None:
        with self._pending_cond:
            self._pending.append(item)
            self._pending_cond.notify()

    def _namespaces_changed(self, _obj: JSON) -> None:
        """A source event: recompute the set (once for any number of queued events)."""
        with self._pending_cond:
            if self._recompute_queued:
                return
            self._recompute_queued = True
            self._pending.append(("namespaces",))
            self._pending_cond.notify()

    def _member_handlers(self, informer: Informer) -> None:
        informer.add_handler(
            on_add=lambda obj: self._enqueue(("event", informer, "add", obj)),
            on_update=lambda old, new: self._enqueue(("event", informer, "update", old, new)),
            on_delete=lambda obj: self._enqueue(("event", informer, "delete", obj)),
            on_synced=lambda: self._enqueue(("synced", informer)))

    # -- dispatcher thread ---------------------------------------------------------------

    def _dispatch(self) -> None:
        while not self._stopped.is_set():
            with self._pending_cond:
                while not self._pending and not self._stopped.is_set():
                    self._pending_cond.wait()
                batch = list(self._pending)
                self._pending.clear()
            for item in batch:
                if self._stopped.is_set():
                    return
                try:
                    self._handle(item)
                except Exception:
                    log.exception("%s: handling %s failed", self.name, item[0])

    def _handle(self, item: _Item) -> None:
        kind = item[0]
        if kind == "namespaces":
            with self._pending_cond:
                self._recompute_queued = False
            self._converge_namespaces()
        elif kind == "source-synced":
            self._source_synced = True
            self._check_synced()
        elif kind == "synced":
            self._unsynced.discard(item[1])
            self._check_synced()
        elif kind == "event":
            informer, event = item[1], item[2]
            namespace = informer.namespace
            if namespace is None or self._members.get(namespace) is not informer:
                return  # in flight when its namespace left the set
            if event == "delete":
                obj = item[3]
                if self.store.delete(object_key(obj)) is not None:
                    self._deliver("delete", obj)
                return
            new = item[-1]
            old = self.store.upsert(new)
            if old is None:
                self._deliver("add", new)
            else:
                self._deliver("update", old, new)

    def _converge_namespaces(self) -> None:
        wanted = {ns for obj in self._source.list() if (ns := self._namespace_of(obj))}
        for namespace in sorted(set(self._members) - wanted):
            self._remove(namespace)
        for namespace in sorted(wanted - set(self._members)):
            self._add(namespace)

    def _add(self, namespace: str) -> None:
        log.info("%s: watching namespace %s", self.name, namespace)
        informer = Informer(self._api_client, self.resource, namespace=namespace,
                            label_selector=self.label_selector,
                            resync_period=self.resync_period, watch_timeout=self.watch_timeout,
                            name=f"{self.name}:{namespace}")
        self._member_handlers(informer)
        with self._members_lock:
            self._members[namespace] = informer
        self._unsynced.add(informer)
        informer.start()

    def _remove(self, namespace: str) -> None:
        """Forget a namespace: its objects are deleted for the handlers now."""
        log.info("%s: namespace %s left the set: dropping its objects", self.name, namespace)
        with self._members_lock:
            informer = self._members.pop(namespace)
        self._unsynced.discard(informer)
        # Its threads end by themselves; whatever they still queue is dropped above.
        informer.stop(timeout=0)
        prefix = f"{namespace}/"
        gone = sorted(key for key in map(object_key, self.store.list())
                      if key.startswith(prefix))
        for key in gone:
            if (obj := self.store.delete(key)) is not None:
                self._deliver("delete", obj)
        self._check_synced()

    def _check_synced(self) -> None:
        if self._source_synced and not self._unsynced and not self._synced.is_set():
            self._synced.set()

    def _deliver(self, kind: str, *objects: JSON) -> None:
        for on_add, on_update, on_delete in self._handlers:
            try:
                if kind == "add" and on_add:
                    on_add(objects[0])
                elif kind == "update" and on_update:
                    on_update(objects[0], objects[1])
                elif kind == "delete" and on_delete:
                    on_delete(objects[0])
            except Exception:
                log.exception("%s: %s handler failed", self.name, kind)
