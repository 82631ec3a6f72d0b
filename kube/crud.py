"""Generic CRUD on plain ``dict`` objects for any ``Resource``, built-in or custom.

One helper serves every kind, so controllers need no generated model classes and keep
fields the client library does not know. Namespaces come from the argument or, for
writes, from the object's ``metadata.namespace``. Errors surface as ``ApiException``;
use ``kube.errors`` to classify them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from kube import errors, rest
from kube.resources import NAMESPACES, Resource
from kube.rest import ApiClient

JSON = rest.JSON
JSONList = list[JSON]  # spelled out here: inside ResourceClient, "list" is the method

# Page size for lists: big enough to be cheap, small enough not to stall the server.
DEFAULT_PAGE_SIZE = 500


class PatchType(enum.StrEnum):
    """Content types of the three patch flavours (strategic merge is for built-in kinds)."""

    MERGE = "application/merge-patch+json"
    JSON = "application/json-patch+json"
    STRATEGIC = "application/strategic-merge-patch+json"


@dataclass(frozen=True)
class ObjectList:
    """A consistent snapshot: the items and the resourceVersion to watch from."""

    items: JSONList
    resource_version: str


def _metadata(obj: JSON) -> dict[str, Any]:
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        raise ValueError("object has no metadata")
    return metadata


class ResourceClient:
    """CRUD for one ``Resource`` through one ``ApiClient``; thread-safe, holds no state."""

    def __init__(
        self,
        api_client: ApiClient,
        resource: Resource,
        *,
        timeout: rest.Timeout = rest.DEFAULT_TIMEOUT,
    ) -> None:
        self.api_client = api_client
        self.resource = resource
        self.timeout = timeout

    # -- helpers -------------------------------------------------------------------------

    def _namespace(self, namespace: str | None, obj: JSON | None = None) -> str | None:
        if not self.resource.namespaced:
            return None
        if namespace:
            return namespace
        if obj is not None:
            found = _metadata(obj).get("namespace")
            if found:
                return str(found)
        raise ValueError(f"{self.resource.kind} needs a namespace")

    def _request(self, method: str, path: str, **kwargs: Any) -> JSON:
        return rest.request_json(self.api_client, method, path, timeout=self.timeout, **kwargs)

    def _with_type(self, obj: JSON) -> JSON:
        """Lists omit apiVersion/kind on items; fill them so every object looks the same."""
        obj.setdefault("apiVersion", self.resource.api_version)
        obj.setdefault("kind", self.resource.kind)
        return obj

    # -- reads ---------------------------------------------------------------------------

    def get(self, name: str, *, namespace: str | None = None) -> JSON:
        path = self.resource.path(namespace=self._namespace(namespace), name=name)
        return self._request("GET", path)

    def get_or_none(self, name: str, *, namespace: str | None = None) -> JSON | None:
        try:
            return self.get(name, namespace=namespace)
        except Exception as exc:
            if errors.is_not_found(exc):
                return None
            raise

    def list(
        self,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> ObjectList:
        """All matching objects, read page by page, and the list's resourceVersion.

        ``namespace=None`` on a namespaced resource lists all namespaces. If a continue
        token expires mid-way (410), the list restarts unpaginated, as client-go's pager.
        """
        path = self.resource.path(namespace=namespace or None)
        query: dict[str, rest.QueryValue] = {
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
        }
        try:
            items, resource_version = self._list_pages(path, query, page_size)
        except Exception as exc:
            if not errors.is_gone(exc):
                raise
            items, resource_version = self._list_pages(path, query, 0)
        return ObjectList(items=items, resource_version=resource_version)

    def _list_pages(
        self, path: str, query: dict[str, rest.QueryValue], page_size: int
    ) -> tuple[JSONList, str]:
        items: JSONList = []
        continue_token: str | None = None
        while True:
            page = self._request(
                "GET",
                path,
                query={**query, "limit": page_size or None, "continue": continue_token},
            )
            items.extend(self._with_type(item) for item in page.get("items") or [])
            list_meta = page.get("metadata") or {}
            continue_token = list_meta.get("continue") or None
            if not continue_token:
                return items, str(list_meta.get("resourceVersion", ""))

    # -- writes --------------------------------------------------------------------------

    def create(self, obj: JSON, *, namespace: str | None = None) -> JSON:
        path = self.resource.path(namespace=self._namespace(namespace, obj))
        return self._request("POST", path, body=self._with_type(dict(obj)))

    def create_if_absent(self, obj: JSON, *, namespace: str | None = None) -> JSON | None:
        """Create `obj`; None when an object of that name exists already (not an error:
        a retried step, or another writer first)."""
        try:
            return self.create(obj, namespace=namespace)
        except Exception as exc:
            if errors.is_already_exists(exc):
                return None
            raise

    def update(self, obj: JSON, *, namespace: str | None = None) -> JSON:
        """PUT the whole object; its metadata.resourceVersion makes it a conditional write."""
        name = _metadata(obj)["name"]
        path = self.resource.path(namespace=self._namespace(namespace, obj), name=name)
        return self._request("PUT", path, body=self._with_type(dict(obj)))

    def update_status(self, obj: JSON, *, namespace: str | None = None) -> JSON:
        """PUT to the status subresource: only .status changes, spec edits are ignored."""
        name = _metadata(obj)["name"]
        path = self.resource.path(
            namespace=self._namespace(namespace, obj), name=name, subresource="status"
        )
        return self._request("PUT", path, body=self._with_type(dict(obj)))

    def patch(
        self,
        name: str,
        patch: JSON | JSONList,
        *,
        namespace: str | None = None,
        patch_type: PatchType = PatchType.MERGE,
        subresource: str | None = None,
    ) -> JSON:
        path = self.resource.path(namespace=self._namespace(namespace), name=name,
                                  subresource=subresource)
        return self._request("PATCH", path, body=patch, content_type=str(patch_type))

    def apply(self, obj: JSON, *, field_manager: str, dry_run: bool = False,
              force: bool = True) -> JSON:
        """Server-side apply: the server merges ``obj`` as ``field_manager``'s intent
        (idempotent; fields others own are kept). ``force`` takes over fields another
        manager set (an installer re-applying after a hand edit); ``dry_run`` validates
        and answers without persisting anything."""
        meta = _metadata(obj)
        path = self.resource.path(namespace=self._namespace(None, obj), name=meta["name"])
        query: dict[str, rest.QueryValue] = {"fieldManager": field_manager}
        if force:
            query["force"] = True
        if dry_run:
            query["dryRun"] = "All"
        return self._request("PATCH", path, body=self._with_type(dict(obj)),
                             content_type="application/apply-patch+yaml", query=query)

    def patch_status(
        self,
        name: str,
        patch: JSON | JSONList,
        *,
        namespace: str | None = None,
        patch_type: PatchType = PatchType.MERGE,
    ) -> JSON:
        return self.patch(name, patch, namespace=namespace, patch_type=patch_type,
                          subresource="status")

    def delete(
        self,
        name: str,
        *,
        namespace: str | None = None,
        propagation_policy: str | None = None,
        grace_period_seconds: int | None = None,
        uid: str | None = None,
        resource_version: str | None = None,
    ) -> JSON:
        """Delete one object; ``uid``/``resource_version`` make it conditional (409 if stale)."""
        path = self.resource.path(namespace=self._namespace(namespace), name=name)
        body: JSON = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if propagation_policy is not None:
            body["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        preconditions = {
            key: value
            for key, value in (("uid", uid), ("resourceVersion", resource_version))
            if value is not None
        }
        if preconditions:
            body["preconditions"] = preconditions
        return self._request("DELETE", path, body=body)

    def delete_if_exists(
        self,
        name: str,
        *,
        namespace: str | None = None,
        uid: str | None = None,
        conflict_is_gone: bool = False,
    ) -> bool:
        """Delete, treating "already gone" as success; returns whether it was deleted.

        ``uid`` deletes only that object (a precondition): a successor created under the
        same name is never deleted in its place. The server answers such a stale delete
        with 409; ``conflict_is_gone`` counts that as gone too, otherwise it raises (so
        a caller working from a cache can look again).
        """
        try:
            self.delete(name, namespace=namespace, uid=uid)
        except Exception as exc:
            if errors.is_not_found(exc) or (conflict_is_gone and errors.is_conflict(exc)):
                return False
            raise
        return True


def ensure_namespace(api_client: Any, name: str, *, timeout: float = 60.0) -> None:
    """Create namespace `name` unless it exists. One being deleted (an uninstall just
    before) is waited for and made anew: nothing can be created in it meanwhile."""
    import time

    namespaces = ResourceClient(api_client, NAMESPACES)
    deadline = time.monotonic() + timeout
    while True:
        current = namespaces.get_or_none(name)
        if current is None:
            if namespaces.create_if_absent(
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}):
                return
            continue  # made by someone else meanwhile: look again
        if (current.get("status") or {}).get("phase") != "Terminating":
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"namespace {name} is still being deleted after {timeout:.0f} s")
        time.sleep(0.2)

