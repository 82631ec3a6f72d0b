"""Install Globalnet onto a Broker and its member clusters: what `gnctl deploy-broker`,
`gnctl join`, `gnctl leave` and `gnctl uninstall` do.

* ``deploy_broker``: the CRDs, the Broker namespace and the clusterset's Globalnet
  record (``gateway.clusterset``), the Broker's roles and join identity
  (``deploy.broker``); returns the broker-info the members join with.
* ``join``: checks everything it can before writing (the broker-info token, the
  cluster ID, the CIDRs - discovered when not given, ``deploy.discover`` - and a
  gateway node), then allocates the global CIDR and publishes the Cluster object,
  creates the member's Broker identity, server-side applies the manifests
  (``deploy.manifests``) and waits until the agents run. A first join that fails
  half-way is undone entirely; ``dry_run`` writes nothing and returns the objects.
* ``leave``: revokes the member's Broker identity first (its running agents can no
  longer write or read the Broker), withdraws its Cluster object (every other member
  drops its Endpoint, routes, imports and DNS answers at once) and releases its CIDR.
* ``uninstall``: deletes every object join applied in the cluster (the MCS CRDs stay:
  they hold the users' ServiceExports).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import yaml

from deploy import broker as broker_identity
from deploy import discover, manifests
from deploy.brokerinfo import BrokerInfo
from gateway import clusterset
from kube import errors, names, resources
from kube import objects as o
from kube.crud import ResourceClient, ensure_namespace

JSON = dict[str, Any]
Progress = Callable[[str], object]
FIELD_MANAGER: Final = broker_identity.FIELD_MANAGER
DEFAULT_WAIT: Final = 300.0
MCS_GROUP: Final = resources.MCS_GROUP


class InstallError(RuntimeError):
    """Installing could not go on; the message is one line for the user."""


# --- Broker --------------------------------------------------------------------------------

def deploy_broker(api: Any, *, server: str, globalnet: bool, cidr_range: str,
                  cluster_size: int, namespace: str = names.BROKER_NAMESPACE,
                  clusterset_ips: clusterset.ClustersetIPPool | None = None,
                  progress: Progress = print) -> BrokerInfo:
    """Make ``api``'s cluster the Broker (again: what is recorded is kept)."""
    records = clusterset.deploy_broker(
        api, globalnet=globalnet, cidr_range=cidr_range, cluster_size=cluster_size,
        clusterset_ips=clusterset_ips or clusterset.ClustersetIPPool(), namespace=namespace)
    record = records.globalnet
    progress(f"CRDs and namespace {namespace} ready")
    pool = records.clusterset_ips
    progress(f"ClusterSetIP pool {pool.cidr_range}, {pool.cluster_size} VIPs per cluster"
             + ("; every ClusterSetIP service answers its VIP" if pool.enabled else
                "; a service answers its VIP when annotated"))
    broker_identity.apply_all(api, broker_identity.broker_objects(namespace))
    progress(f"Broker roles and the join identity {names.BROKER_JOIN_ACCOUNT} applied")
    token, ca = broker_identity.account_token(api, names.BROKER_JOIN_ACCOUNT, namespace)
    enabled = record is not None and record.enabled
    return BrokerInfo(server=server, ca_pem=ca, token=token, namespace=namespace,
                      globalnet=enabled, ipsec_psk=_ipsec_psk(api, namespace),
                      globalnet_cidr_range=record.cidr_range if record and enabled else "",
                      globalnet_cluster_size=record.cluster_size if record and enabled else 0)


def _ipsec_psk(api: Any, namespace: str) -> str:
    """The clusterset's IPsec pre-shared key, made once on the Broker (32 random
    bytes) and read back ever after: a second deploy-broker must not change it."""
    import base64
    import secrets

    secrets_client = ResourceClient(api, resources.SECRETS)
    secrets_client.create_if_absent({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": names.IPSEC_PSK_SECRET, "namespace": namespace},
        "type": "Opaque",
        "data": {names.IPSEC_PSK_KEY: base64.b64encode(
            base64.b64encode(secrets.token_bytes(32))).decode()}}, namespace=namespace)
    stored = secrets_client.get(names.IPSEC_PSK_SECRET, namespace=namespace)
    return base64.b64decode(stored["data"][names.IPSEC_PSK_KEY]).decode()


