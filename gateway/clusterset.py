"""Joining and leaving the clusterset: the Broker's records and the Cluster objects.

What `gnctl deploy-broker`, `gnctl join` and `gnctl leave` do, as functions the
lab uses too:

* deploy-broker: our CRDs and the Broker namespace on the Broker's API server,
  with Globalnet the clusterset's global range and per-cluster size (the
  Broker's Globalnet ConfigMap, upstream's keys), and the ClusterSetIP VIP pool
  (a ConfigMap of its own, disjoint from the global range); an existing record
  is kept, never overwritten.
* join: checks everything first, then allocates (or finds again) the cluster's
  global CIDR and ClusterSetIP slice on the Broker, installs the CRDs in the
  cluster, and publishes the cluster's `Cluster` object - its pod, service and
  global CIDRs - to the Broker and into the cluster, copying the other members'
  objects in as well.
* leave: releases the global CIDR and the ClusterSetIP slice and withdraws the
  `Cluster` objects (its own from the Broker, every member's from the cluster).

Every member's Globalnet reads the remote global CIDRs from the `Cluster`
objects in its own cluster. `sync_cluster_objects` mirrors the Broker's into a
cluster; the gateway engine's Broker syncer will keep doing that continuously.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import netaddr

from globalnet.broker import BrokerClustersetIPs, BrokerGlobalnet
from globalnet.cidr_allocation import (
    DEFAULT_CLUSTERSET_IP_CLUSTER_SIZE,
    DEFAULT_CLUSTERSET_IP_RANGE,
    CidrAllocationError,
    GlobalnetInfo,
    refuse_overlap,
)
from kube import crds, names, resources
from kube import objects as o
from kube.crud import ResourceClient, ensure_namespace

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

JSON = dict[str, Any]


class ClustersetError(ValueError):
    """A request that cannot be carried out; the message is for the user."""


@dataclass(frozen=True)
class JoinRequest:
    """One cluster asking to join (flags of `gnctl join`)."""

    cluster_id: str
    cluster_cidrs: tuple[str, ...]
    service_cidrs: tuple[str, ...]
    globalnet_cidr: str | None = None  # a specific CIDR instead of the next free one
    globalnet_cluster_size: int | None = None  # global IPs, instead of the Broker's default
    # The UID of the cluster's kube-system namespace: a cluster ID held by a cluster
    # with another UID is refused (None: not checked).
    cluster_uid: str | None = None
    # The cable driver of its gateways (recorded on its Cluster object); a join with
    # another driver than the members' is refused (None: not checked).
    cable_driver: str | None = None


@dataclass(frozen=True)
class Membership:
    """What a join granted."""

    cluster_id: str
    global_cidr: str | None  # None: the clusterset does not use Globalnet
    members: tuple[str, ...] = field(default=())  # every cluster on the Broker, this one too
    # The cluster's slice of the ClusterSetIP pool (None: a Broker without the pool).
    clusterset_ip_cidr: str | None = None
    # The clusterset answers every ClusterSetIP service's VIP in DNS (the pool's flag).
    clusterset_ip_enabled: bool = False


@dataclass(frozen=True)
class ClustersetIPPool:
    """The ClusterSetIP VIP pool deploy-broker records (flags of `gnctl deploy-broker`)."""

    cidr_range: str = DEFAULT_CLUSTERSET_IP_RANGE
    cluster_size: int = DEFAULT_CLUSTERSET_IP_CLUSTER_SIZE
    # Every ClusterSetIP service answers its VIP in DNS, not only annotated ones.
    enabled: bool = False


@dataclass(frozen=True)
class BrokerRecords:
    """The Broker's pools in force after deploy-broker (maybe recorded earlier)."""

    globalnet: GlobalnetInfo | None
    clusterset_ips: GlobalnetInfo


