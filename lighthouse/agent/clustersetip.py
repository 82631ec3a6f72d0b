"""ClusterSetIP VIPs: one per ClusterSetIP service, the same in every cluster.

The Broker records a VIP pool and gives each member a slice of it at join
(``globalnet.broker.BrokerClustersetIPs``), so clusters pick VIPs without talking to
each other: slices are disjoint. A cluster that exports a service records the VIP it
holds for it in an annotation on its Broker ServiceImport
(``names.CLUSTERSET_IP_ANNOTATION``). The rule every cluster applies to the same
Broker objects, so all agree:

* the service's VIP is the one held by the oldest export that holds one (MCS
  precedence, :func:`lighthouse.agent.aggregate.precedence`);
* an exporter adopts that VIP; only when no export holds one does it pick from its
  own slice (:func:`choose_vip`). Two clusters exporting at once may both pick; the
  later export then adopts the older one's and its own pick is free again;
* a VIP stays while any export holds it (also after the cluster that picked it
  unexported) and is free once the last export is withdrawn.

:func:`choose_vip` starts at a hash of the service's key, so a service exported
again after its VIP was released most likely gets the same VIP back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection

import netaddr


class PoolExhaustedError(ValueError):
    """Every VIP of the slice is held by another service."""


def usable_range(slice_cidr: str) -> tuple[int, int]:
    """First and last VIP of a slice: its network and broadcast addresses are left out
    (a /31 or /32 slice has no others to leave)."""
    net = netaddr.IPNetwork(slice_cidr)
    if net.size <= 2:
        return net.first, net.last
    return net.first + 1, net.last - 1


def choose_vip(slice_cidr: str, service_key: str, used: Collection[str]) -> str:
    """A free VIP of ``slice_cidr`` for ``service_key`` ("<ns>/<name>"), probing
    upwards from the key's hash."""
    first, last = usable_range(slice_cidr)
    count = last - first + 1
    digest = hashlib.sha256(service_key.encode()).digest()
    start = int.from_bytes(digest[:8], "big") % count
    version = netaddr.IPNetwork(slice_cidr).version
    for step in range(count):
        vip = str(netaddr.IPAddress(first + (start + step) % count, version))
        if vip not in used:
            return vip
    raise PoolExhaustedError(f"the ClusterSetIP slice {slice_cidr} is exhausted: all {count} "
                             "VIPs are held by other services")


def in_slice(vip: str, slice_cidr: str) -> bool:
    """Whether ``vip`` is an address of ``slice_cidr`` (False for a malformed value)."""
    try:
        return netaddr.IPAddress(vip) in netaddr.IPNetwork(slice_cidr)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        return False