def ipsec_psk_secret(info: BrokerInfo) -> JSON:
    """The clusterset's PSK as the Secret the IPsec cable's engine mounts."""
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": names.IPSEC_PSK_SECRET, "namespace": names.CLUSTER_NAMESPACE,
                         "labels": {manifests.PART_OF_LABEL: manifests.PART_OF}},
            "type": "Opaque", "stringData": {names.IPSEC_PSK_KEY: info.ipsec_psk}}


def broker_client(info: BrokerInfo, *, server: str | None = None) -> Any:
    """A client for the Broker with the broker-info's join token, checked to work;
    ``server``: where this process reaches the Broker, when not at the members' URL."""
    from kube.client import api_client_from_dict

    if server is not None:
        info = dataclasses.replace(info, server=server)
    api = api_client_from_dict(yaml.safe_load(info.kubeconfig()), retries=0)
    try:
        ResourceClient(api, resources.NAMESPACES).get(info.namespace)
    except Exception as exc:
        status = errors.status_of(exc)
        if status == 401:
            raise InstallError("the Broker refused the broker-info token (401 Unauthorized): "
                               "the file is stale (was the Broker deployed again?) or was "
                               "tampered with") from None
        if status == 404:
            raise InstallError(f"no Broker at {info.server}: namespace {info.namespace} does "
                               "not exist (run `gnctl deploy-broker` there)") from None
        if status == 403:
            raise InstallError(f"the broker-info token may not read namespace "
                               f"{info.namespace} on {info.server}: not a Globalnet Broker's "
                               "join identity") from None
        if errors.is_connection_error(exc) or status is None:
            raise InstallError(f"cannot reach the Broker at {info.server}: "
                               f"{_reason(exc)}") from None
        raise
    return api


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "reason", None) or exc)
    return text.splitlines()[0][:200] if text else type(exc).__name__


# --- join ------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class JoinOptions:
    """What `gnctl join` was asked for."""

    cluster_id: str
    cluster_cidrs: tuple[str, ...] = ()  # empty: discover
    service_cidrs: tuple[str, ...] = ()  # empty: discover
    globalnet_cidr: str | None = None
    globalnet_cluster_size: int | None = None
    image: str = manifests.DEFAULT_IMAGE
    datapath: str = "nftables"
    cable_driver: str = "vxlan"
    api_server: str = manifests.DEFAULT_API_SERVER
    dns_service_ip: str | None = None
    # Labelled submariner.io/gateway=true by join (empty: the nodes labelled already).
    # Several: one is active, the others stand by.
    gateway_nodes: tuple[str, ...] = ()
    verbose_agents: bool = False
    wait_timeout: float = DEFAULT_WAIT
    dry_run: bool = False


@dataclass
class JoinResult:
    cluster_id: str
    global_cidr: str | None
    members: tuple[str, ...] = ()
    objects: list[JSON] = field(default_factory=list)  # what was (or would be) applied


def cluster_uid(api: Any) -> str:
    """The UID of the cluster's kube-system namespace: the cluster's own identity."""
    return str(o.uid(ResourceClient(api, resources.NAMESPACES).get("kube-system")))


def _cidrs(api: Any, opts: JoinOptions, progress: Progress) -> tuple[tuple[str, ...],
                                                                      tuple[str, ...]]:
    pods, services = opts.cluster_cidrs, opts.service_cidrs
    try:
        if not pods:
            found = discover.pod_cidrs(api)
            pods = found.cidrs
            progress(f"pod CIDR {', '.join(pods)} (from {found.source})")
        if not services:
            found = discover.service_cidrs(api)
            services = found.cidrs
            progress(f"service CIDR {', '.join(services)} (from {found.source})")
    except discover.DiscoveryError as exc:
        raise InstallError(str(exc)) from None
    return pods, services


def _gateway_nodes(api: Any, opts: JoinOptions) -> list[str]:
    nodes = ResourceClient(api, resources.NODES)
    if opts.gateway_nodes:
        for name in opts.gateway_nodes:
            if nodes.get_or_none(name) is None:
                raise InstallError(f"no node {name!r} in the cluster (--gateway-node)")
        return list(dict.fromkeys(opts.gateway_nodes))
    labelled = [o.name(n) for n in nodes.list(label_selector=names.GATEWAY_SELECTOR).items]
    if not labelled:
        raise InstallError(f"no gateway node: pass --gateway-node NODE, or label one with "
                           f"`kubectl label node NODE {names.GATEWAY_SELECTOR}`")
    return labelled