def validate_request(request: JoinRequest, *, cidrs_pending: bool = False) -> None:
    """Refuse bad input before anything is written (``cidrs_pending``: empty CIDR lists
    are still to be discovered, so only the given ones are checked)."""
    if not _DNS_LABEL.match(request.cluster_id) or len(names.broker_member_namespace(
            request.cluster_id)) > names.BROKER_MEMBER_NAMESPACE_MAX:
        raise ClustersetError(
            f"cluster ID {request.cluster_id!r} is not a DNS label "
            "(lower-case letters, digits and '-', starting and ending alphanumeric, at most "
            f"{names.BROKER_MEMBER_NAMESPACE_MAX - len(names.broker_member_namespace(''))})")
    for what, cidrs in (("cluster CIDR", request.cluster_cidrs),
                        ("service CIDR", request.service_cidrs)):
        if not cidrs and not cidrs_pending:
            raise ClustersetError(f"a {what} is required")
        for cidr in cidrs:
            _network(cidr, what)
    if request.globalnet_cidr is not None:
        _network(request.globalnet_cidr, "Globalnet CIDR")
    if request.globalnet_cluster_size is not None and request.globalnet_cluster_size <= 0:
        raise ClustersetError(
            f"Globalnet cluster size {request.globalnet_cluster_size} must be positive")


def _network(cidr: str, what: str) -> netaddr.IPNetwork:
    try:
        net = netaddr.IPNetwork(cidr, version=4)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise ClustersetError(f"invalid {what} {cidr!r}: expected an IPv4 CIDR such as "
                              "10.244.0.0/16") from None
    if str(net.cidr) != cidr:
        raise ClustersetError(f"invalid {what} {cidr!r}: host bits set (did you mean {net.cidr}?)")
    return net


def deploy_broker(broker_api: Any, *, globalnet: bool, cidr_range: str, cluster_size: int,
                  clusterset_ips: ClustersetIPPool = ClustersetIPPool(),
                  namespace: str = names.BROKER_NAMESPACE) -> BrokerRecords:
    """Make `broker_api` a Broker; returns the records in force (maybe older)."""
    from globalnet.cidr_allocation import validate_range

    broker = BrokerGlobalnet(broker_api, namespace=namespace)
    pool = BrokerClustersetIPs(broker_api, namespace=namespace)
    try:
        if globalnet:
            validate_range(cidr_range, cluster_size)
        validate_range(clusterset_ips.cidr_range, clusterset_ips.cluster_size,
                       what=pool.what)
        # Against the range in force: a kept older record's, not the flag's.
        current = broker.read()
        global_range = current.cidr_range if current and current.enabled else (
            cidr_range if globalnet else None)
        existing_pool = pool.read()
        pool_range = existing_pool.cidr_range if existing_pool else clusterset_ips.cidr_range
        if global_range:
            refuse_overlap(pool_range, {"global CIDR range": global_range},
                           what=f"{pool.what} range")
    except CidrAllocationError as exc:
        raise ClustersetError(str(exc)) from None
    crds.install_crds(broker_api)
    ensure_namespace(broker_api, namespace)
    ips = pool.ensure_info(cidr_range=clusterset_ips.cidr_range,
                           cluster_size=clusterset_ips.cluster_size,
                           enabled=clusterset_ips.enabled)
    if not globalnet:
        return BrokerRecords(broker.read(), ips)
    return BrokerRecords(broker.ensure_info(cidr_range=cidr_range, cluster_size=cluster_size),
                         ips)


