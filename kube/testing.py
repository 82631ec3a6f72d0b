"""Helpers for tests that run against a real API server (tests/kube and controller tests).

Tests wait on conditions, never on fixed sleeps: ``await_condition`` polls a predicate
until it holds or fails with a message saying what was awaited and what was last seen.
A check that something does *not* happen first waits for proof that the input was
processed: ``ReconcileRecorder`` tells when a controller has reconciled a key.
``temporary_namespace`` gives each test its own namespace and deletes it afterwards, so
tests sharing one API server do not see each other's objects. ``broker_member`` writes
on a Broker what ``gnctl join`` writes for a member: its member namespace and its
``Cluster`` object (which is what makes the readers watch that namespace).
``install_legacy_mcs_crds`` sets up the MCS CRDs as a release before v1beta1 did.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from kube import crds, crud, names
from kube.resources import (
    CLUSTERS,
    CUSTOM_RESOURCE_DEFINITIONS,
    MCS_GROUP,
    MCS_LEGACY_VERSIONS,
    NAMESPACES,
)
from kube.rest import ApiClient

T = TypeVar("T")

_counter = itertools.count()


def await_condition(
    predicate: Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str | Callable[[], str] = "condition",
) -> T:
    """Poll ``predicate`` until it returns something truthy; return that value.

    Exceptions raised by the predicate count as "not yet" until the deadline, then the
    last one is chained to the ``AssertionError``.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last_error = None
        except Exception as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"timed out after {timeout}s awaiting {text}") from last_error
        time.sleep(interval)


class ReconcileRecorder:
    """Records the keys a controller reconciled, while used as a context manager.

    It wraps the controller's ``reconcile``: a call that returns (not one that raises:
    its key is retried) is recorded with what ``witness(key)`` answered as the call
    began - say, whether the input under test was in the controller's cache by then.
    ``await_reconciled(key)`` waits for such a call, after which the absence of an
    outcome is a finding rather than a guess.
    """

    def __init__(self, controller: Any,
                 witness: Callable[[str], bool] = lambda _key: True) -> None:
        self._controller = controller
        self._witness = witness
        self._lock = threading.Lock()
        self._done: list[tuple[str, bool]] = []
        self._previous: dict[str, Any] = {}

    def __enter__(self) -> ReconcileRecorder:
        inner = self._controller.reconcile
        self._previous = {k: v for k, v in vars(self._controller).items() if k == "reconcile"}

        def recording(key: str) -> Any:
            witnessed = self._witness(key)
            result = inner(key)
            with self._lock:
                self._done.append((key, witnessed))
            return result

        self._controller.reconcile = recording
        return self

    def __exit__(self, *exc: object) -> None:
        del self._controller.reconcile
        vars(self._controller).update(self._previous)

    def reconciled(self, key: str) -> bool:
        """Whether a reconcile of ``key`` that began with the witness satisfied returned."""
        with self._lock:
            return any(k == key and witnessed for k, witnessed in self._done)

    def await_reconciled(self, key: str, *, timeout: float = 10.0) -> None:
        await_condition(lambda: self.reconciled(key), timeout=timeout,
                        message=f"a reconcile of {key!r} that saw its input")


def unique_name(prefix: str) -> str:
    """A DNS-label name unique within this process run."""
    return f"{prefix}-{os.getpid() % 10000}-{next(_counter)}"


@contextlib.contextmanager
def temporary_namespace(api_client: ApiClient, prefix: str = "test") -> Iterator[str]:
    """Create a fresh namespace, yield its name, delete it (without waiting) afterwards."""
    namespaces = crud.ResourceClient(api_client, NAMESPACES)
    name = unique_name(prefix)
    namespaces.create({"metadata": {"name": name, "labels": {"globalnet.test": "true"}}})
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):
            namespaces.delete_if_exists(name)


def cluster_object(cluster_id: str, global_cidr: str | None = None) -> dict[str, Any]:
    """A member's ``Cluster`` object, as ``gateway.clusterset.cluster_object`` makes it."""
    return {"apiVersion": CLUSTERS.api_version, "kind": CLUSTERS.kind,
            "metadata": {"name": cluster_id},
            "spec": {"cluster_id": cluster_id, "cluster_cidr": ["10.244.0.0/16"],
                     "service_cidr": ["10.96.0.0/16"],
                     "global_cidr": [global_cidr] if global_cidr else []}}


def join_broker(api_client: ApiClient, broker_namespace: str, cluster_id: str, *,
                global_cidr: str | None = None) -> str:
    """Join ``cluster_id`` on the Broker side: create the Broker namespace if missing,
    the member's namespace and its Cluster object; return the member namespace."""
    crud.ensure_namespace(api_client, broker_namespace)
    member = names.broker_member_namespace(cluster_id, broker_namespace)
    crud.ensure_namespace(api_client, member)
    crud.ResourceClient(api_client, CLUSTERS).create(cluster_object(cluster_id, global_cidr),
                                                     namespace=broker_namespace)
    return member


@contextlib.contextmanager
def broker_member(api_client: ApiClient, broker_namespace: str, cluster_id: str, *,
                  global_cidr: str | None = None) -> Iterator[str]:
    """``join_broker`` for a ``with`` block: yields the member namespace; afterwards the
    Cluster object and the member namespace are deleted (as a leave)."""
    member = join_broker(api_client, broker_namespace, cluster_id, global_cidr=global_cidr)
    clusters = crud.ResourceClient(api_client, CLUSTERS)
    try:
        yield member
    finally:
        with contextlib.suppress(Exception):
            clusters.delete_if_exists(cluster_id, namespace=broker_namespace)
        with contextlib.suppress(Exception):
            crud.ResourceClient(api_client, NAMESPACES).delete_if_exists(member)


def configmap(namespace: str, name: str, **data: str) -> dict[str, Any]:
    """A ConfigMap body: the plainest object to watch change."""
    return {"metadata": {"name": name, "namespace": namespace}, "data": data}


def legacy_mcs_crd_manifests(version: str = MCS_LEGACY_VERSIONS[0]) -> list[dict[str, Any]]:
    """The MCS CRDs as an older release shipped them: only ``version``, stored, and its
    schema without what v1beta1 added (so the server prunes those fields, as it would)."""
    out = []
    for manifest in crds.load_crd_manifests():
        if manifest["spec"]["group"] != MCS_GROUP:
            continue
        legacy = copy.deepcopy(manifest)
        legacy["spec"]["versions"] = [{**v, "storage": True} for v in legacy["spec"]["versions"]
                                      if v["name"] == version]
        for entry in legacy["spec"]["versions"]:
            root = entry["schema"]["openAPIV3Schema"]["properties"]
            if legacy["spec"]["names"]["kind"] == "ServiceExport":
                root.pop("spec", None)
                continue
            spec = root["spec"]["properties"]
            for field in ("ipFamilies", "internalTrafficPolicy", "trafficDistribution"):
                spec.pop(field)
            spec["ips"]["maxItems"] = 1
            root["status"]["properties"].pop("conditions")
        out.append(legacy)
    return out


def install_legacy_mcs_crds(api_client: ApiClient, *, timeout: float = 30.0) -> None:
    """Create the legacy MCS CRDs and wait until the server serves them."""
    definitions = crud.ResourceClient(api_client, CUSTOM_RESOURCE_DEFINITIONS)
    manifests = legacy_mcs_crd_manifests()
    for manifest in manifests:
        definitions.create(manifest)
    crds.await_established(definitions, [m["metadata"]["name"] for m in manifests],
                           timeout=timeout)
