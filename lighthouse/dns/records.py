"""The service records the DNS server answers from: a thread-safe, in-memory store.

The Lighthouse agent (which watches ServiceImports and EndpointSlices on the API
server) feeds this store; the DNS server only reads it. Keeping the two apart is
what lets the answer path never touch the Kubernetes API: every mutation here is a
few dict operations under one lock, callable from any thread.

Model, per (namespace, service): one :class:`ClusterExport` per exporting cluster,
holding either the service's global IP (a ClusterIP service; ``ready`` says whether
any backend is ready) or its endpoints' global IPs (a headless service; each
endpoint keeps its hostname and readiness), plus the ports for SRV records. Per
cluster: whether its gateway connection is healthy. And the local cluster id, which
the answer policy prefers.

Rules:

* Every mutation that changes something bumps :attr:`ServiceRecords.generation` and
  tells the subscribers which *dependency keys* changed (see :data:`DepKey`), while
  the lock is still held. The DNS answer cache subscribes and drops exactly the
  answers that depend on those keys, so an answer read after a mutation returns is
  never stale. Mutations that change nothing (an agent resync re-sending the same
  export) notify nobody and keep cached answers.
* Values are frozen dataclasses, validated on construction (global IPs are IPv4,
  names are DNS labels), so bad input fails in the agent, not in a DNS answer.
* Names are stored lowercased: DNS matching is case-insensitive.
* A cluster never reported through :meth:`ServiceRecords.set_cluster_health` is
  healthy when ``default_healthy`` is true (the default), as upstream treats
  clusters whose connectivity is unknown. The local cluster is always healthy.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from kube import validation

__all__ = [
    "ALL",
    "PROTOCOLS",
    "ClusterExport",
    "DepKey",
    "Endpoint",
    "Listener",
    "ServiceKey",
    "ServicePort",
    "ServiceRecords",
]

ClusterID = str
"""A cluster id (globalnet.intent.ClusterID values fit): a lowercase DNS label."""
GlobalIP = str
"""A global IPv4 address in dotted form (globalnet.intent.GlobalIP values fit)."""

ServiceKey = tuple[str, str]
"""(namespace, service name), lowercased."""

DepKey = tuple[str, ...]
"""What a cached DNS answer depends on, so a change can drop exactly those answers.