def join(cluster_api: Any, broker_api: Any, request: JoinRequest, *,
         broker_namespace: str = names.BROKER_NAMESPACE,
         cluster_namespace: str = names.CLUSTER_NAMESPACE) -> Membership:
    """Join `request.cluster_id` (again: a rejoin keeps its global CIDR)."""
    validate_request(request)
    if not _namespace_exists(broker_api, broker_namespace):
        raise ClustersetError(f"no Broker here: namespace {broker_namespace} does not exist "
                              "(run `gnctl deploy-broker` against the Broker first)")
    _check_cluster_id_free(broker_api, request, broker_namespace)
    _check_cable_driver(broker_api, request, broker_namespace)
    broker = BrokerGlobalnet(broker_api, namespace=broker_namespace)
    pool = BrokerClustersetIPs(broker_api, namespace=broker_namespace)
    info = broker.read()
    pool_info = _check_pool_disjoint(pool, request)
    global_cidr = None
    if info is not None and info.enabled:
        try:
            global_cidr = broker.join(request.cluster_id, requested_cidr=request.globalnet_cidr,
                                      size=request.globalnet_cluster_size)
        except CidrAllocationError as exc:
            raise ClustersetError(str(exc)) from None
    elif request.globalnet_cidr or request.globalnet_cluster_size:
        raise ClustersetError("the Broker was deployed without Globalnet: "
                              "--globalnet-cidr and --globalnet-cluster-size do not apply")
    clusterset_ip_cidr = None
    if pool_info is not None:
        try:
            clusterset_ip_cidr = pool.join(request.cluster_id)
        except CidrAllocationError as exc:
            raise ClustersetError(str(exc)) from None
    crds.install_crds(cluster_api)
    ensure_namespace(cluster_api, cluster_namespace)
    body = cluster_object(request, global_cidr)
    _upsert(ResourceClient(broker_api, resources.CLUSTERS), body, broker_namespace)
    members = sync_cluster_objects(cluster_api, broker_api, broker_namespace=broker_namespace,
                                   cluster_namespace=cluster_namespace)
    return Membership(request.cluster_id, global_cidr, tuple(members), clusterset_ip_cidr,
                      clusterset_ip_enabled=pool_info is not None and pool_info.enabled)


def _check_pool_disjoint(pool: BrokerClustersetIPs, request: JoinRequest
                         ) -> GlobalnetInfo | None:
    """The ClusterSetIP pool (None: the Broker predates it), refused when it overlaps
    the cluster's own pod or service CIDRs: its pods could not reach those addresses."""
    try:
        info = pool.read()
        if info is not None:
            refuse_overlap(info.cidr_range, {
                **{f"cluster CIDR of {request.cluster_id}": c for c in request.cluster_cidrs},
                **{f"service CIDR of {request.cluster_id}": c for c in request.service_cidrs}},
                what=f"the Broker's {pool.what} range")
    except CidrAllocationError as exc:
        raise ClustersetError(str(exc)) from None
    return info


def preview_join(broker_api: Any, request: JoinRequest, *,
                 broker_namespace: str = names.BROKER_NAMESPACE) -> str | None:
    """The global CIDR `join` would grant, computed without writing anything (for
    ``--dry-run``); None when the clusterset does not use Globalnet."""
    from globalnet.cidr_allocation import allocate_cluster_cidr

    validate_request(request)
    _check_cluster_id_free(broker_api, request, broker_namespace)
    _check_cable_driver(broker_api, request, broker_namespace)
    _check_pool_disjoint(BrokerClustersetIPs(broker_api, namespace=broker_namespace), request)
    info = BrokerGlobalnet(broker_api, namespace=broker_namespace).read()
    if info is None or not info.enabled:
        return None
    try:
        cidr, _ = allocate_cluster_cidr(info, request.cluster_id,
                                        requested_cidr=request.globalnet_cidr,
                                        size=request.globalnet_cluster_size)
    except CidrAllocationError as exc:
        raise ClustersetError(str(exc)) from None
    return cidr


def _check_cable_driver(broker_api: Any, request: JoinRequest, broker_namespace: str
                        ) -> None:
    """Refuse a driver the other members' gateways do not speak (their cables could
    never connect to this cluster's): one line naming theirs."""
    if request.cable_driver is None:
        return
    theirs = {}
    for obj in ResourceClient(broker_api, resources.CLUSTERS).list(
            namespace=broker_namespace).items:
        driver = o.annotations_of(obj).get(names.CABLE_DRIVER_ANNOTATION)
        if o.name(obj) != request.cluster_id and driver and driver != request.cable_driver:
            theirs[o.name(obj)] = driver
    if theirs:
        listed = ", ".join(f"{c}: {d}" for c, d in sorted(theirs.items()))
        raise ClustersetError(
            f"cable driver {request.cable_driver} differs from the clusterset's ({listed}); "
            f"join with --cable-driver {sorted(set(theirs.values()))[0]}")


