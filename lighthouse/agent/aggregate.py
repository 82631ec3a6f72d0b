"""Combine the clusters' exports of one service into one view, and find conflicts.

Pure functions over :class:`ClusterImport` values (one per exporting cluster, read
from the per-cluster ServiceImports on the Broker). The MCS API's rules:

* **precedence**: the oldest export (its ServiceExport's creation time, then the
  cluster name) decides properties the clusters disagree on;
* **type**: the aggregated type is the precedent's; clusters exporting the other
  type conflict (``TypeConflict``) and take no part in the port union or in the
  other properties;
* **ports**: the union by port name, the precedent's entry winning; clusters that
  give one port name a different port number or protocol conflict
  (``PortConflict``). A port only some clusters export is not a conflict;
* **properties** (:class:`Properties`): the precedent's; a cluster with another
  session affinity, ClientIP timeout, internal traffic policy, exported labels or
  exported annotations conflicts (``SessionAffinityConflict``,
  ``SessionAffinityConfigConflict``, ``InternalTrafficPolicyConflict``,
  ``LabelsConflict``, ``AnnotationsConflict``). IP families and traffic
  distribution follow the precedent without a conflict (the MCS API names none);
* **ClusterSetIP**: the VIP of the oldest export of the aggregated type that holds one
  (``agent.clustersetip``); a Headless service has none.

The importer uses :func:`aggregate` for the local aggregated ServiceImport; the
exporter uses :func:`conflict_condition` for the ServiceExport's ``Conflict``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from lighthouse.agent import reasons as r
from lighthouse.agent.model import ClusterImport, Port, Properties
from lighthouse.agent.publication import ConditionState


@dataclass(frozen=True, slots=True, kw_only=True)
class PortConflict:
    """One port name the clusters disagree on: each cluster's port for it."""

    name: str
    variants: tuple[tuple[str, Port], ...]

    def describe(self) -> str:
        shown = ", ".join(f"{p.port}/{p.protocol} in {c}" for c, p in self.variants)
        return f"{self.name or '<unnamed>'} is {shown}"


@dataclass(frozen=True, slots=True, kw_only=True)
class PropertyConflict:
    """One property the clusters disagree on: its MCS reason and each cluster's value."""

    reason: str
    field: str
    variants: tuple[tuple[str, str], ...]

    def describe(self) -> str:
        shown = ", ".join(f"{value} in {cluster}" for cluster, value in self.variants)
        return f"{self.field} is {shown}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Aggregate:
    """The aggregated service: what the local ServiceImport shows, and the conflicts.

    ``ips`` is the service's ClusterSetIP VIP (DESIGN.md §4.9), for the
    ServiceImport's ``spec.ips``; empty while no export holds one (each cluster's own
    global IP is in its EndpointSlice).
    """

    service_type: str
    ports: tuple[Port, ...]
    clusters: tuple[str, ...]
    precedent: str
    properties: Properties = field(default_factory=Properties)
    ips: tuple[str, ...] = ()
    type_conflicts: tuple[str, ...] = ()
    port_conflicts: tuple[PortConflict, ...] = ()
    property_conflicts: tuple[PropertyConflict, ...] = ()

    @property
    def conflicting(self) -> bool:
        return bool(self.type_conflicts or self.port_conflicts or self.property_conflicts)

    @property
    def conflict_reasons(self) -> tuple[str, ...]:
        """The MCS reasons of every conflict, in ``reasons.CONFLICT_ORDER``."""
        found = {r.TYPE_CONFLICT} if self.type_conflicts else set()
        if self.port_conflicts:
            found.add(r.PORT_CONFLICT)
        found.update(c.reason for c in self.property_conflicts)
        return tuple(reason for reason in r.CONFLICT_ORDER if reason in found)


def _precedence_key(item: ClusterImport) -> tuple[int, str, str]:
    # Imports without a timestamp (written by something else) come last.
    return (0 if item.exported_at else 1, item.exported_at, item.cluster)


def precedence(imports: Iterable[ClusterImport]) -> list[ClusterImport]:
    """Oldest export first; ties broken by cluster name so every cluster agrees."""
    return sorted(imports, key=_precedence_key)


def _show_pairs(items: tuple[tuple[str, str], ...]) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in items) + "}"


