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
import threading
from collections.abc import Collection, Iterable

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


class VipClaims:
    """One cluster's picks from its slice, shared by the exporter's workers.

    Remembers the VIPs picked here whose Broker object the cache may not show yet
    (workers pick for different services at once) and the services waiting for a
    VIP to be freed.
    """

    def __init__(self, slice_cidr: str) -> None:
        self.slice_cidr = slice_cidr
        self._lock = threading.Lock()
        self._picked: dict[str, str] = {}
        self._starved: set[str] = set()

    def picked(self, service_key: str) -> str:
        with self._lock:
            return self._picked.get(service_key, "")

    def hold(self, service_key: str, vip: str) -> None:
        """``service_key`` holds ``vip`` (adopted or picked): it waits for none."""
        with self._lock:
            self._picked[service_key] = vip
            self._starved.discard(service_key)

    def pick(self, service_key: str, on_broker: Iterable[str]) -> str:
        """A VIP for ``service_key`` that neither the Broker (``on_broker``) nor another
        pick here holds; PoolExhaustedError marks the service as waiting."""
        with self._lock:
            used = set(on_broker)
            used.update(v for k, v in self._picked.items() if k != service_key)
            try:
                vip = choose_vip(self.slice_cidr, service_key, used)
            except PoolExhaustedError:
                self._starved.add(service_key)
                self._picked.pop(service_key, None)
                raise
            self._picked[service_key] = vip
            self._starved.discard(service_key)
            return vip

    def forget(self, service_key: str) -> None:
        with self._lock:
            self._picked.pop(service_key, None)
            self._starved.discard(service_key)

    def starved(self) -> list[str]:
        with self._lock:
            return sorted(self._starved)
