"""Per-cluster slices of a clusterset's address pool (pure logic).

The Broker records each pool in a ConfigMap of its own: the global CIDRs in
Globalnet's (`kube.names.GLOBALNET_INFO_CONFIGMAP`, keys as upstream), the
ClusterSetIP VIPs in `kube.names.CLUSTERSET_IP_CONFIGMAP` - the range, the default
cluster size and which cluster holds which slice. This module decides allocations
on that data; `broker.py` does the compare-and-swap against the API. ``what``
arguments name the pool in messages ("global CIDR", "ClusterSetIP CIDR").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

import netaddr

from kube import names

DEFAULT_CIDR_RANGE = "242.0.0.0/8"
DEFAULT_CLUSTER_SIZE = 65536
# 240/8 carries the cables' tunnel addresses, 243/8 IPsec's inner ones and 242/8 is
# the default global range, so the VIPs come from the next free block of class E.
DEFAULT_CLUSTERSET_IP_RANGE = "244.0.0.0/8"
DEFAULT_CLUSTERSET_IP_CLUSTER_SIZE = 4096
MIN_CLUSTER_SIZE = 4


class CidrAllocationError(ValueError):
    """A request that cannot be granted; the message is shown to the user."""


@dataclass(frozen=True)
class GlobalnetInfo:
    """The Broker's record of one pool: global CIDRs, or ClusterSetIP VIP slices."""

    cidr_range: str = DEFAULT_CIDR_RANGE
    cluster_size: int = DEFAULT_CLUSTER_SIZE
    enabled: bool = True
    clusters: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def to_configmap_data(self, keys: names.PoolKeys = names.GLOBALNET_KEYS) -> dict[str, str]:
        info = [{"cluster_id": c, "global_cidr": list(cidrs)}
                for c, cidrs in sorted(self.clusters.items())]
        return {
            keys.enabled: "true" if self.enabled else "false",
            keys.cidr_range: self.cidr_range,
            keys.cluster_size: str(self.cluster_size),
            keys.cluster_info: json.dumps(info),
        }

    @classmethod
    def from_configmap_data(cls, data: dict[str, str],
                            keys: names.PoolKeys = names.GLOBALNET_KEYS,
                            *, what: str = "globalnet info",
                            default_range: str = DEFAULT_CIDR_RANGE,
                            default_cluster_size: int = DEFAULT_CLUSTER_SIZE) -> GlobalnetInfo:
        """The record in ``data`` under ``keys``; a key left out reads as the pool's
        default (``default_range``, ``default_cluster_size``)."""
        try:
            entries = json.loads(data.get(keys.cluster_info) or "[]")
            clusters = {str(e["cluster_id"]): tuple(str(c) for c in e["global_cidr"])
                        for e in entries}
            return cls(
                cidr_range=data.get(keys.cidr_range, default_range),
                cluster_size=int(data.get(keys.cluster_size, default_cluster_size)),
                enabled=data.get(keys.enabled, "true").lower() == "true",
                clusters=clusters,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise CidrAllocationError(f"malformed {what} on the Broker: {exc}") from exc


def validate_range(cidr_range: str, cluster_size: int, *, what: str = "global CIDR"
                   ) -> netaddr.IPNetwork:
    """Check a clusterset's settings (used by `deploy-broker`)."""
    net = parse_network(cidr_range, f"{what} range")
    try:
        round_cluster_size(cluster_size, net)
    except CidrAllocationError as err:
        raise CidrAllocationError(f"{what} range {net}: {err}") from None
    return net


def round_cluster_size(size: int, net: netaddr.IPNetwork) -> int:
    if size < 1:
        raise CidrAllocationError(f"cluster size must be positive, got {size}")
    rounded = max(MIN_CLUSTER_SIZE, 1 << (size - 1).bit_length())
    if rounded > net.size // 2:
        raise CidrAllocationError(
            f"cluster size {size} (rounded to {rounded}) is more than half of {net}"
        )
    return rounded


def overlaps(a: netaddr.IPNetwork, b: netaddr.IPNetwork) -> bool:
    return bool(a.first <= b.last and b.first <= a.last)


def parse_network(cidr: str, what: str) -> netaddr.IPNetwork:
    """``cidr`` as a network (host bits clear), or a one-line error naming ``what``."""
    try:
        net = netaddr.IPNetwork(cidr)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise CidrAllocationError(f"invalid {what} {cidr!r}") from None
    if "/" not in cidr or net.ip != net.network:
        raise CidrAllocationError(f"invalid {what} {cidr!r}: expected a network such as {net.cidr}")
    return net


def allocate_cluster_cidr(
    info: GlobalnetInfo,
    cluster_id: str,
    *,
    requested_cidr: str | None = None,
    size: int | None = None,
    what: str = "global CIDR",
) -> tuple[str, GlobalnetInfo]:
    """The CIDR `cluster_id` holds after joining, and the updated record.

    A rejoining cluster gets its existing CIDR back. An explicit CIDR must lie in
    the range and overlap no other cluster's. Otherwise the first free block of
    `size` (default: the clusterset's), aligned and rounded up to a power of two.
    """
    if not cluster_id:
        raise CidrAllocationError("cluster ID must not be empty")
    whole = parse_network(info.cidr_range, f"{what} range")
    existing = info.clusters.get(cluster_id)
    if existing:
        if requested_cidr and parse_network(requested_cidr, what) != netaddr.IPNetwork(
            existing[0]
        ):
            raise CidrAllocationError(
                f"cluster {cluster_id} already holds {existing[0]}; leave first to change it"
            )
        return existing[0], info
    taken = [(c, netaddr.IPNetwork(n)) for c, cidrs in info.clusters.items() for n in cidrs]
    if requested_cidr:
        net = parse_network(requested_cidr, what)
        if net not in whole:
            raise CidrAllocationError(f"{what} {net} is outside the range {whole}")
        for other, onet in taken:
            if overlaps(net, onet):
                raise CidrAllocationError(
                    f"{what} {net} overlaps {onet} of cluster {other}"
                )
        chosen = net
    else:
        block = round_cluster_size(size or info.cluster_size, whole)
        chosen = _first_free_block(whole, block, [n for _, n in taken])
        if chosen is None:
            raise CidrAllocationError(
                f"no free block of {block} addresses left in {whole} "
                f"({len(taken)} clusters hold CIDRs)"
            )
    clusters = dict(info.clusters)
    clusters[cluster_id] = (str(chosen.cidr),)
    return str(chosen.cidr), replace(info, clusters=clusters)


def refuse_overlap(cidr: str, others: dict[str, str], *, what: str) -> None:
    """Refuse `cidr` (named `what`) when it overlaps any of `others` (name -> CIDR): a
    VIP pool inside a cluster's pod range would capture that cluster's own pods."""
    net = parse_network(cidr, what)
    for other_what, other in others.items():
        onet = netaddr.IPNetwork(other)
        if overlaps(net, onet):
            raise CidrAllocationError(f"{what} {net} overlaps the {other_what} {onet}")


def release_cluster_cidr(info: GlobalnetInfo, cluster_id: str) -> GlobalnetInfo:
    """The record without `cluster_id` (a no-op when it holds nothing)."""
    if cluster_id not in info.clusters:
        return info
    clusters = {c: v for c, v in info.clusters.items() if c != cluster_id}
    return replace(info, clusters=clusters)


def _first_free_block(
    whole: netaddr.IPNetwork, block: int, taken: list[netaddr.IPNetwork]
) -> netaddr.IPNetwork | None:
    prefix = whole.prefixlen + (whole.size // block).bit_length() - 1
    spans = sorted((n.first, n.last) for n in taken)
    candidate = whole.first
    for first, last in spans:
        if last < candidate:
            continue
        if first - candidate >= block:
            break
        # Skip past this allocation, to the next aligned boundary.
        candidate = ((last + 1 + block - 1) // block) * block
    if candidate + block - 1 > whole.last:
        return None
    return netaddr.IPNetwork((candidate, prefix), version=whole.version)
