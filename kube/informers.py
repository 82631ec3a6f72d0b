"""Informer sets and secondary indexes shared by every controller.

An `InformerSet` holds one informer per (resource, namespace, label selector) on
one API server, so controllers that need the same objects share one watch and
one cache. An `Index` keeps "index key -> cached object keys" current from an
informer's events, so a reconcile finds the objects it owns without scanning the
whole cache. Both must be set up before the informers start, so that no event
reaches a controller before the index knows about it.

``InformerSet.across_members`` is the Broker's layout: one resource in every
member's namespace (``names.broker_member_namespace``) for each ``Cluster`` in the
Broker namespace, as one ``kube.multinamespace.MultiNamespaceInformer``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from kube import names, resources
from kube import objects as o
from kube.informer import Cache, Informer
from kube.multinamespace import MultiNamespaceInformer
from kube.resources import Resource
from kube.store import JSON, object_key


class InformerSet:
    """One informer per (resource, namespace, label selector) on one API server."""

    def __init__(self, api_client: Any, *, name: str, resync_period: float | None = None
                 ) -> None:
        self.api_client = api_client
        self.name = name
        self.resync_period = resync_period
        self._informers: dict[tuple[Resource, str | None, str | None], Informer] = {}
        self._across: dict[tuple[Resource, str, str | None], MultiNamespaceInformer] = {}
        self._started = False

    def get(self, resource: Resource, *, namespace: str | None = None,
            label_selector: str | None = None) -> Informer:
        key = (resource, namespace, label_selector)
        informer = self._informers.get(key)
        if informer is None:
            if self._started:
                raise RuntimeError(f"informer for {resource.kind} requested after start")
            informer = Informer(
                self.api_client, resource, namespace=namespace, label_selector=label_selector,
                resync_period=self.resync_period,
                name=f"{self.name}:{resource.qualified_name}" + (f"@{namespace}"
                                                                 if namespace else ""))
            self._informers[key] = informer
        return informer

    def across_members(self, resource: Resource, *, broker_namespace: str,
                       label_selector: str | None = None) -> MultiNamespaceInformer:
        """``resource`` in the namespace of every member the Broker's ``Cluster`` objects
        in ``broker_namespace`` name, followed as members join and leave (namespaced
        watches only: a member's Broker identity may read nothing cluster-wide)."""
        key = (resource, broker_namespace, label_selector)
        informer = self._across.get(key)
        if informer is None:
            if self._started:
                raise RuntimeError(f"informer for {resource.kind} requested after start")
            clusters = self.get(resources.CLUSTERS, namespace=broker_namespace)

            def member_namespace(cluster: JSON) -> str:
                return names.broker_member_namespace(o.name(cluster), broker_namespace)

            informer = MultiNamespaceInformer(
                self.api_client, resource, namespaces=clusters, namespace_of=member_namespace,
                label_selector=label_selector, resync_period=self.resync_period,
                name=f"{self.name}:{resource.qualified_name}@{broker_namespace}-*")
            self._across[key] = informer
        return informer

    def _all(self) -> list[Cache]:
        return [*self._informers.values(), *self._across.values()]

    def start(self) -> None:
        self._started = True
        for informer in self._all():
            informer.start()

    def wait_for_sync(self, timeout: float) -> None:
        for informer in self._all():
            if not informer.wait_for_sync(timeout):
                raise TimeoutError(f"informer {informer.name} did not sync in {timeout} s")

    def stop(self) -> None:
        for informer in reversed(self._all()):
            informer.stop()


class Index:
    """A secondary index over an informer's cache: index key -> cached objects.

    Kept current by an informer handler; create indexes before the controllers'
    own handlers so that a key a handler queues already finds its objects here.
    """

    def __init__(self, informer: Cache, key_fn: Callable[[JSON], Iterable[str]]) -> None:
        self.informer = informer
        self._key_fn = key_fn
        self._lock = threading.Lock()
        self._index: dict[str, set[str]] = {}
        informer.add_handler(on_add=self._add, on_update=self._update, on_delete=self._delete)

    def _add(self, obj: JSON) -> None:
        with self._lock:
            for k in self._key_fn(obj):
                self._index.setdefault(k, set()).add(object_key(obj))

    def _delete(self, obj: JSON) -> None:
        with self._lock:
            for k in self._key_fn(obj):
                keys = self._index.get(k)
                if keys is not None:
                    keys.discard(object_key(obj))
                    if not keys:
                        del self._index[k]

    def _update(self, old: JSON, new: JSON) -> None:
        if old is not new:
            self._delete(old)
            self._add(new)

    def objects(self, index_key: str) -> list[JSON]:
        """The cached objects under ``index_key`` (a snapshot)."""
        with self._lock:
            keys = list(self._index.get(index_key, ()))
        return [obj for k in keys if (obj := self.informer.get(k)) is not None]

    def index_keys(self) -> list[str]:
        with self._lock:
            return list(self._index)
