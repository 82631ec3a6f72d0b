"""The Broker's address pools, allocated safely under concurrent joins.

The decision is `cidr_allocation`'s; here it is applied with optimistic
concurrency: read the pool's ConfigMap, compute, write back with its
resourceVersion. A 409 (someone else wrote first) or a lost create race means read
again and recompute, so twenty clusters joining at once still get twenty disjoint
slices. One mechanism serves both pools: :class:`BrokerGlobalnet` (the global
CIDRs) and :class:`BrokerClustersetIPs` (the ClusterSetIP VIP slices).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, ClassVar

from globalnet.cidr_allocation import (
    DEFAULT_CIDR_RANGE,
    DEFAULT_CLUSTER_SIZE,
    DEFAULT_CLUSTERSET_IP_CLUSTER_SIZE,
    DEFAULT_CLUSTERSET_IP_RANGE,
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


class BrokerCidrPool:
    """One pool's record on the Broker, read and changed atomically."""

    configmap: ClassVar[str]
    keys: ClassVar[names.PoolKeys]
    what: ClassVar[str]  # the pool's slices in messages
    deploy_hint: ClassVar[str]  # how a missing record is made
    # What a record that leaves out its range or size has.
    default_range: ClassVar[str]
    default_cluster_size: ClassVar[int]

    def __init__(self, api_client: Any, *, namespace: str = names.BROKER_NAMESPACE) -> None:
        self.namespace = namespace
        self._configmaps = ResourceClient(api_client, resources.CONFIGMAPS)
        self._namespaces = ResourceClient(api_client, resources.NAMESPACES)

    def read(self) -> GlobalnetInfo | None:
        cm = self._configmaps.get_or_none(self.configmap, namespace=self.namespace)
        return None if cm is None else self._decode(cm)

    def ensure_info(self, *, cidr_range: str, cluster_size: int, enabled: bool = True
                    ) -> GlobalnetInfo:
        """Record the clusterset's range (deploy-broker); an existing record is kept,
        apart from turning ``enabled`` on when asked."""
        validate_range(cidr_range, cluster_size, what=self.what)
        self._ensure_namespace()
        wanted = GlobalnetInfo(cidr_range=cidr_range, cluster_size=cluster_size,
                               enabled=enabled)

        def change(current: GlobalnetInfo | None) -> GlobalnetInfo:
            if current is None:
                return wanted
            return GlobalnetInfo(cidr_range=current.cidr_range,
                                 cluster_size=current.cluster_size,
                                 enabled=current.enabled or enabled,
                                 clusters=current.clusters)

        return self._update(change)

    def join(
        self, cluster_id: str, *, requested_cidr: str | None = None, size: int | None = None
    ) -> str:
        """Allocate (or return) `cluster_id`'s slice."""
        chosen: list[str] = []

        def change(current: GlobalnetInfo | None) -> GlobalnetInfo:
            if current is None:
                raise CidrAllocationError(
                    f"the Broker has no {self.configmap} ConfigMap in {self.namespace}: "
                    f"{self.deploy_hint}")
            cidr, updated = allocate_cluster_cidr(
                current, cluster_id, requested_cidr=requested_cidr, size=size, what=self.what)
            chosen[:] = [cidr]
            return updated

        self._update(change)
        return chosen[0]

    def leave(self, cluster_id: str) -> None:
        """Release `cluster_id`'s slice (no-op when it holds none)."""
        self._update(lambda current: None if current is None
                     else release_cluster_cidr(current, cluster_id))

    # --- compare and swap ----------------------------------------------------------------
    def _decode(self, cm: dict[str, Any]) -> GlobalnetInfo:
        return GlobalnetInfo.from_configmap_data(
            cm.get("data") or {}, self.keys, what=f"{self.configmap} record",
            default_range=self.default_range, default_cluster_size=self.default_cluster_size)

    def _update(
        self, change: Callable[[GlobalnetInfo | None], GlobalnetInfo | None]
    ) -> GlobalnetInfo:
        for attempt in range(MAX_ATTEMPTS):
            cm = self._configmaps.get_or_none(self.configmap, namespace=self.namespace)
            current = None if cm is None else self._decode(cm)
            updated = change(current)
            if updated is None or updated == current:
                return updated or GlobalnetInfo()
            try:
                if cm is None:
                    self._configmaps.create({
                        "metadata": {"name": self.configmap, "namespace": self.namespace},
                        "data": updated.to_configmap_data(self.keys),
                    })
                else:
                    cm["data"] = updated.to_configmap_data(self.keys)
                    self._configmaps.update(cm)
                return updated
            except Exception as exc:
                if not (errors.is_conflict(exc) or errors.is_already_exists(exc)):
                    raise
            # Jittered backoff keeps many joiners from colliding in lock step.
            time.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))
        raise BrokerConflictError(
            f"could not update {self.configmap} after {MAX_ATTEMPTS} attempts"
        )

    def _ensure_namespace(self) -> None:
        self._namespaces.create_if_absent({"metadata": {"name": self.namespace}})


class BrokerGlobalnet(BrokerCidrPool):
    """The global CIDRs: one per member, the addresses Globalnet translates to."""

    configmap = names.GLOBALNET_INFO_CONFIGMAP
    keys = names.GLOBALNET_KEYS
    what = "global CIDR"
    deploy_hint = "deploy it with `gnctl deploy-broker --globalnet`"
    default_range = DEFAULT_CIDR_RANGE
    default_cluster_size = DEFAULT_CLUSTER_SIZE


class BrokerClustersetIPs(BrokerCidrPool):
    """The ClusterSetIP VIP slices: a member hands its slice's VIPs to the services
    whose oldest export is its own."""

    configmap = names.CLUSTERSET_IP_CONFIGMAP
    keys = names.CLUSTERSET_IP_KEYS
    what = "ClusterSetIP CIDR"
    deploy_hint = "deploy the Broker again with this version of `gnctl deploy-broker`"
    default_range = DEFAULT_CLUSTERSET_IP_RANGE
    default_cluster_size = DEFAULT_CLUSTERSET_IP_CLUSTER_SIZE
