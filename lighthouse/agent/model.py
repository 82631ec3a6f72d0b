"""The agent's typed view of an export: frozen values the pure functions pass around.

API objects are plain dicts (``kube``); deciding what to publish, aggregating and
feeding DNS are pure functions over these values, so they are unit-tested without a
server (tests/unit/test_lighthouse_*.py) and the controllers only move data between
the API and them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lighthouse.agent import reasons as r

JSON = dict[str, Any]

PROTOCOLS = ("TCP", "UDP", "SCTP")


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class Port:
    """One service port as the MCS API carries it (ServiceImport and EndpointSlice)."""

    name: str = ""
    protocol: str = "TCP"
    port: int
    app_protocol: str | None = None

    def to_json(self) -> JSON:
        out: JSON = {"name": self.name, "protocol": self.protocol, "port": self.port}
        if self.app_protocol:
            out["appProtocol"] = self.app_protocol
        return out

    @classmethod
    def from_json(cls, obj: Any) -> Port | None:
        """The port of a ServiceImport/EndpointSlice entry; None when it has no number."""
        if not isinstance(obj, dict) or not isinstance(obj.get("port"), int):
            return None
        protocol = str(obj.get("protocol") or "TCP").upper()
        app = obj.get("appProtocol")
        return cls(name=str(obj.get("name") or ""), protocol=protocol, port=int(obj["port"]),
                   app_protocol=str(app) if app else None)

    def describe(self) -> str:
        return f"{self.name or '<unnamed>'}:{self.port}/{self.protocol}"


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class EndpointSpec:
    """One address of an exported service: a global IP (with Globalnet) and its name."""

    ip: str
    hostname: str | None = None
    ready: bool = True


Pairs = tuple[tuple[str, str], ...]
"""A frozen string map (sorted items): exported labels or annotations."""


def pairs(mapping: Any) -> Pairs:
    """Sorted (key, value) items of a JSON string map; non-maps and non-strings dropped."""
    if not isinstance(mapping, dict):
        return ()
    return tuple(sorted((str(k), v) for k, v in mapping.items() if isinstance(v, str)))


@dataclass(frozen=True, slots=True, kw_only=True)
class Properties:
    """The MCS v1beta1 properties of an export besides type and ports.

    Copied from the Service (session affinity, IP families, and the traffic fields where
    the API server has them; Kubernetes 1.20 has neither ``internalTrafficPolicy`` nor
    ``trafficDistribution``, so they stay None there) and from the ServiceExport
    (``exportedLabels``/``exportedAnnotations``). Clusters disagreeing on one is an MCS
    conflict; the oldest export's value wins. ``distribution`` is the ServiceExport's
    ``names.TRAFFIC_DISTRIBUTION_ANNOTATION`` (None: not set), no conflict either, and
    so is ``use_clusterset_ip``, its ``names.USE_CLUSTERSET_IP_ANNOTATION``.
    """

    session_affinity: str = "None"
    # ClientIP stickiness; None unless session_affinity is ClientIP.
    session_affinity_timeout: int | None = None
    ip_families: tuple[str, ...] = ()
    internal_traffic_policy: str | None = None
    traffic_distribution: str | None = None
    labels: Pairs = ()
    annotations: Pairs = ()
    distribution: str | None = None
    use_clusterset_ip: bool | None = None

    @property
    def spread(self) -> str:
        """How clients are spread: the annotation's choice, else local-first (also what
        ``trafficDistribution: PreferClose`` means: the closest cluster first)."""
        return self.distribution or r.LOCAL_FIRST


@dataclass(frozen=True, slots=True, kw_only=True)
class Publication:
    """What one cluster publishes for one exported service (ServiceImport + slice).

    ``ips`` is the ClusterSetIP service's global IP (empty for headless);
    ``endpoints`` are the slice's addresses: the one global IP of a ClusterIP service
    (ready if any backend is), or each backend's global IP of a headless one.
    """

    service_type: str
    ports: tuple[Port, ...]
    ips: tuple[str, ...]
    endpoints: tuple[EndpointSpec, ...]
    slice_ports: tuple[Port, ...]
    exported_at: str = ""
    properties: Properties = Properties()
    # Ready backends of a ClusterIP service (the weight of a balanced answer).
    ready_backends: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterImport:
    """One cluster's ServiceImport of a service as seen on the Broker (for aggregation)."""

    cluster: str
    service_type: str
    ports: tuple[Port, ...]
    exported_at: str = ""
    properties: Properties = Properties()
    # The ClusterSetIP VIP this export holds ("" for none; ``agent.clustersetip``).
    clusterset_ip: str = ""