def render_member(opts: JoinOptions, *, global_cidr: str, pods: Sequence[str],
                  services: Sequence[str], clusterset_ip_cidr: str | None = None,
                  clusterset_ip_enabled: bool = False) -> list[JSON]:
    """The cluster's manifests (deploy.manifests) for these options."""
    try:
        return manifests.render(manifests.Options(
            cluster_id=opts.cluster_id, global_cidr=global_cidr, cluster_cidrs=tuple(pods),
            service_cidrs=tuple(services), image=opts.image, datapath=opts.datapath,
            cable_driver=opts.cable_driver, api_server=opts.api_server,
            dns_service_ip=opts.dns_service_ip, clusterset_ip_cidr=clusterset_ip_cidr,
            clusterset_ip_enabled=clusterset_ip_enabled,
            verbose=opts.verbose_agents))
    except manifests.OptionsError as exc:
        raise InstallError(str(exc)) from None


def broker_secret(info: BrokerInfo, token: str) -> JSON:
    """The member's Broker kubeconfig, as the Secret the agents mount."""
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": names.BROKER_KUBECONFIG_SECRET,
                         "namespace": names.CLUSTER_NAMESPACE,
                         "labels": {manifests.PART_OF_LABEL: manifests.PART_OF}},
            "type": "Opaque",
            "stringData": {names.BROKER_KUBECONFIG_KEY: info.kubeconfig(
                token=token, user="member")}}


def join(cluster_api: Any, info: BrokerInfo, opts: JoinOptions, *,
         progress: Progress = print, broker_server: str | None = None) -> JoinResult:
    """Join the cluster behind ``cluster_api`` to the clusterset ``info`` names
    (``broker_server``: see ``broker_client``)."""
    broker_api = broker_client(info, server=broker_server)
    uid = cluster_uid(cluster_api)
    pods, services = _cidrs(cluster_api, opts, progress)
    request = clusterset.JoinRequest(
        cluster_id=opts.cluster_id, cluster_cidrs=tuple(pods), service_cidrs=tuple(services),
        globalnet_cidr=opts.globalnet_cidr, globalnet_cluster_size=opts.globalnet_cluster_size,
        cluster_uid=uid, cable_driver=opts.cable_driver)
    clusterset.validate_request(request)
    gateways = _gateway_nodes(cluster_api, opts)
    preview = clusterset.preview_join(broker_api, request, broker_namespace=info.namespace)
    if preview is None:
        raise InstallError("the Broker was deployed without --globalnet; this release installs "
                           "Globalnet clustersets only")
    render_member(opts, global_cidr=preview, pods=pods, services=services)  # checks options
    if opts.cable_driver == "ipsec" and not info.ipsec_psk:
        raise InstallError("this broker-info file has no IPsec pre-shared key (it predates "
                           "the IPsec cable): run `gnctl deploy-broker` again for a new one")
    if opts.dry_run:
        objects = [*broker_identity.member_objects(opts.cluster_id, info.namespace),
                   broker_secret(info, "<member token>"),
                   *render_member(opts, global_cidr=preview, pods=pods, services=services)]
        return JoinResult(opts.cluster_id, preview, (), objects)

    was_member = ResourceClient(broker_api, resources.CLUSTERS).get_or_none(
        opts.cluster_id, namespace=info.namespace) is not None
    applied: list[JSON] = []
    try:
        # The member namespace and its bindings before the Cluster object: the other
        # members start reading that namespace as soon as the Cluster object appears.
        broker_identity.apply_all(broker_api, broker_identity.member_objects(
            opts.cluster_id, info.namespace))
        token, _ = broker_identity.account_token(
            broker_api, names.broker_member_account(opts.cluster_id), info.namespace)
        progress(f"Broker identity {names.broker_member_account(opts.cluster_id)}: writes "
                 f"only {names.broker_member_namespace(opts.cluster_id, info.namespace)}")
        membership = clusterset.join(cluster_api, broker_api, request,
                                     broker_namespace=info.namespace)
        assert membership.global_cidr is not None
        vips = (f", ClusterSetIP slice {membership.clusterset_ip_cidr}"
                if membership.clusterset_ip_cidr else "")
        progress(f"global CIDR {membership.global_cidr}{vips}; Cluster object published "
                 f"(members: {', '.join(membership.members)})")
        for node in gateways:
            ResourceClient(cluster_api, resources.NODES).patch(
                node, {"metadata": {"labels": {names.GATEWAY_LABEL: names.GATEWAY_LABEL_VALUE}}})
        progress(f"gateway node{'s' if len(gateways) > 1 else ''}: {', '.join(gateways)}")
        objects = render_member(opts, global_cidr=membership.global_cidr, pods=pods,
                                services=services,
                                clusterset_ip_cidr=membership.clusterset_ip_cidr,
                                clusterset_ip_enabled=membership.clusterset_ip_enabled)
        namespace_first = [obj for obj in objects if obj["kind"] in {
            "CustomResourceDefinition", "Namespace"}]
        rest = [obj for obj in objects if obj not in namespace_first]
        credentials = [broker_secret(info, token)]
        if opts.cable_driver == "ipsec":
            credentials.append(ipsec_psk_secret(info))
        ordered = [*namespace_first, *credentials, *rest]
        for index, obj in enumerate(ordered, 1):
            client = ResourceClient(cluster_api, manifests.resource_of(obj))
            # An undo removes only what this join made: a CRD that was there already
            # (the MCS ones hold the users' ServiceExports) is never deleted.
            existed = client.get_or_none(obj["metadata"]["name"],
                                         namespace=obj["metadata"].get("namespace")) is not None
            if obj["kind"] == "Namespace":
                # One still being deleted (an uninstall just before) would refuse
                # every object after it: wait for it to go, then make it anew.
                ensure_namespace(cluster_api, obj["metadata"]["name"])
            client.apply(obj, field_manager=FIELD_MANAGER)
            if not existed:
                applied.append(obj)
            if obj["kind"] in {"DaemonSet", "Deployment"} or index == len(ordered):
                progress(f"applied {index}/{len(ordered)} objects ({obj['kind']} "
                         f"{obj['metadata']['name']})")
        wait_ready(cluster_api, ordered, timeout=opts.wait_timeout, progress=progress)
    except BaseException:
        if not was_member:
            progress("join failed: undoing what it did")
            _undo(cluster_api, broker_api, info, opts.cluster_id, applied)
        raise
    return JoinResult(opts.cluster_id, membership.global_cidr, membership.members, ordered)


