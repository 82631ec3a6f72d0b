"""Global IPs with owners: one pool shared by every controller of a cluster.

The pool alone cannot tell who holds an address; this layer can, which is what
makes "no IP is held by two objects" checkable and start-up recovery possible:
recorded addresses are reserved for their owner, and a second claimant of the
same address is refused (and later reallocated) instead of silently sharing it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from globalnet.ipam import GlobalIPPool, PoolError, PoolExhausted


class OwnedPool:
    """Allocations keyed by owner ("GlobalIngressIP/ns/name"), thread-safe."""

    def __init__(self, cidr: str) -> None:
        self.pool = GlobalIPPool(cidr)
        self._by_owner: dict[str, tuple[str, ...]] = {}
        self._holder: dict[str, str] = {}
        self._lock = threading.RLock()
        # Called after addresses return to the pool: controllers retry objects that
        # failed with IPPoolAllocationFailed.
        self.on_release: list[Callable[[], None]] = []

    @property
    def cidr(self) -> str:
        return self.pool.cidr

    def owned(self, owner: str) -> tuple[str, ...]:
        with self._lock:
            return self._by_owner.get(owner, ())

    def holder(self, ip: str) -> str | None:
        with self._lock:
            return self._holder.get(ip)

    def owners(self) -> dict[str, tuple[str, ...]]:
        with self._lock:
            return dict(self._by_owner)

    def reserve_recorded(self, owner: str, ips: list[str]) -> str | None:
        """Take back what `owner`'s status records; the reason when that is refused."""
        if not ips:
            return None
        with self._lock:
            if self._by_owner.get(owner) == tuple(ips):
                return None
            for ip in ips:
                other = self._holder.get(ip)
                if other is not None and other != owner:
                    return f"{ip} is already held by {other}"
                if not self.pool.contains(ip):
                    return f"{ip} is not in this cluster's global CIDR {self.pool.cidr}"
            self._release_locked(owner)
            try:
                self.pool.reserve(ips)
            except PoolError as exc:
                return str(exc)
            self._record(owner, tuple(ips))
        return None

    def ensure(self, owner: str, count: int) -> tuple[str, ...]:
        """`count` contiguous addresses for `owner`, keeping what it has if that fits."""
        with self._lock:
            current = self._by_owner.get(owner, ())
            if len(current) == count:
                return current
            freed = self._release_locked(owner)
            try:
                ips = tuple(self.pool.allocate(count)) if count else ()
            except PoolExhausted:
                if freed:
                    self._notify()
                raise
            self._record(owner, ips)
        if freed:
            self._notify()
        return ips

    def release(self, owner: str) -> tuple[str, ...]:
        with self._lock:
            freed = self._release_locked(owner)
        if freed:
            self._notify()
        return freed

    def _record(self, owner: str, ips: tuple[str, ...]) -> None:
        if ips:
            self._by_owner[owner] = ips
            for ip in ips:
                self._holder[ip] = owner

    def _release_locked(self, owner: str) -> tuple[str, ...]:
        ips = self._by_owner.pop(owner, ())
        for ip in ips:
            self._holder.pop(ip, None)
        if ips:
            self.pool.release(ips)
        return ips

    def _notify(self) -> None:
        for callback in list(self.on_release):
            callback()
