"""Global CIDR allocation on the Broker, safe under concurrent joins.

The decision is `cidr_allocation`'s; here it is applied with optimistic
concurrency: read the Broker's Globalnet ConfigMap, compute, write back
with its resourceVersion. A 409 (someone else wrote first) or a lost create race
means read again and recompute, so twenty clusters joining at once still get
twenty disjoint CIDRs.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from globalnet.cidr_allocation import (
    CidrAllocationError,
    GlobalnetInfo,
    allocate_cluster_cidr,
    release_cluster_cidr,
    validate_range,
)
from kube import errors, names, resources
from kube.crud import ResourceClient

MAX_ATTEMPTS = 100


class BrokerConflictError(RuntimeError):
    """Gave up after too many concurrent writers."""


class BrokerGlobalnet:
    """The Broker's global CIDR record, read and changed atomically."""

    def __init__(self, api_client: Any, *, namespace: str = names.BROKER_NAMESPACE) -> None:
        self.namespace = namespace
        self._configmaps = ResourceClient(api_client, resources.CONFIGMAPS)
        self._namespaces = ResourceClient(api_client, resources.NAMESPACES)

    def read(self) -> GlobalnetInfo | None:
        cm = self._configmaps.get_or_none(names.GLOBALNET_INFO_CONFIGMAP, namespace=self.namespace)
        return None if cm is None else GlobalnetInfo.from_configmap_data(cm.get("data") or {})

    def ensure_info(self, *, cidr_range: str, cluster_size: int) -> GlobalnetInfo:
        """Record the clusterset's range (deploy-broker); an existing record is kept."""
        validate_range(cidr_range, cluster_size)
        self._ensure_namespace()
        wanted = GlobalnetInfo(cidr_range=cidr_range, cluster_size=cluster_size)
        return self._update(lambda current: current or wanted)

    def join(
        self, cluster_id: str, *, requested_cidr: str | None = None, size: int | None = None
    ) -> str:
        """Allocate (or return) `cluster_id`'s global CIDR."""
        chosen: list[str] = []

        def change(current: GlobalnetInfo | None) -> GlobalnetInfo:
            if current is None:
                raise CidrAllocationError(
                    f"the Broker has no {names.GLOBALNET_INFO_CONFIGMAP} ConfigMap in "
                    f"{self.namespace}: "
                    "deploy it with `gnctl deploy-broker --globalnet`"
                )
            cidr, updated = allocate_cluster_cidr(
                current, cluster_id, requested_cidr=requested_cidr, size=size
            )
            chosen[:] = [cidr]
            return updated

        self._update(change)
        return chosen[0]

    def leave(self, cluster_id: str) -> None:
        """Release `cluster_id`'s CIDR (no-op when it holds none)."""
        self._update(lambda current: None if current is None
                     else release_cluster_cidr(current, cluster_id))

    # --- compare and swap ----------------------------------------------------------------
    def _update(
        self, change: Callable[[GlobalnetInfo | None], GlobalnetInfo | None]
    ) -> GlobalnetInfo:
        for attempt in range(MAX_ATTEMPTS):
            cm = self._configmaps.get_or_none(names.GLOBALNET_INFO_CONFIGMAP,
                                              namespace=self.namespace)
            current = None if cm is None else GlobalnetInfo.from_configmap_data(
                cm.get("data") or {}
            )
            updated = change(current)
            if updated is None or updated == current:
                return updated or GlobalnetInfo()
            try:
                if cm is None:
                    self._configmaps.create({
                        "metadata": {"name": names.GLOBALNET_INFO_CONFIGMAP,
                                     "namespace": self.namespace},
                        "data": updated.to_configmap_data(),
                    })
                else:
                    cm["data"] = updated.to_configmap_data()
                    self._configmaps.update(cm)
                return updated
            except Exception as exc:
                if not (errors.is_conflict(exc) or errors.is_already_exists(exc)):
                    raise
            # Jittered backoff keeps many joiners from colliding in lock step.
            time.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))
        raise BrokerConflictError(
            f"could not update {names.GLOBALNET_INFO_CONFIGMAP} after {MAX_ATTEMPTS} attempts"
        )

    def _ensure_namespace(self) -> None:
        self._namespaces.create_if_absent({"metadata": {"name": self.namespace}})