def _undo(cluster_api: Any, broker_api: Any, info: BrokerInfo, cluster_id: str,
          applied: list[JSON]) -> None:
    """Best effort: every step is tried even when one fails (the cluster may be gone)."""
    steps: list[Callable[[], object]] = [
        lambda: delete_objects(cluster_api, applied),
        lambda: broker_identity.revoke_member(broker_api, cluster_id, info.namespace),
        lambda: clusterset.leave(cluster_api, broker_api, cluster_id,
                                 broker_namespace=info.namespace),
    ]
    for step in steps:
        with contextlib.suppress(Exception):  # undo goes on; the original error is raised
            step()


# --- readiness ---------------------------------------------------------------------------

def _not_ready(api: Any, obj: JSON) -> str | None:
    """Why a workload is not ready yet (None: it is)."""
    current = ResourceClient(api, manifests.resource_of(obj)).get_or_none(
        obj["metadata"]["name"], namespace=obj["metadata"].get("namespace"))
    if current is None:
        return "missing"
    status = o.status(current)
    if int(status.get("observedGeneration") or 0) < int(o.meta(current).get("generation") or 0):
        return "not yet seen by its controller"
    if obj["kind"] == "DaemonSet":
        want = int(status.get("desiredNumberScheduled") or 0)
        ready = int(status.get("numberReady") or 0)
        updated = int(status.get("updatedNumberScheduled") or 0)
        if want == 0:
            return "no node selected"
        return None if ready >= want and updated >= want else f"{ready}/{want} pods ready"
    want = int(o.spec(current).get("replicas") or 1)
    ready = int(status.get("availableReplicas") or 0)
    return None if ready >= want else f"{ready}/{want} pods available"


