"""Clustersets of real control planes in one process, without network namespaces.

For tests and benchmarks that need the real API servers but no datapath: a
Broker and N member clusters, each a real etcd + kube-apiserver 1.20 on the
caller's loopback (members also run kube-controller-manager, whose endpoint
controllers fill Endpoints and EndpointSlices), with our CRDs installed. Each
member runs, in this process, the Globalnet controllers (``GlobalnetManager``
over a ``RecordingDatapath``: nothing touches the kernel) and a Lighthouse agent
feeding its own ``ServiceRecords`` store, which a ``DnsServer`` can answer from.

Unlike ``lab.lab`` there are no network namespaces, nodes or kube-proxy: pods
are API objects only, their status (pod IP, Ready) written as kubelet would by
``ApiCluster.pod``. The control planes are started in parallel and stopped by
PID through the ``ControlPlane`` API, whatever happens (``ApiClusterset.stop``
runs every step even when one fails or is interrupted).

    with ApiClusterset(ClustersetConfig(), ApiCluster) as clusterset, \\
            clusterset.namespace("demo") as ns:
        clusterset["west"].service(ns, "web")
        clusterset["west"].export(ns, "web")
        clusterset["east"].await_records(ns, "web", lambda e: "west" in e, "west's export")

Tests extend ``ApiCluster`` (and ``ApiClusterset``) with their own assertion
helpers and pass the subclass as ``cluster_type``. Waiting uses
``kube.testing.await_condition``: a timeout raises ``AssertionError`` saying what
was awaited and what was last seen.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from datapath.recording import RecordingDatapath
from globalnet.controllers.manager import GlobalnetConfig, GlobalnetManager
from kube import crds, crud, discovery, names, resources
from kube.client import new_api_client
from kube.testing import await_condition, install_legacy_mcs_crds, join_broker, unique_name
from lab.controlplane import ControlPlane, ControlPlaneConfig
from lab.ports import free_port
from lighthouse.agent.agent import AgentConfig, LighthouseAgent
from lighthouse.dns.records import ClusterExport, ServiceRecords

log = logging.getLogger(__name__)

JSON = dict[str, Any]

BROKER = "broker"
# Overlapping on purpose: every member uses the same pod and service CIDRs.
DEFAULT_MEMBERS: Mapping[str, str] = {"east": "242.0.0.0/16", "west": "242.1.0.0/16"}
DEFAULT_LOCAL_CIDRS = ("10.244.0.0/16", "10.96.0.0/16")
# Each member's slice of a ClusterSetIP pool 244.0.0.0/16 (what `gnctl join` gives).
DEFAULT_CLUSTERSET_IP_SLICES: Mapping[str, str] = {"east": "244.0.0.0/24",
                                                   "west": "244.0.1.0/24"}
DEFAULT_NODE = "node-1"
TIMEOUT = 20.0


@dataclass(frozen=True)
class ClustersetConfig:
    """The members (name -> global CIDR) and how their controllers run."""

    members: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_MEMBERS))
    local_cidrs: tuple[str, ...] = DEFAULT_LOCAL_CIDRS
    # name -> ClusterSetIP slice given to the member's Lighthouse agent (none if absent).
    clusterset_ip_slices: Mapping[str, str] = field(
        default_factory=lambda: dict(DEFAULT_CLUSTERSET_IP_SLICES))
    broker_namespace: str = names.BROKER_NAMESPACE
    # The node every pod is bound to: the endpoint controllers skip pods without one.
    node: str = DEFAULT_NODE
    # Where the control planes keep their data; None: a temp dir, removed by stop().
    data_dir: Path | None = None
    # Globalnet leader election, short so that a restarted manager leads at once.
    lease_duration: float = 2.0
    renew_deadline: float = 1.5
    retry_period: float = 0.25
    debounce: float = 0.02
    leader_timeout: float = 30.0
    # True: the Broker has an older release's MCS CRDs (v1alpha1 only), as one not
    # upgraded yet; the members' CRDs are always current.
    legacy_broker_mcs: bool = False


@dataclass
class ApiCluster:
    """One member: its control plane, Globalnet, its Lighthouse agent, and helpers."""

    name: str
    global_cidr: str
    cp: ControlPlane
    api: Any
    broker_api: Any
    broker_namespace: str = names.BROKER_NAMESPACE
    node: str = DEFAULT_NODE
    clusterset_ip_cidr: str | None = None
    manager: GlobalnetManager | None = None
    agent: LighthouseAgent | None = None
    clients: dict[str, crud.ResourceClient] = field(default_factory=dict)

    def client(self, resource: resources.Resource) -> crud.ResourceClient:
        """A cached client of this cluster's API for ``resource``."""
        key = f"{resource.api_version}/{resource.plural}"
        if key not in self.clients:
            self.clients[key] = crud.ResourceClient(self.api, resource)
        return self.clients[key]

    @property
    def records(self) -> ServiceRecords:
        """The DNS store the running agent feeds (a new one after ``start_agent``)."""
        if self.agent is None:
            raise RuntimeError(f"{self.name} has no Lighthouse agent")
        return self.agent.records

    def start_agent(self) -> LighthouseAgent:
        """Start a new agent (with a new, empty store) and make it this cluster's."""
        agent = LighthouseAgent(
            local_api=self.api, broker_api=self.broker_api,
            config=AgentConfig(cluster_id=self.name, broker_namespace=self.broker_namespace,
                               clusterset_ip_cidr=self.clusterset_ip_cidr))
        agent.start()
        self.agent = agent
        return agent

    # --- objects, as users and kubelet make them ----------------------------------------
    def service(self, ns: str, name: str, *, port: int = 80, headless: bool = False,
                selector: dict[str, str] | None = None, **spec: Any) -> JSON:
        """Create a Service (one TCP port named http unless ``ports`` is given)."""
        spec.setdefault("ports", [{"name": "http", "port": port, "protocol": "TCP"}])
        if headless:
            spec["clusterIP"] = "None"
        if selector is not None:
            spec["selector"] = selector
        return self.client(resources.SERVICES).create(
            {"metadata": {"name": name, "namespace": ns}, "spec": spec})

    def export(self, ns: str, name: str, **spec: Any) -> JSON:
        """Create the ServiceExport of ``ns/name`` (``spec``: e.g. exportedLabels)."""
        obj: JSON = {"metadata": {"name": name, "namespace": ns}}
        if spec:
            obj["spec"] = spec
        return self.client(resources.SERVICE_EXPORTS).create(obj)

    def unexport(self, ns: str, name: str) -> None:
        self.client(resources.SERVICE_EXPORTS).delete(name, namespace=ns)

    def pod(self, ns: str, name: str, ip: str, labels: dict[str, str],
            hostname: str | None = None) -> None:
        """A running, ready pod on the cluster's node: created, then its status written."""
        spec: JSON = {"containers": [{"name": "c", "image": "x"}], "nodeName": self.node}
        if hostname:
            spec["hostname"] = hostname
        pods = self.client(resources.PODS)
        pods.create({"metadata": {"name": name, "namespace": ns, "labels": labels},
                     "spec": spec})
        pods.patch_status(name, {"status": {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "True"}]}}, namespace=ns)

    # --- reading --------------------------------------------------------------------------
    def global_ip(self, ns: str, giip: str) -> str | None:
        """The address allocated to GlobalIngressIP ``ns/giip`` (a ClusterIP service's
        is named like the service, a headless service pod's ``pod-<pod>``), if any."""
        obj = self.client(resources.GLOBAL_INGRESS_IPS).get_or_none(giip, namespace=ns)
        ip = ((obj or {}).get("status") or {}).get("allocatedIP")
        return str(ip) if ip else None

    def ready_addresses(self, ns: str, svc: str) -> list[str]:
        """The ready addresses the endpoint controller put in the service's Endpoints."""
        obj = self.client(resources.ENDPOINTS).get_or_none(svc, namespace=ns) or {}
        return sorted(a["ip"] for subset in obj.get("subsets") or []
                      for a in subset.get("addresses") or [])

    def local_slices(self, ns: str, svc: str) -> list[JSON]:
        """The EndpointSlices the agent's importer made in this cluster for ``ns/svc``."""
        if self.agent is None or self.agent.importer is None:
            raise RuntimeError(f"{self.name}'s Lighthouse agent is not running")
        selector = f"{names.LIGHTHOUSE_SELECTOR},{names.SERVICE_NAME_LABEL}={svc}"
        client = self.client(self.agent.importer.endpointslices)
        return client.list(namespace=ns, label_selector=selector).items

    def local_import(self, ns: str, svc: str) -> JSON | None:
        """The aggregated ServiceImport of ``ns/svc`` in this cluster."""
        return self.client(resources.SERVICE_IMPORTS).get_or_none(svc, namespace=ns)

    # --- awaiting -------------------------------------------------------------------------
    def await_global_ip(self, ns: str, giip: str, *, timeout: float = TIMEOUT) -> str:
        return str(await_condition(lambda: self.global_ip(ns, giip), timeout=timeout,
                                   message=f"{self.name}: GlobalIngressIP {ns}/{giip}"))

    def await_ready_addresses(self, ns: str, svc: str, *, timeout: float = TIMEOUT
                              ) -> list[str]:
        return await_condition(lambda: self.ready_addresses(ns, svc), timeout=timeout,
                               message=f"{self.name}: ready Endpoints of {ns}/{svc}")

    def await_records(self, ns: str, svc: str,
                      predicate: Callable[[dict[str, ClusterExport]], bool],
                      what: str, *, timeout: float = TIMEOUT, interval: float = 0.02
                      ) -> dict[str, ClusterExport]:
        """The store's exports of ``ns/svc`` (cluster -> export) once ``predicate`` holds.

        An empty dict can be awaited too (``lambda e: not e``).
        """
        found: list[dict[str, ClusterExport]] = []

        def check() -> bool:
            exports = dict(self.records.get_service(namespace=ns, name=svc))
            if predicate(exports):
                found.append(exports)
                return True
            return False

        def last() -> str:
            seen = dict(self.records.get_service(namespace=ns, name=svc))
            return f"{self.name}'s DNS records of {ns}/{svc}: {what} (last {seen})"

        await_condition(check, timeout=timeout, interval=interval, message=last)
        return found[-1]

    # --- cleanup --------------------------------------------------------------------------
    def delete_namespace(self, ns: str) -> None:
        """Unexport everything in ``ns``, then delete it (without waiting); never raises.

        Unexporting first: Globalnet would otherwise keep creating GlobalIngressIPs
        for ready pods in a namespace that is already terminating.
        """
        with contextlib.suppress(Exception):
            exports = self.client(resources.SERVICE_EXPORTS)
            for export in exports.list(namespace=ns).items:
                exports.delete_if_exists(export["metadata"]["name"], namespace=ns)
        with contextlib.suppress(Exception):
            self.client(resources.NAMESPACES).delete_if_exists(ns)


