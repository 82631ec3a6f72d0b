"""Combine the clusters' exports of one service into one view, and find conflicts.

Pure functions over :class:`ClusterImport` values (one per exporting cluster, read
from the per-cluster ServiceImports on the Broker). The MCS API's rules:

* **precedence**: the oldest export (its ServiceExport's creation time, then the
  cluster name) decides properties the clusters disagree on;
* **type**: the aggregated type is the precedent's; clusters exporting the other
  type conflict (``ConflictingType``) and take no part in the port union;
* **ports**: the union by port name, the precedent's entry winning; clusters that
  give one port name a different port number or protocol conflict
  (``ConflictingPorts``). A port only some clusters export is not a conflict.

The importer uses :func:`aggregate` for the local aggregated ServiceImport; the
exporter uses :func:`conflict_condition` for the ServiceExport's ``Conflict``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from lighthouse.agent import reasons as r
from lighthouse.agent.model import ClusterImport, Port
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
class Aggregate:
    """The aggregated service: what the local ServiceImport shows, and the conflicts."""

    service_type: str
    ports: tuple[Port, ...]
    clusters: tuple[str, ...]
    precedent: str
    type_conflicts: tuple[str, ...] = ()
    port_conflicts: tuple[PortConflict, ...] = ()

    @property
    def conflicting(self) -> bool:
        return bool(self.type_conflicts or self.port_conflicts)


def _precedence_key(item: ClusterImport) -> tuple[int, str, str]:
    # Imports without a timestamp (written by something else) come last.
    return (0 if item.exported_at else 1, item.exported_at, item.cluster)


def precedence(imports: Iterable[ClusterImport]) -> list[ClusterImport]:
    """Oldest export first; ties broken by cluster name so every cluster agrees."""
    return sorted(imports, key=_precedence_key)


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
    return Aggregate(
        service_type=first.service_type,
        ports=tuple(sorted(union.values())),
        clusters=tuple(sorted({i.cluster for i in ordered})),
        precedent=first.cluster,
        type_conflicts=type_conflicts,
        port_conflicts=port_conflicts,
    )


def conflict_condition(agg: Aggregate | None, *, had_conflict: bool) -> ConditionState | None:
    """The ``Conflict`` condition to show; None when there is and was no conflict.

    A resolved conflict turns into ``Conflict=False NoConflict`` rather than
    vanishing, so a user who saw it learns it is gone.
    """
    if agg is not None and agg.conflicting:
        clusters = ", ".join(agg.clusters)
        if agg.type_conflicts:
            return ConditionState(status=True, reason=r.CONFLICTING_TYPE, message=(
                f"The service type conflicts between the clusters [{clusters}]: using "
                f"{agg.service_type} from the oldest export, in {agg.precedent} "
                f"([{', '.join(agg.type_conflicts)}] disagree)"))
        details = "; ".join(c.describe() for c in agg.port_conflicts)
        exposed = ", ".join(p.describe() for p in agg.ports)
        return ConditionState(status=True, reason=r.CONFLICTING_PORTS, message=(
            f"The service ports conflict between the clusters [{clusters}]: {details}. "
            f"The service exposes the union of the ports by name, the oldest export "
            f"({agg.precedent}) winning: {exposed}"))
    if had_conflict:
        return ConditionState(status=False, reason=r.NO_CONFLICT,
                              message="The clusters agree on the service's type and ports")
    return None