def _check_cluster_id_free(broker_api: Any, request: JoinRequest, broker_namespace: str
                           ) -> None:
    """Refuse a cluster ID that another cluster (another kube-system UID) holds."""
    if request.cluster_uid is None:
        return
    current = ResourceClient(broker_api, resources.CLUSTERS).get_or_none(
        request.cluster_id, namespace=broker_namespace)
    held_by = o.annotations_of(current).get(names.CLUSTER_UID_ANNOTATION) if current else None
    if held_by and held_by != request.cluster_uid:
        raise ClustersetError(
            f"cluster ID {request.cluster_id} is already used by another cluster (kube-system "
            f"UID {held_by}); choose another --clusterid, or `gnctl leave` that cluster first")


def leave(cluster_api: Any | None, broker_api: Any, cluster_id: str, *,
          broker_namespace: str = names.BROKER_NAMESPACE,
          cluster_namespace: str = names.CLUSTER_NAMESPACE) -> bool:
    """Release `cluster_id`'s global CIDR, withdraw its Cluster object from the
    Broker and drop every member's from the cluster (it no longer translates for
    anyone); True when it was a member. `cluster_api` None: the cluster is gone."""
    held = False
    for pool in (BrokerGlobalnet(broker_api, namespace=broker_namespace),
                 BrokerClustersetIPs(broker_api, namespace=broker_namespace)):
        info = pool.read()
        if info is not None and cluster_id in info.clusters:
            pool.leave(cluster_id)
            held = True
    published = ResourceClient(broker_api, resources.CLUSTERS).delete_if_exists(
        cluster_id, namespace=broker_namespace)
    if cluster_api is not None:
        local = ResourceClient(cluster_api, resources.CLUSTERS)
        for obj in local.list(namespace=cluster_namespace).items:
            local.delete_if_exists(o.name(obj), namespace=cluster_namespace)
    return held or published


def cluster_object(request: JoinRequest, global_cidr: str | None) -> JSON:
    """The `Cluster` object of a member (upstream's field names)."""
    spec: JSON = {"cluster_id": request.cluster_id,
                  "cluster_cidr": list(request.cluster_cidrs),
                  "service_cidr": list(request.service_cidrs),
                  "global_cidr": [global_cidr] if global_cidr else []}
    metadata: JSON = {"name": request.cluster_id}
    annotations = {}
    if request.cluster_uid:
        annotations[names.CLUSTER_UID_ANNOTATION] = request.cluster_uid
    if request.cable_driver:
        annotations[names.CABLE_DRIVER_ANNOTATION] = request.cable_driver
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": resources.CLUSTERS.api_version,
            "kind": resources.CLUSTERS.kind, "metadata": metadata, "spec": spec}


def sync_cluster_objects(cluster_api: Any, broker_api: Any, *,
                         broker_namespace: str = names.BROKER_NAMESPACE,
                         cluster_namespace: str = names.CLUSTER_NAMESPACE) -> list[str]:
    """Make the cluster's Cluster objects the Broker's; returns the members."""
    published = ResourceClient(broker_api, resources.CLUSTERS).list(
        namespace=broker_namespace).items
    local = ResourceClient(cluster_api, resources.CLUSTERS)
    wanted = {o.name(c): c for c in published}
    for name, obj in wanted.items():
        _upsert(local, {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
                        "metadata": {"name": name}, "spec": o.spec(obj)}, cluster_namespace)
    for obj in local.list(namespace=cluster_namespace).items:
        if o.name(obj) not in wanted:
            local.delete_if_exists(o.name(obj), namespace=cluster_namespace)
    return sorted(wanted)


def _upsert(client: ResourceClient, body: JSON, namespace: str) -> None:
    body = {**body, "metadata": {**body["metadata"], "namespace": namespace}}
    current = client.get_or_none(body["metadata"]["name"], namespace=namespace)
    if current is None:
        if client.create_if_absent(body, namespace=namespace) is not None:
            return
        current = client.get(body["metadata"]["name"], namespace=namespace)
    wanted = body["metadata"].get("annotations") or {}
    merged = {**o.annotations_of(current), **wanted}
    if o.spec(current) != body["spec"] or merged != o.annotations_of(current):
        client.update({**current, "spec": body["spec"],
                       "metadata": {**current["metadata"], "annotations": merged}},
                      namespace=namespace)


def _namespace_exists(api: Any, namespace: str) -> bool:
    return ResourceClient(api, resources.NAMESPACES).get_or_none(namespace) is not None
