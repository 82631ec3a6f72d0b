"""A thread-safe cache of API objects keyed like client-go ("namespace/name", or "name").

The informer writes it; controllers read it. Objects are shared, not copied: treat them
as read-only and deep-copy before changing one (as with client-go's listers).
"""

from __future__ import annotations

import builtins
import threading
from typing import Any

JSON = dict[str, Any]
JSONList = list[JSON]  # spelled out here: inside Store, "list" is the method


def object_key(obj: JSON) -> str:
    """The cache key: "namespace/name" for namespaced objects, "name" for cluster-scoped."""
    metadata = obj.get("metadata") or {}
    name = metadata.get("name")
    if not name:
        raise ValueError("object has no metadata.name")
    namespace = metadata.get("namespace")
    return f"{namespace}/{name}" if namespace else str(name)


def split_key(key: str) -> tuple[str | None, str]:
    """Inverse of ``object_key``: (namespace or None, name)."""
    namespace, sep, name = key.partition("/")
    return (namespace, name) if sep else (None, key)


def resource_version(obj: JSON) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


class Store:
    """Objects by key behind one lock; every method is atomic."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, JSON] = {}

    def get(self, key: str) -> JSON | None:
        with self._lock:
            return self._items.get(key)

    def list(self) -> JSONList:
        with self._lock:
            return list(self._items.values())

    def keys(self) -> builtins.list[str]:
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items

    def upsert(self, obj: JSON) -> JSON | None:
        """Store ``obj``; return the object it replaced, if any."""
        key = object_key(obj)
        with self._lock:
            old = self._items.get(key)
            self._items[key] = obj
            return old

    def delete(self, key: str) -> JSON | None:
        """Drop ``key``; return the object that was stored, if any."""
        with self._lock:
            return self._items.pop(key, None)

    def replace(self, objs: JSONList) -> dict[str, JSON]:
        """Swap the whole content for ``objs``; return the previous content by key."""
        fresh = {object_key(obj): obj for obj in objs}
        with self._lock:
            old, self._items = self._items, fresh
            return old