ClusterT = TypeVar("ClusterT", bound=ApiCluster)


class ApiClusterset(Generic[ClusterT]):
    """The Broker and the member clusters (of type ``cluster_type``), started together.

    ``start``/``stop`` or a ``with`` block. ``stop`` is idempotent and stops whatever
    was started, also after a failed or interrupted ``start``.
    """

    def __init__(self, config: ClustersetConfig, cluster_type: type[ClusterT]) -> None:
        if BROKER in config.members or not config.members:
            raise ValueError(f"members must be named, and not {BROKER!r}")
        self.config = config
        self.cluster_type = cluster_type
        self.planes: dict[str, ControlPlane] = {}
        self.clusters: dict[str, ClusterT] = {}
        self._apis: list[Any] = []
        self._broker_api: Any = None
        self._broker_slices: resources.Resource | None = None
        self._root: Path | None = None

    # --- access -----------------------------------------------------------------------------
    def __getitem__(self, name: str) -> ClusterT:
        return self.clusters[name]

    @property
    def broker(self) -> ControlPlane:
        return self.planes[BROKER]

    @property
    def broker_api(self) -> Any:
        if self._broker_api is None:
            raise RuntimeError("the clusterset is not started")
        return self._broker_api

    @property
    def broker_slices(self) -> resources.Resource:
        """The EndpointSlice resource at the version the Broker serves."""
        if self._broker_slices is None:
            self._broker_slices = discovery.endpointslices(self.broker_api)
        return self._broker_slices

    def broker_objects(self, resource: resources.Resource, ns: str, svc: str,
                       cluster: str) -> list[JSON]:
        """What ``cluster`` published for its service ``ns/svc``, in its member namespace."""
        selector = (f"{names.LIGHTHOUSE_SELECTOR},{names.SOURCE_CLUSTER_LABEL}={cluster},"
                    f"{names.SERVICE_NAME_LABEL}={svc},{names.SOURCE_NAMESPACE_LABEL}={ns}")
        return crud.ResourceClient(self.broker_api, resource).list(
            namespace=names.broker_member_namespace(cluster, self.config.broker_namespace),
            label_selector=selector).items

    @contextlib.contextmanager
    def namespace(self, prefix: str = "ns") -> Iterator[str]:
        """A fresh namespace of the same name in every member, deleted afterwards."""
        name = unique_name(prefix)
        created: list[ClusterT] = []
        try:
            for cluster in self.clusters.values():
                cluster.client(resources.NAMESPACES).create({"metadata": {"name": name}})
                created.append(cluster)
            yield name
        finally:
            for cluster in created:
                cluster.delete_namespace(name)

    # --- lifecycle --------------------------------------------------------------------------
    def start(self) -> Self:
        """Control planes in parallel (CRDs installed), then Globalnet, then the agents."""
        if self.planes:
            raise RuntimeError("the clusterset is already started")
        cfg = self.config
        if cfg.data_dir is None:
            self._root = Path(tempfile.mkdtemp(prefix="gn-apiclusterset-"))
        root = cfg.data_dir or self._root
        assert root is not None
        self.planes = {BROKER: _control_plane(BROKER, root, controller_manager=False)}
        for name in cfg.members:
            self.planes[name] = _control_plane(name, root, controller_manager=True)
        try:
            # Leaving this block waits for every start, failed or not: stop() then
            # sees every process that was spawned.
            with ThreadPoolExecutor(max_workers=len(self.planes)) as pool:
                started = {name: pool.submit(self._start_plane, cp,
                                             legacy_mcs=name == BROKER and cfg.legacy_broker_mcs)
                           for name, cp in self.planes.items()}
                apis = {name: future.result() for name, future in started.items()}
            self._broker_api = apis[BROKER]
            for name, global_cidr in cfg.members.items():
                self._start_member(name, global_cidr, apis[name])
            for cluster in self.clusters.values():
                assert cluster.manager is not None
                cluster.manager.wait_for_term(cfg.leader_timeout)
                cluster.start_agent()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_plane(self, cp: ControlPlane, *, legacy_mcs: bool = False) -> Any:
        cp.start()
        api = new_api_client(cp.kubeconfig)
        self._apis.append(api)
        if legacy_mcs:
            install_legacy_mcs_crds(api)
            crds.install_crds(api, exclude_groups=(resources.MCS_GROUP,))
        else:
            crds.install_crds(api)
        return api

    def _start_member(self, name: str, global_cidr: str, api: Any) -> ClusterT:
        """The member's node, Globalnet manager (started) and cluster object."""
        cfg = self.config
        # What `gnctl join` writes on the Broker before the member's agents run: the
        # member namespace they publish into, the Cluster object that makes the
        # others read it.
        join_broker(self.broker_api, cfg.broker_namespace, name, global_cidr=global_cidr)
        # The agent gets a Broker client of its own, as it would in its own process.
        agent_broker_api = new_api_client(self.broker.kubeconfig)
        self._apis.append(agent_broker_api)
        cluster = self.cluster_type(
            name=name, global_cidr=global_cidr, cp=self.planes[name], api=api,
            broker_api=agent_broker_api, broker_namespace=cfg.broker_namespace, node=cfg.node,
            clusterset_ip_cidr=cfg.clusterset_ip_slices.get(name))
        self.clusters[name] = cluster
        cluster.client(resources.NODES).create({"metadata": {"name": cfg.node}})
        cluster.manager = GlobalnetManager(api, GlobalnetConfig(
            cluster_id=name, global_cidr=global_cidr, local_cidrs=cfg.local_cidrs,
            lease_duration=cfg.lease_duration, renew_deadline=cfg.renew_deadline,
            retry_period=cfg.retry_period, debounce=cfg.debounce,
        ), RecordingDatapath())
        cluster.manager.start()
        return cluster

    def stop(self) -> None:
        """Agents, Globalnet, API clients, then every control plane (by PID, in parallel).

        Every step runs even if an earlier one fails (failures are logged) or is
        interrupted (KeyboardInterrupt, SystemExit: re-raised once all is stopped).
        """
        interrupted: list[BaseException] = []

        def attempt(what: str, step: Callable[[], object]) -> None:
            try:
                step()
            except Exception:
                log.warning("stopping the clusterset: %s failed", what, exc_info=True)
            except BaseException as exc:
                interrupted.append(exc)

        for cluster in self.clusters.values():
            if cluster.agent is not None:
                attempt(f"{cluster.name}'s agent", cluster.agent.stop)
            if cluster.manager is not None:
                attempt(f"{cluster.name}'s Globalnet", cluster.manager.stop)
        for api in self._apis:
            attempt("closing an API client", api.close)

        def stop_planes() -> None:
            # Leaving the block waits for every stop, even when interrupted meanwhile.
            with ThreadPoolExecutor(max_workers=max(1, len(self.planes))) as pool:
                for name, cp in self.planes.items():
                    pool.submit(attempt, f"{name}'s control plane", cp.stop)

        attempt("the control planes", stop_planes)
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
        self.clusters, self.planes, self._apis = {}, {}, []
        self._broker_api, self._broker_slices, self._root = None, None, None
        if interrupted:
            raise interrupted[0]

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _control_plane(name: str, root: Path, *, controller_manager: bool) -> ControlPlane:
    return ControlPlane(ControlPlaneConfig(
        name=name, data_dir=root / name, apiserver_port=free_port(),
        etcd_client_port=free_port(), etcd_peer_port=free_port(),
        controller_manager=controller_manager))
