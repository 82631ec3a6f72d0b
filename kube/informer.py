"""List+watch one resource into a local cache and tell handlers about every change.

Guarantees (what controllers rely on):

* No change is lost. A watch that ends (server timeout, cut connection, API server
  restart) resumes from the last resourceVersion seen, bookmarks included. When that
  version is too old for the server (410 Gone, as an ERROR event or as the HTTP status),
  the informer lists again and emits synthetic add/update/delete events for the
  difference between its cache and the fresh list.
* Connection failures are retried with capped, jittered exponential backoff.
* Handlers run on one dispatcher thread, in event order, after the cache already holds
  the new state. They must be quick (typically: put a key on a ``WorkQueue``); a slow
  handler delays later events but never the watch itself.
* ``on_update(old, new)`` is also called with ``old is new`` for every cached object each
  ``resync_period`` (level-triggered controllers re-check their world).
* ``on_synced()`` is called once, on the dispatcher thread, right after the initial
  list's events (what an informer built on other informers waits for).

Objects are plain dicts decoded from the server's JSON, unknown fields included; they are
shared with the cache, so do not modify them.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from urllib3 import BaseHTTPResponse

from kube import crud, errors, rest
from kube.backoff import Backoff
from kube.resources import Resource
from kube.rest import ApiClient
from kube.store import JSON, JSONList, Store, object_key, resource_version

log = logging.getLogger(__name__)

OnAdd = Callable[[JSON], None]
OnUpdate = Callable[[JSON, JSON], None]
OnDelete = Callable[[JSON], None]
OnSynced = Callable[[], None]


class Cache(Protocol):
    """What controllers, indexes and handlers use of an informer: a cache of objects by
    key and events about it. ``Informer`` is one, and so is
    ``kube.multinamespace.MultiNamespaceInformer`` (one resource over many namespaces)."""

    name: str

    def add_handler(self, *, on_add: OnAdd | None = None, on_update: OnUpdate | None = None,
                    on_delete: OnDelete | None = None) -> None: ...

    def start(self) -> None: ...

    def stop(self, timeout: float = 5.0) -> None: ...

    def wait_for_sync(self, timeout: float | None = None) -> bool: ...

    def list(self) -> JSONList: ...

    def get(self, key: str) -> JSON | None: ...

# Seconds added to the server-side watch timeout to get the client read timeout: the
# server ends a healthy watch itself; the client only gives up on a half-open connection.
_READ_TIMEOUT_GRACE = 30.0
_CONNECT_TIMEOUT = 5.0


@dataclasses.dataclass
class InformerStats:
    """Counters for diagnostics and tests (what happened, not how it felt)."""

    lists: int = 0
    relists: int = 0  # lists caused by 410 Gone
    watches: int = 0  # watch requests the server accepted
    events: int = 0  # ADDED/MODIFIED/DELETED events received
    bookmarks: int = 0
    errors: int = 0  # failed list/watch attempts (each followed by a backoff)


class _ResourceExpired(Exception):
    """The resourceVersion we watch from is older than the server keeps: relist."""


class _WatchError(Exception):
    """The server ended the watch with an ERROR event other than 410."""


@dataclasses.dataclass(frozen=True)
class _Handlers:
    on_add: OnAdd | None
    on_update: OnUpdate | None
    on_delete: OnDelete | None
    on_synced: OnSynced | None = None


# Items on the dispatch queue: ("add", obj) | ("update", old, new) | ("delete", obj) |
# ("synced",) after the initial list's events.
_Notification = tuple[Any, ...]


class Informer:
    """Cache and event source for one resource, optionally one namespace and selectors."""

    def __init__(
        self,
        api_client: ApiClient,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resync_period: float | None = None,
        watch_timeout: float = 300.0,
        backoff_initial: float = 0.2,
        backoff_max: float = 5.0,
        page_size: int = crud.DEFAULT_PAGE_SIZE,
        name: str | None = None,
    ) -> None:
        """``watch_timeout`` is the server-side timeout of one watch request (randomised
        in [t, 2t) like client-go, so many informers do not reconnect in step)."""
        if namespace and not resource.namespaced:
            raise ValueError(f"{resource.kind} is cluster-scoped; got namespace {namespace!r}")
        self.resource = resource
        self.namespace = namespace or None
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.resync_period = resync_period
        self.watch_timeout = watch_timeout
        self.page_size = page_size
        self.name = name or resource.qualified_name + (f"@{namespace}" if namespace else "")
        self.store = Store()
        self.stats = InformerStats()
        self._api_client = api_client
        self._client = crud.ResourceClient(api_client, resource)
        self._backoff = Backoff(initial=backoff_initial, maximum=backoff_max)
        self._handlers: list[_Handlers] = []
        self._resource_version = ""
        self._stopped = threading.Event()
        self._synced = threading.Event()
        self._lock = threading.Lock()
        self._response: BaseHTTPResponse | None = None
        self._cut = False  # we shut the current watch's socket down on purpose
        self._pending: collections.deque[_Notification] = collections.deque()
        self._pending_cond = threading.Condition()
        self._threads: list[threading.Thread] = []

    # -- public API ----------------------------------------------------------------------

    def add_handler(
        self,
        *,
        on_add: OnAdd | None = None,
        on_update: OnUpdate | None = None,
        on_delete: OnDelete | None = None,
        on_synced: OnSynced | None = None,
    ) -> None:
        """Register callbacks; only before ``start()`` so no handler misses initial events."""
        if self._threads:
            raise RuntimeError("register handlers before start()")
        self._handlers.append(_Handlers(on_add, on_update, on_delete, on_synced))

    def start(self) -> None:
        """Start the list/watch and dispatcher threads (daemons); returns immediately."""
        if self._threads:
            raise RuntimeError("informer already started")
        self._threads = [
            threading.Thread(target=self._run, name=f"informer-{self.name}", daemon=True),
            threading.Thread(target=self._dispatch, name=f"dispatch-{self.name}", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop both threads promptly: the open watch is shut down, not waited out."""
        self._stopped.set()
        self._interrupt_watch()
        with self._pending_cond:
            self._pending_cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def wait_for_sync(self, timeout: float | None = None) -> bool:
        """Block until the initial list is cached and its add events were delivered."""
        return self._synced.wait(timeout)

    @property
    def last_resource_version(self) -> str:
        """The newest resourceVersion seen (list, event or bookmark)."""
        return self._resource_version

    def list(self) -> JSONList:
        return self.store.list()

    def get(self, key: str) -> JSON | None:
        """The cached object for ``key`` ("namespace/name", or "name" if cluster-scoped)."""
        return self.store.get(key)

    def disconnect(self) -> None:
        """Cut the current watch; the informer resumes from the last resourceVersion.

        For tests and for diagnosing a watch suspected to be stuck.
        """
        self._interrupt_watch()

    # -- list/watch thread ---------------------------------------------------------------

    def _run(self) -> None:
        need_list = True
        while not self._stopped.is_set():
            try:
                if need_list:
                    self._list()
                    need_list = False
                self._watch()
            except _ResourceExpired as exc:
                log.info("%s: %s; relisting", self.name, exc)
                self.stats.relists += 1
                need_list = True
            except Exception as exc:
                if self._stopped.is_set():
                    break
                if errors.is_gone(exc):
                    log.info("%s: resourceVersion expired (410); relisting", self.name)
                    self.stats.relists += 1
                    need_list = True
                    continue
                self.stats.errors += 1
                delay = self._backoff.next()
                log.warning(
                    "%s: %s failed (%s); retrying in %.2fs",
                    self.name,
                    "list" if need_list else "watch",
                    _describe(exc),
                    delay,
                )
                self._stopped.wait(delay)
        log.debug("%s: stopped", self.name)

    def _list(self) -> None:
        """LIST into the cache and queue the difference to the old cache as events."""
        listed = self._client.list(
            namespace=self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            page_size=self.page_size,
        )
        self.stats.lists += 1
        old = self.store.replace(listed.items)
        self._resource_version = listed.resource_version
        notifications: list[_Notification] = []
        seen: set[str] = set()
        for obj in listed.items:
            key = object_key(obj)
            seen.add(key)
            previous = old.get(key)
            if previous is None:
                notifications.append(("add", obj))
            elif resource_version(previous) != resource_version(obj):
                notifications.append(("update", previous, obj))
        notifications.extend(("delete", obj) for key, obj in old.items() if key not in seen)
        if not self._synced.is_set():
            notifications.append(("synced",))
        self._notify(*notifications)
        self._backoff.reset()
        log.debug(
            "%s: listed %d objects at resourceVersion %s (%d changes)",
            self.name,
            len(listed.items),
            listed.resource_version,
            len(notifications),
        )

    def _watch_resource_version(self) -> str:
        """Where the next watch starts. A seam for tests that need a stale version."""
        return self._resource_version

    def _watch(self) -> None:
        """One watch request, until the server ends it; raises on errors and 410."""
        timeout_seconds = max(1, int(random.uniform(self.watch_timeout, 2 * self.watch_timeout)))
        response = rest.open_request(
            self._api_client,
            "GET",
            self.resource.path(namespace=self.namespace),
            query={
                "watch": True,
                "resourceVersion": self._watch_resource_version(),
                "allowWatchBookmarks": True,
                "timeoutSeconds": timeout_seconds,
                "labelSelector": self.label_selector,
                "fieldSelector": self.field_selector,
            },
            timeout=(_CONNECT_TIMEOUT, timeout_seconds + _READ_TIMEOUT_GRACE),
        )
        opened = time.monotonic()
        with self._lock:
            self._response = response
            # stop() sets _stopped before it looks for a response to interrupt: one of
            # the two sides sees the other.
            self._cut = self._stopped.is_set()
        self.stats.watches += 1
        clean = False
        received = 0
        try:
            if self._cut:
                return
            for line in _iter_lines(response):
                if self._stopped.is_set():
                    return
                if line.strip():
                    received += 1
                    self._handle_event(json.loads(line))
            clean = True
            if received or time.monotonic() - opened >= 1.0:
                # The server closed the watch on its timeout: healthy, start the next one.
                self._backoff.reset()
            else:
                # Closed at once with nothing in it: something in between is wrong; do
                # not spin on it.
                self._stopped.wait(self._backoff.next())
        except _ResourceExpired:
            raise
        except Exception:
            if not self._cut:
                raise
            # We shut the socket down ourselves (disconnect/stop): resume without backoff.
        finally:
            with self._lock:
                self._response = None
                cut = self._cut
            if clean and not cut:
                response.release_conn()
            else:
                response.close()

    def _handle_event(self, event: JSON) -> None:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise _ResourceExpired(obj.get("message") or "410 Gone")
            raise _WatchError(f"{code} {obj.get('reason')}: {obj.get('message')}")
        new_version = resource_version(obj)
        if kind == "BOOKMARK":
            self.stats.bookmarks += 1
            self._resource_version = new_version or self._resource_version
            return
        self.stats.events += 1
        self._backoff.reset()
        if kind in ("ADDED", "MODIFIED"):
            old = self.store.upsert(obj)
            self._notify(("add", obj) if old is None else ("update", old, obj))
        elif kind == "DELETED":
            old = self.store.delete(object_key(obj))
            self._notify(("delete", obj))
        else:
            log.warning("%s: ignoring watch event of type %r", self.name, kind)
        self._resource_version = new_version or self._resource_version

    def _interrupt_watch(self) -> None:
        """Unblock the watch thread's read: shut the socket down under it."""
        with self._lock:
            response = self._response
            if response is None:
                return
            self._cut = True
        try:
            response.shutdown()
        except Exception as exc:  # already released or closed: nothing is blocked on it
            log.debug("%s: shutdown of watch response: %s", self.name, exc)

    # -- dispatcher thread ---------------------------------------------------------------

    def _notify(self, *notifications: _Notification) -> None:
        if not notifications:
            return
        with self._pending_cond:
            self._pending.extend(notifications)
            self._pending_cond.notify()

    def _dispatch(self) -> None:
        next_resync = self._next_resync()
        while not self._stopped.is_set():
            with self._pending_cond:
                while not self._pending and not self._stopped.is_set():
                    wait = None if next_resync is None else next_resync - time.monotonic()
                    if wait is not None and wait <= 0:
                        break
                    self._pending_cond.wait(wait)
                batch = list(self._pending)
                self._pending.clear()
            for notification in batch:
                if self._stopped.is_set():
                    return
                self._deliver(notification)
            if next_resync is not None and time.monotonic() >= next_resync:
                if self._synced.is_set():
                    for obj in self.store.list():
                        self._deliver(("update", obj, obj))
                next_resync = self._next_resync()

    def _next_resync(self) -> float | None:
        return None if not self.resync_period else time.monotonic() + self.resync_period

    def _deliver(self, notification: _Notification) -> None:
        kind = notification[0]
        if kind == "synced":
            self._synced.set()
            for handlers in self._handlers:
                if handlers.on_synced is not None:
                    try:
                        handlers.on_synced()
                    except Exception:
                        log.exception("%s: synced handler failed", self.name)
            return
        for handlers in self._handlers:
            try:
                if kind == "add" and handlers.on_add:
                    handlers.on_add(notification[1])
                elif kind == "update" and handlers.on_update:
                    handlers.on_update(notification[1], notification[2])
                elif kind == "delete" and handlers.on_delete:
                    handlers.on_delete(notification[1])
            except Exception:
                log.exception("%s: %s handler failed", self.name, kind)


def _iter_lines(response: BaseHTTPResponse) -> Iterator[str]:
    """Newline-delimited JSON from a streaming response, one event per line."""
    buffer = bytearray()
    chunks: Iterator[bytes]
    if getattr(response, "chunked", False):
        chunks = response.stream(amt=None, decode_content=True)
    else:
        chunks = iter(lambda: response.read1(65536), b"")
    for chunk in chunks:
        buffer.extend(chunk)
        while (newline := buffer.find(b"\n")) != -1:
            line = bytes(buffer[:newline])
            del buffer[: newline + 1]
            yield line.decode("utf-8", errors="replace")
    if buffer.strip():
        # Every event ends with a newline: a torn last line means the stream broke.
        raise _WatchError("watch stream ended in the middle of an event")


def _describe(exc: BaseException) -> str:
    status = errors.status_of(exc)
    if status is not None:
        return f"HTTP {status}"
    return f"{type(exc).__name__}: {exc}"