def _pod_problem(api: Any, obj: JSON) -> str:
    """The first waiting or failing container of a workload's pods, for the user."""
    selector = ",".join(f"{k}={v}" for k, v in obj["spec"]["selector"]["matchLabels"].items())
    pods = ResourceClient(api, resources.PODS).list(
        namespace=obj["metadata"]["namespace"], label_selector=selector).items
    for pod in pods:
        for cs in o.status(pod).get("containerStatuses") or []:
            state = cs.get("state") or {}
            for phase in ("waiting", "terminated"):
                detail = state.get(phase)
                if detail and detail.get("reason") not in (None, "Completed"):
                    message = (detail.get("message") or "").splitlines()[:1]
                    return (f"pod {o.name(pod)} container {cs.get('name')}: {detail['reason']}"
                            + (f" ({message[0][:160]})" if message else ""))
        if not o.spec(pod).get("nodeName"):
            return f"pod {o.name(pod)} is not scheduled"
    return "no pod yet" if not pods else "pods starting"


def wait_ready(api: Any, objects: Sequence[JSON], *, timeout: float,
               progress: Progress = print) -> None:
    """Wait until every DaemonSet and Deployment among ``objects`` is ready."""
    workloads = [obj for obj in objects if obj["kind"] in {"DaemonSet", "Deployment"}]
    pending = {obj["metadata"]["name"]: obj for obj in workloads}
    started = time.monotonic()
    deadline = started + timeout
    while pending:
        for name, obj in list(pending.items()):
            if _not_ready(api, obj) is None:
                del pending[name]
                progress(f"{obj['kind']} {name} ready "
                         f"({time.monotonic() - started:.1f} s)")
        if not pending:
            return
        if time.monotonic() > deadline:
            name, obj = next(iter(pending.items()))
            raise InstallError(f"{obj['kind']} {name} not ready within {timeout:.0f} s: "
                               f"{_not_ready(api, obj)}; {_pod_problem(api, obj)}")
        time.sleep(0.5)


# --- leave and uninstall ----------------------------------------------------------------

def leave(cluster_api: Any | None, info: BrokerInfo, cluster_id: str, *,
          broker_server: str | None = None) -> bool:
    """Take ``cluster_id`` out of the clusterset; True when it was a member
    (``broker_server``: see ``broker_client``)."""
    broker_api = broker_client(info, server=broker_server)
    revoked = broker_identity.revoke_member(broker_api, cluster_id, info.namespace)
    was_member = clusterset.leave(cluster_api, broker_api, cluster_id,
                                  broker_namespace=info.namespace)
    return revoked or was_member


def delete_objects(api: Any, objects: Sequence[JSON]) -> int:
    """Delete ``objects`` in reverse order (already gone is fine); how many existed."""
    deleted = 0
    for obj in reversed(objects):
        client = ResourceClient(api, manifests.resource_of(obj))
        deleted += client.delete_if_exists(obj["metadata"]["name"],
                                           namespace=obj["metadata"].get("namespace"))
    return deleted


def installed_objects() -> list[JSON]:
    """Every object kind and name join applies in a member (any options give the same
    names; the MCS CRDs are left out: they hold the users' ServiceExports)."""
    sample = manifests.render(manifests.Options(
        cluster_id="any", global_cidr="242.0.0.0/16", cluster_cidrs=("10.244.0.0/16",),
        service_cidrs=("10.96.0.0/16",)))
    keep = [obj for obj in sample if not (obj["kind"] == "CustomResourceDefinition"
                                          and obj["spec"]["group"] == MCS_GROUP)]
    ns_index = next(i for i, obj in enumerate(keep) if obj["kind"] == "Namespace")
    info = BrokerInfo(server="https://x", ca_pem="", token="", namespace="", globalnet=True)
    credentials = [broker_secret(info, ""), ipsec_psk_secret(info)]
    return [*keep[:ns_index + 1], *credentials, *keep[ns_index + 1:]]


def uninstall(cluster_api: Any, *, progress: Progress = print) -> int:
    """Delete what join applied in the cluster; the number of objects deleted."""
    objects = installed_objects()
    deleted = delete_objects(cluster_api, objects)
    progress(f"deleted {deleted} of Globalnet's {len(objects)} objects (the MCS CRDs "
             "stay: they hold your ServiceExports)")
    return deleted
