"""Move custom objects stored at an older version of their CRD to its storage version.

When a CRD's storage version changes (the MCS CRDs: v1alpha1 -> v1beta1), etcd keeps
every existing object at the version it was written in, and the CRD's
``status.storedVersions`` keeps listing the old one; that version can then never be
dropped from the CRD. As kube-storage-version-migrator does, each object is read and
written back unchanged: the API server stores a write at the storage version. Only then
is ``storedVersions`` cut down to the storage version. A CRD that lists only its storage
version is left alone, so running this again is a no-op.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from typing import Any

from kube import controller, crud, errors, rest
from kube.resources import CUSTOM_RESOURCE_DEFINITIONS, Resource
from kube.rest import ApiClient

log = logging.getLogger(__name__)

JSON = dict[str, Any]


def storage_version(crd: JSON) -> str:
    """The version a CRD stores objects at (exactly one has ``storage: true``)."""
    stored = [v["name"] for v in crd["spec"]["versions"] if v.get("storage")]
    if len(stored) != 1:
        raise ValueError(f"CRD {crd['metadata']['name']} has {len(stored)} storage versions")
    return str(stored[0])


def resource_of(crd: JSON) -> Resource:
    """The ``Resource`` of a CRD's objects at its storage version."""
    spec = crd["spec"]
    return Resource(spec["group"], storage_version(crd), spec["names"]["plural"],
                    spec["names"]["kind"], namespaced=spec["scope"] == "Namespaced")


def needs_migration(crd: JSON) -> bool:
    """Whether some objects may still be stored at another version than the storage one."""
    stored = (crd.get("status") or {}).get("storedVersions") or []
    return any(version != storage_version(crd) for version in stored)


def storage_version_hash(group: str, version: str, kind: str) -> str:
    """The ``storageVersionHash`` discovery shows for a resource stored as group/version/kind
    (the API server's ``discovery.StorageVersionHash``)."""
    digest = hashlib.sha256(f"{group}/{version}/{kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def await_storage_version(api_client: ApiClient, resource: Resource, *,
                          timeout: float = 30.0) -> None:
    """Wait until the server stores ``resource`` at its version.

    A CRD update reaches the API server's handlers asynchronously: Established can be
    True while writes still go to the old storage version. Discovery shows the hash of
    the version in use; a server that shows none is trusted as it is.
    """
    path = f"/apis/{resource.group}/{resource.version}"
    want = storage_version_hash(resource.group, resource.version, resource.kind)
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = rest.request_json(api_client, "GET", path)
        except Exception as exc:
            if not errors.is_not_found(exc):
                raise
            info = {}
        entry = next((r for r in info.get("resources") or []
                      if r.get("name") == resource.plural), None)
        if entry is not None and entry.get("storageVersionHash", want) == want:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{resource.qualified_name} not stored at {resource.version} "
                               f"after {timeout:.0f}s")
        time.sleep(0.1)


def _rewrite(client: crud.ResourceClient, obj: JSON) -> bool:
    """Write ``obj`` back as it is (a fresh copy on 409: someone else's write stored it
    at the storage version already, but re-writing costs nothing and needs no proof of
    that); False if it is gone meanwhile."""
    return controller.write_changed(client, obj, lambda _obj: True, client.update)


def migrate_stored_versions(api_client: ApiClient, crd_name: str) -> int:
    """Re-store every object of ``crd_name`` at its storage version; return how many.

    The CRD must already serve the new storage version (``install_crds`` updates it
    first). Objects created meanwhile are written at the storage version anyway.
    """
    definitions = crud.ResourceClient(api_client, CUSTOM_RESOURCE_DEFINITIONS)
    crd = definitions.get(crd_name)
    if not needs_migration(crd):
        return 0
    target = storage_version(crd)
    resource = resource_of(crd)
    await_storage_version(api_client, resource)
    client = crud.ResourceClient(api_client, resource)
    migrated = sum(_rewrite(client, obj) for obj in client.list().items)

    def only_the_storage_version(fresh: JSON) -> bool:
        status = fresh.setdefault("status", {})
        before, status["storedVersions"] = status.get("storedVersions"), [target]
        return bool(before != [target])

    controller.write_status(definitions, crd, only_the_storage_version)
    log.info("CRD %s: %d object(s) re-stored at %s", crd_name, migrated, target)
    return migrated