# (reason, field shown, the value compared (None: not compared for this cluster)).
_PROPERTY_CHECKS: tuple[tuple[str, str, Callable[[Properties], str | None]], ...] = (
    (r.SESSION_AFFINITY_CONFLICT, "sessionAffinity", lambda p: p.session_affinity),
    (r.SESSION_AFFINITY_CONFIG_CONFLICT, "sessionAffinityConfig.clientIP.timeoutSeconds",
     lambda p: str(p.session_affinity_timeout)
     if p.session_affinity == r.SESSION_AFFINITY_CLIENT_IP else None),
    (r.INTERNAL_TRAFFIC_POLICY_CONFLICT, "internalTrafficPolicy",
     lambda p: p.internal_traffic_policy or "Cluster"),
    (r.LABELS_CONFLICT, "exportedLabels", lambda p: _show_pairs(p.labels)),
    (r.ANNOTATIONS_CONFLICT, "exportedAnnotations", lambda p: _show_pairs(p.annotations)),
)


def _property_conflicts(ordered: list[ClusterImport]) -> tuple[PropertyConflict, ...]:
    out = []
    for reason, shown, value_of in _PROPERTY_CHECKS:
        variants = tuple(sorted((i.cluster, v) for i in ordered
                                if (v := value_of(i.properties)) is not None))
        if len({v for _, v in variants}) > 1:
            out.append(PropertyConflict(reason=reason, field=shown, variants=variants))
    return tuple(out)


def aggregate(imports: Iterable[ClusterImport]) -> Aggregate | None:
    """The aggregate of one service's per-cluster imports; None when nobody exports it."""
    ordered = precedence(imports)
    if not ordered:
        return None
    first = ordered[0]
    same_type = [i for i in ordered if i.service_type == first.service_type]
    type_conflicts = tuple(sorted(i.cluster for i in ordered
                                  if i.service_type != first.service_type))
    union: dict[str, Port] = {}
    seen: dict[str, dict[tuple[int, str], list[tuple[str, Port]]]] = {}
    for item in same_type:
        for port in item.ports:
            union.setdefault(port.name, port)
            seen.setdefault(port.name, {}).setdefault((port.port, port.protocol), []).append(
                (item.cluster, port))
    port_conflicts = tuple(
        PortConflict(name=name, variants=tuple(
            sorted(entry for group in variants.values() for entry in group)))
        for name, variants in sorted(seen.items()) if len(variants) > 1
    )
    vip = next((i.clusterset_ip for i in same_type if i.clusterset_ip), "") \
        if first.service_type == r.CLUSTER_SET_IP else ""
    return Aggregate(
        service_type=first.service_type,
        ports=tuple(sorted(union.values())),
        clusters=tuple(sorted({i.cluster for i in ordered})),
        precedent=first.cluster,
        properties=first.properties,
        ips=(vip,) if vip else (),
        type_conflicts=type_conflicts,
        port_conflicts=port_conflicts,
        property_conflicts=_property_conflicts(same_type),
    )


def _conflict_details(agg: Aggregate) -> list[str]:
    details = []
    if agg.type_conflicts:
        details.append(f"the type is {agg.service_type} from {agg.precedent} "
                       f"([{', '.join(agg.type_conflicts)}] disagree)")
    if agg.port_conflicts:
        exposed = ", ".join(p.describe() for p in agg.ports)
        details.append("ports " + "; ".join(c.describe() for c in agg.port_conflicts)
                       + f" (exposing the union by name: {exposed})")
    details.extend(c.describe() for c in agg.property_conflicts)
    return details


def conflict_condition(agg: Aggregate | None, *, had_conflict: bool) -> ConditionState | None:
    """The ``Conflict`` condition to show; None when there is and was no conflict.

    Several conflicts make one condition whose reason joins their MCS reasons with
    commas. A resolved conflict turns into ``Conflict=False NoConflicts`` rather than
    vanishing, so a user who saw it learns it is gone.
    """
    if agg is not None and agg.conflicting:
        clusters = ", ".join(agg.clusters)
        return ConditionState(status=True, reason=",".join(agg.conflict_reasons), message=(
            f"The exports conflict between the clusters [{clusters}]: "
            f"{'; '.join(_conflict_details(agg))}. The oldest export ({agg.precedent}) "
            "wins"))
    if had_conflict:
        return ConditionState(status=False, reason=r.NO_CONFLICTS,
                              message="The clusters agree on the service's properties")
    return None
