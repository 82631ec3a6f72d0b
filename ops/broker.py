"""`show brokers`: the Broker's namespaces, the clusterset's Globalnet settings, its
ClusterSetIP pool and who joined, read from the Broker's own API server.

A member knows its Broker from what `gnctl join` recorded: a kubeconfig with the
member's Broker identity in Secret `names.BROKER_KUBECONFIG_SECRET` of the cluster
namespace (the agents mount it). That identity reads the Cluster objects and every
member's Endpoints, not the Globalnet ConfigMap; where it may not read, the view
says so instead of failing, and the members' global CIDRs come from their Cluster
objects. A Broker named by the user (`--broker-kubeconfig`/`--broker-context`, the
Broker's admin) is searched for every namespace holding a Broker: those with the
join identity `names.BROKER_JOIN_ACCOUNT`, which `gnctl deploy-broker` makes.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from globalnet.broker import BrokerClustersetIPs
from globalnet.cidr_allocation import CidrAllocationError, GlobalnetInfo
from kube import errors, names, resources
from kube import objects as o
from kube.client import KubeconfigError, api_client_from_dict, new_api_client
from kube.crud import ResourceClient
from ops.cluster import ClusterState
from ops.errors import InventoryError

JSON = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True)
class BrokerConnection:
    api: Any
    server: str
    source: str  # where it came from, for the user
    namespace: str | None  # the Broker namespace it names; None: find them


@dataclass(frozen=True)
class BrokerMember:
    cluster_id: str
    global_cidrs: tuple[str, ...]
    pod_cidrs: tuple[str, ...]
    service_cidrs: tuple[str, ...]
    cable_driver: str  # "" when its Cluster object does not say
    published: bool  # its Cluster object is on the Broker (not only a CIDR allocation)
    endpoints: int | None  # Endpoints in its member namespace; None: not readable
    clusterset_ip_cidr: str = ""  # its slice of the ClusterSetIP pool ("": none known)


@dataclass(frozen=True)
class BrokerNamespace:
    namespace: str
    globalnet: bool | None  # None: the Globalnet record is not readable
    global_cidr_range: str
    cluster_size: int
    members: tuple[BrokerMember, ...]
    notes: tuple[str, ...]  # what could not be read, and why
    # The ClusterSetIP pool ("" and 0: none recorded or not readable).
    clusterset_ip_range: str = ""
    clusterset_ip_cluster_size: int = 0
    # Every ClusterSetIP service answers its VIP (deploy-broker --enable-clusterset-ip).
    clusterset_ip_for_all: bool = False


@dataclass(frozen=True)
class BrokersView:
    server: str
    source: str
    namespaces: tuple[BrokerNamespace, ...]


# --- reaching the Broker ------------------------------------------------------------------

def named_broker(kubeconfig: Path, *, context: str | None) -> BrokerConnection:
    """The Broker the user names (a kubeconfig and one of its contexts)."""
    api = new_api_client(kubeconfig, context=context, retries=0)
    where = f"--broker-kubeconfig {kubeconfig}" + (f" --broker-context {context}"
                                                   if context else "")
    return BrokerConnection(api, str(api.configuration.host), where, None)


def recorded_broker(state: ClusterState) -> BrokerConnection:
    """The Broker the member cluster of `state` joined, as `gnctl join` recorded it."""
    where = f"Secret {state.namespace}/{names.BROKER_KUBECONFIG_SECRET}"
    secret = state.broker_secret()
    if secret is None:
        raise InventoryError(f"the cluster of {state.server} records no Broker ({where} not "
                             "found: is it joined?); name one with --broker-kubeconfig or "
                             "--broker-context")
    config = _secret_kubeconfig(secret, where)
    try:
        api = api_client_from_dict(config, retries=0)
    except KubeconfigError as exc:
        raise InventoryError(f"the Broker kubeconfig in {where}: {exc}") from None
    return BrokerConnection(api, str(api.configuration.host), where,
                            _context_namespace(config) or names.BROKER_NAMESPACE)


def _secret_kubeconfig(secret: JSON, where: str) -> JSON:
    encoded = (secret.get("data") or {}).get(names.BROKER_KUBECONFIG_KEY)
    try:
        config = yaml.safe_load(base64.b64decode(encoded or "", validate=True))
    except (binascii.Error, ValueError, yaml.YAMLError):
        config = None
    if not isinstance(config, dict):
        raise InventoryError(f"{where} holds no kubeconfig under "
                             f"{names.BROKER_KUBECONFIG_KEY!r}")
    return config


def _context_namespace(config: JSON) -> str | None:
    current = config.get("current-context")
    for entry in config.get("contexts") or []:
        if isinstance(entry, dict) and entry.get("name") == current:
            namespace = (entry.get("context") or {}).get("namespace")
            return str(namespace) if namespace else None
    return None


# --- reading it ---------------------------------------------------------------------------

def read_brokers(conn: BrokerConnection) -> BrokersView:
    try:
        namespaces = [conn.namespace] if conn.namespace else _broker_namespaces(conn)
        return BrokersView(conn.server, conn.source,
                           tuple(_read_namespace(conn.api, ns) for ns in namespaces))
    except Exception as exc:
        if errors.is_connection_error(exc):
            raise InventoryError(
                f"cannot reach the Broker at {conn.server} (from {conn.source}): "
                f"{errors.connection_reason(exc)}; name a way to it with --broker-kubeconfig "
                "or --broker-context") from None
        if errors.is_not_found(exc):
            raise InventoryError(f"no Broker at {conn.server} (from {conn.source}): "
                                 "Globalnet's CRDs are not there (`gnctl deploy-broker` "
                                 "installs them)") from None
        raise


def _broker_namespaces(conn: BrokerConnection) -> list[str]:
    try:
        accounts = ResourceClient(conn.api, resources.SERVICE_ACCOUNTS).list(
            field_selector=f"metadata.name={names.BROKER_JOIN_ACCOUNT}").items
    except Exception as exc:
        if not errors.is_forbidden(exc):
            raise
        return [names.BROKER_NAMESPACE]  # may not look: the default one
    found = sorted({o.namespace(a) for a in accounts})
    if not found:
        raise InventoryError(f"no Broker at {conn.server} (from {conn.source}): no namespace "
                             f"holds its join identity {names.BROKER_JOIN_ACCOUNT} "
                             "(`gnctl deploy-broker` makes it)")
    return found


def _readable(read: Callable[[], T], notes: list[str], what: str) -> T | None:
    """`read()`, or None with a note when this identity may not (403)."""
    try:
        return read()
    except Exception as exc:
        if not errors.is_forbidden(exc):
            raise
        notes.append(f"{what}: not readable with this identity (403)")
        return None


def _read_namespace(api: Any, namespace: str) -> BrokerNamespace:
    notes: list[str] = []
    configmap = _readable(lambda: ResourceClient(api, resources.CONFIGMAPS).get_or_none(
        names.GLOBALNET_INFO_CONFIGMAP, namespace=namespace), notes,
        f"the Globalnet record (ConfigMap {names.GLOBALNET_INFO_CONFIGMAP})")
    known = not notes  # whether Globalnet is on is known (an absent record: it is off)
    info: GlobalnetInfo | None = None
    if configmap is not None:
        try:
            info = GlobalnetInfo.from_configmap_data(configmap.get("data") or {})
        except CidrAllocationError as exc:
            notes.append(str(exc))
            known = False
    pool = _clusterset_ip_pool(api, namespace, notes)
    clusters = _readable(lambda: ResourceClient(api, resources.CLUSTERS).list(
        namespace=namespace).items, notes, "the Cluster objects") or []
    enabled = info is not None and info.enabled
    return BrokerNamespace(
        namespace=namespace, globalnet=enabled if known else None,
        global_cidr_range=info.cidr_range if info and enabled else "",
        cluster_size=info.cluster_size if info and enabled else 0,
        members=tuple(_members(api, namespace, clusters, info, pool, notes)),
        notes=tuple(notes),
        clusterset_ip_range=pool.cidr_range if pool else "",
        clusterset_ip_cluster_size=pool.cluster_size if pool else 0,
        clusterset_ip_for_all=bool(pool and pool.enabled))


def _clusterset_ip_pool(api: Any, namespace: str, notes: list[str]) -> GlobalnetInfo | None:
    try:
        return _readable(BrokerClustersetIPs(api, namespace=namespace).read, notes,
                         f"the ClusterSetIP pool (ConfigMap {names.CLUSTERSET_IP_CONFIGMAP})")
    except CidrAllocationError as exc:
        notes.append(str(exc))
        return None


def _endpoint_count(api: Any, namespace: str, cluster_id: str, notes: list[str]) -> int | None:
    member_namespace = names.broker_member_namespace(cluster_id, namespace)
    items = _readable(lambda: ResourceClient(api, resources.SUBMARINER_ENDPOINTS).list(
        namespace=member_namespace).items, notes, f"the Endpoints in {member_namespace}")
    return None if items is None else len(items)


def _members(api: Any, namespace: str, clusters: list[JSON], info: GlobalnetInfo | None,
             pool: GlobalnetInfo | None, notes: list[str]) -> list[BrokerMember]:
    published = {str(o.spec(c).get("cluster_id") or o.name(c)): c for c in clusters}
    allocated = dict(info.clusters) if info else {}
    members = []
    for cluster_id in sorted(set(published) | set(allocated)):
        cluster = published.get(cluster_id) or {}
        spec = o.spec(cluster)
        members.append(BrokerMember(
            cluster_id=cluster_id,
            global_cidrs=tuple(spec.get("global_cidr") or allocated.get(cluster_id) or ()),
            pod_cidrs=tuple(spec.get("cluster_cidr") or ()),
            service_cidrs=tuple(spec.get("service_cidr") or ()),
            cable_driver=o.annotations_of(cluster).get(names.CABLE_DRIVER_ANNOTATION, ""),
            published=cluster_id in published,
            endpoints=_endpoint_count(api, namespace, cluster_id, notes),
            clusterset_ip_cidr=", ".join(pool.clusters.get(cluster_id, ())) if pool else ""))
    return members
