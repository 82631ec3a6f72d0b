"""The CustomResourceDefinitions Globalnet serves, and their installer.

One YAML file per CRD lives next to this module (package data, shipped in the wheel):
``submariner.io/v1`` Cluster, Endpoint, Gateway, ClusterGlobalEgressIP, GlobalEgressIP,
GlobalIngressIP and ``multicluster.x-k8s.io`` ServiceExport, ServiceImport (stored at
``kube.resources.MCS_VERSION``, the legacy versions still served; objects an older
install stored at a legacy version are re-stored by ``kube.crds.migration``).
Names, short names and field names follow upstream Submariner and the MCS API so users'
manifests and habits carry over. Schemas are structural (apiextensions.k8s.io/v1), so the
API server itself rejects malformed objects (422) before any controller sees them; rules
a 1.20 schema cannot express (GlobalEgressIP.spec.podSelector being immutable) are the
controllers' job.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import time
from typing import Any

import yaml

from kube import crud, errors
from kube.crds import migration
from kube.resources import CUSTOM_RESOURCE_DEFINITIONS
from kube.rest import ApiClient

log = logging.getLogger(__name__)

JSON = dict[str, Any]


def load_crd_manifests() -> list[JSON]:
    """Every CRD manifest shipped in this package, in file-name order."""
    manifests: list[JSON] = []
    files = sorted(
        (
            entry
            for entry in importlib.resources.files(__name__).iterdir()
            if entry.name.endswith(".yaml")
        ),
        key=lambda entry: entry.name,
    )
    for entry in files:
        for document in yaml.safe_load_all(entry.read_text(encoding="utf-8")):
            if document:
                # Through JSON: the versions that share a schema by YAML alias get copies
                # of their own, so neither an edit nor a YAML dump (anchors) links them.
                manifests.append(json.loads(json.dumps(document)))
    return manifests


def _established(crd: JSON) -> bool:
    return any(
        condition.get("type") == "Established" and condition.get("status") == "True"
        for condition in (crd.get("status") or {}).get("conditions") or []
    )


def _create_or_update(client: crud.ResourceClient, manifest: JSON) -> None:
    """Create the CRD, or replace the spec of an existing one (retrying on 409)."""
    name = manifest["metadata"]["name"]
    for _ in range(5):
        existing = client.get_or_none(name)
        if existing is not None and existing["metadata"].get("deletionTimestamp"):
            # Being deleted (an uninstall just before): its replacement can only be
            # created once it is gone.
            _await_gone(client, name)
            existing = None
        if existing is None:
            try:
                client.create(manifest)
                log.info("created CRD %s", name)
                return
            except Exception as exc:
                if errors.is_already_exists(exc):
                    continue
                raise
        desired = {
            **manifest,
            "metadata": {
                **existing["metadata"],
                "labels": {
                    **(existing["metadata"].get("labels") or {}),
                    **(manifest["metadata"].get("labels") or {}),
                },
            },
        }
        try:
            client.update(desired)
            log.info("updated CRD %s", name)
            return
        except Exception as exc:
            if errors.is_conflict(exc):
                continue
            raise
    raise RuntimeError(f"CRD {name} kept changing under us; gave up updating it")


def _await_gone(client: crud.ResourceClient, name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get_or_none(name) is not None:
        if time.monotonic() >= deadline:
            raise TimeoutError(f"CRD {name} still being deleted after {timeout:.0f}s")
        time.sleep(0.1)


def await_established(client: crud.ResourceClient, crd_names: list[str], *,
                      timeout: float = 30.0) -> None:
    """Wait until the server reports every CRD of ``crd_names`` Established."""
    pending = set(crd_names)
    deadline = time.monotonic() + timeout
    while True:
        pending = {name for name in pending if not _established(client.get(name))}
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"CRDs not Established after {timeout}s: {sorted(pending)}")
        time.sleep(0.1)


def install_crds(api_client: ApiClient, *, timeout: float = 30.0,
                 exclude_groups: tuple[str, ...] = ()) -> None:
    """Create or update every CRD, wait until the server reports each Established, then
    re-store objects an older install left at a legacy version (idempotent).

    ``exclude_groups``: API groups whose CRDs are left as they are (a test Broker kept at
    an older release's MCS CRDs)."""
    client = crud.ResourceClient(api_client, CUSTOM_RESOURCE_DEFINITIONS)
    manifests = [m for m in load_crd_manifests() if m["spec"]["group"] not in exclude_groups]
    for manifest in manifests:
        _create_or_update(client, manifest)
    await_established(client, [manifest["metadata"]["name"] for manifest in manifests],
                      timeout=timeout)
    for manifest in manifests:
        migration.migrate_stored_versions(api_client, manifest["metadata"]["name"])