``("svc", ns, name)``: every name at or below ``name.ns.svc.<zone>``.
``("ns", ns)``: the empty non-terminal ``ns.svc.<zone>`` (exists iff ns has services).
``("zone",)``: ``svc.<zone>`` (exists iff any service exists) and the apex.
``("static",)``: names whose answer depends on no record (outside ``svc``).
"""

ALL: Final = None
"""Listener argument meaning "everything may have changed" (local cluster changed)."""

Listener = Callable[[frozenset[DepKey] | None], None]
"""Called with the changed dependency keys (or :data:`ALL`), under the store lock."""

PROTOCOLS: Final = frozenset({"TCP", "UDP", "SCTP"})


def _label(value: str, what: str) -> str:
    low = value.lower()
    if not validation.is_dns_label(low):
        raise ValueError(f"{what} {value!r} is not a DNS label (RFC 1123)")
    return low


def _ipv4(value: str, what: str) -> GlobalIP:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError as exc:
        raise ValueError(f"{what} {value!r} is not an IPv4 address") from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class ServicePort:
    """One service port; named ports get ``_<name>._<proto>`` SRV names."""

    port: int
    protocol: str = "TCP"
    name: str = ""

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} out of range")
        proto = self.protocol.upper()
        if proto not in PROTOCOLS:
            raise ValueError(f"protocol {self.protocol!r} not one of {sorted(PROTOCOLS)}")
        object.__setattr__(self, "protocol", proto)
        if self.name:
            object.__setattr__(self, "name", _label(self.name, "port name"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """One backend of a headless service: its global IP, hostname and readiness.

    An endpoint without hostname is named by its dashed IP (``242-1-0-5``) in DNS,
    the Kubernetes convention, so every endpoint has an SRV target that resolves.
    """

    ip: GlobalIP
    hostname: str | None = None
    ready: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "ip", _ipv4(self.ip, "endpoint IP"))
        if self.hostname:
            object.__setattr__(self, "hostname", _label(self.hostname, "hostname"))
        else:
            object.__setattr__(self, "hostname", None)

    @property
    def dns_name(self) -> str:
        """The label this endpoint answers to under ``<cluster>.<svc>.<ns>.svc``."""
        return self.hostname or self.ip.replace(".", "-")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterExport:
    """One cluster's export of one service (what its EndpointSlices on the Broker say).

    A ClusterIP service has ``global_ip`` (and ``ready``: any backend ready); a
    headless one has ``endpoints`` and no ``global_ip``. ``balanced``: the service
    spreads clients over every cluster with ready backends, the local one included,
    in proportion to ``weight`` (the cluster's ready backends), instead of local-first.
    ``vip``: the service's ClusterSetIP VIP as this cluster's export states it (routed
    on every node); ``vip_in_dns``: the service name answers it rather than a
    cluster's global IP.
    """

    cluster: ClusterID
    ports: tuple[ServicePort, ...] = ()
    global_ip: GlobalIP | None = None
    ready: bool = True
    endpoints: tuple[Endpoint, ...] = ()
    balanced: bool = False
    weight: int = 1
    vip: GlobalIP | None = None
    vip_in_dns: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "cluster", _label(self.cluster, "cluster id"))
        object.__setattr__(self, "ports", tuple(self.ports))
        object.__setattr__(self, "endpoints", tuple(self.endpoints))
        if self.global_ip is not None:
            object.__setattr__(self, "global_ip", _ipv4(self.global_ip, "global IP"))
            if self.endpoints:
                raise ValueError("a ClusterIP export has a global IP and no endpoints")
        if self.weight < 0:
            raise ValueError(f"weight {self.weight} is negative")
        if self.vip is not None:
            if self.global_ip is None:
                raise ValueError("a headless export has no ClusterSetIP VIP")
            object.__setattr__(self, "vip", _ipv4(self.vip, "ClusterSetIP VIP"))

    @property
    def headless(self) -> bool:
        return self.global_ip is None


class ServiceRecords:
    """Thread-safe store of exported services, per cluster; see the module docstring.

    Every public method may be called from any thread. The mutations take keyword
    arguments only and each returns the (possibly unchanged) generation.
    """

    def __init__(
        self, *, local_cluster: str | None = None, default_healthy: bool = True
    ) -> None:
        # Re-entrant: listeners run under it and may read the store.
        self.lock = threading.RLock()
        self._services: dict[ServiceKey, dict[ClusterID, ClusterExport]] = {}
        self._by_cluster: dict[ClusterID, set[ServiceKey]] = {}
        self._per_namespace: dict[str, int] = {}
        self._health: dict[ClusterID, bool] = {}
        self._default_healthy = default_healthy
        self._local: ClusterID | None = (
            _label(local_cluster, "cluster id") if local_cluster else None
        )
        self._listeners: list[Listener] = []
        self._generation = 0

    # -- reads (hold ``lock`` to read several values as one snapshot) ----------

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def local_cluster(self) -> ClusterID | None:
        return self._local

    def is_healthy(self, cluster: ClusterID) -> bool:
        """Whether answers may send clients to ``cluster`` (the local one always)."""
        if cluster == self._local:
            return True
        return self._health.get(cluster, self._default_healthy)

    def get_service(self, *, namespace: str, name: str) -> Mapping[ClusterID, ClusterExport]:
        """The per-cluster exports of one service (empty when not exported)."""
        with self.lock:
            return dict(self._services.get((namespace.lower(), name.lower()), {}))

    def exports(self, key: ServiceKey) -> Mapping[ClusterID, ClusterExport] | None:
        """Internal view for the answer policy, which holds ``lock``; do not mutate."""
        return self._services.get(key)

    def has_namespace(self, namespace: str) -> bool:
        return namespace in self._per_namespace

    def __len__(self) -> int:
        return len(self._services)

    def services(self) -> list[ServiceKey]:
        with self.lock:
            return sorted(self._services)

    def __iter__(self) -> Iterator[tuple[ServiceKey, ClusterExport]]:
        """Every (service key, export) pair, as a snapshot."""
        with self.lock:
            items = [(k, e) for k, per in self._services.items() for e in per.values()]
        return iter(items)

    # -- subscription --------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` after every effective change; returns an unsubscribe."""
        with self.lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self.lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    # -- mutations -----------------------------------------------------------

    def upsert_service(self, *, namespace: str, name: str, export: ClusterExport) -> int:
        """Add or replace ``export.cluster``'s export of ``namespace/name``."""
        key = (_label(namespace, "namespace"), _label(name, "service name"))
        with self.lock:
            deps: set[DepKey] = set()
            self._put(key, export, deps)
            return self._commit(deps)

    def remove_service(
        self, *, namespace: str, name: str, cluster: str | None = None
    ) -> int:
        """Withdraw one cluster's export of a service, or every cluster's when None."""
        key = (namespace.lower(), name.lower())
        with self.lock:
            deps: set[DepKey] = set()
            per = self._services.get(key, {})
            targets = list(per) if cluster is None else [cluster.lower()]
            for c in targets:
                self._drop(key, c, deps)
            return self._commit(deps)

    def remove_cluster(self, *, cluster: str) -> int:
        """Withdraw everything a cluster exported (it left the clusterset)."""
        cid = cluster.lower()
        with self.lock:
            deps: set[DepKey] = set()
            for key in list(self._by_cluster.get(cid, ())):
                self._drop(key, cid, deps)
            self._health.pop(cid, None)
            return self._commit(deps)

    def replace_cluster(
        self, *, cluster: str, services: Mapping[ServiceKey, ClusterExport]
    ) -> int:
        """Make ``cluster``'s exports exactly ``services`` (a resync after a relist).

        Only the differences count as changes, so unchanged answers stay cached.
        """
        cid = _label(cluster, "cluster id")
        wanted: dict[ServiceKey, ClusterExport] = {}
        for (ns, svc), export in services.items():
            if export.cluster != cid:
                raise ValueError(f"export of {ns}/{svc} is for {export.cluster}, not {cid}")
            wanted[(_label(ns, "namespace"), _label(svc, "service name"))] = export
        with self.lock:
            deps: set[DepKey] = set()
            for key in list(self._by_cluster.get(cid, ())):
                if key not in wanted:
                    self._drop(key, cid, deps)
            for key, export in wanted.items():
                self._put(key, export, deps)
            return self._commit(deps)

    def replace_all(self, *, exports: Iterable[tuple[ServiceKey, ClusterExport]]) -> int:
        """Make the whole store exactly ``exports`` (used to reload a records file)."""
        per_cluster: dict[ClusterID, dict[ServiceKey, ClusterExport]] = {}
        for key, export in exports:
            per_cluster.setdefault(export.cluster, {})[key] = export
        with self.lock:
            for cid in list(self._by_cluster):
                if cid not in per_cluster:
                    self.remove_cluster(cluster=cid)
            for cid, services in per_cluster.items():
                self.replace_cluster(cluster=cid, services=services)
            return self._generation

    def set_cluster_health(self, *, cluster: str, healthy: bool) -> int:
        """Record whether the gateway connection to ``cluster`` is up."""
        cid = _label(cluster, "cluster id")
        with self.lock:
            before = self.is_healthy(cid)
            self._health[cid] = healthy
            if before == self.is_healthy(cid):
                return self._generation
            deps: set[DepKey] = {("svc", *key) for key in self._by_cluster.get(cid, ())}
            return self._commit(deps, force=True)

    def set_local_cluster(self, *, cluster: str | None) -> int:
        """Set which cluster is local (answers prefer it); changes every answer."""
        cid = _label(cluster, "cluster id") if cluster else None
        with self.lock:
            if cid == self._local:
                return self._generation
            self._local = cid
            self._generation += 1
            for listener in list(self._listeners):
                listener(ALL)
            return self._generation

    # -- internals (lock held) -----------------------------------------------

    def _put(self, key: ServiceKey, export: ClusterExport, deps: set[DepKey]) -> None:
        per = self._services.get(key)
        if per is not None and per.get(export.cluster) == export:
            return
        if per is None:
            per = self._services[key] = {}
            self._service_appeared(key, deps, +1)
        per[export.cluster] = export
        self._by_cluster.setdefault(export.cluster, set()).add(key)
        deps.add(("svc", *key))

    def _drop(self, key: ServiceKey, cluster: ClusterID, deps: set[DepKey]) -> None:
        per = self._services.get(key)
        if per is None or cluster not in per:
            return
        del per[cluster]
        owned = self._by_cluster.get(cluster)
        if owned is not None:
            owned.discard(key)
            if not owned:
                del self._by_cluster[cluster]
        deps.add(("svc", *key))
        if not per:
            del self._services[key]
            self._service_appeared(key, deps, -1)

    def _service_appeared(self, key: ServiceKey, deps: set[DepKey], delta: int) -> None:
        ns = key[0]
        count = self._per_namespace.get(ns, 0) + delta
        if count:
            self._per_namespace[ns] = count
        else:
            self._per_namespace.pop(ns, None)
        if count == (1 if delta > 0 else 0):
            deps.add(("ns", ns))
        if len(self._services) == (1 if delta > 0 else 0):
            deps.add(("zone",))

    def _commit(self, deps: set[DepKey], *, force: bool = False) -> int:
        if not deps and not force:
            return self._generation
        self._generation += 1
        changed = frozenset(deps)
        for listener in list(self._listeners):
            listener(changed)
        return self._generation
