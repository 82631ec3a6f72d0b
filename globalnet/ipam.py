"""Global IP pool of one cluster: first-fit allocation over merged free ranges.

The pool remembers *allocated* ranges as sorted, merged integer intervals, so
memory grows with the fragmentation of what is allocated, not with the pool
size: a fully allocated /16 is one interval, and an empty /8 is none. Integers
from netaddr keep the arithmetic family-neutral (IPv6 needs no change here).

The network and broadcast addresses of the CIDR are never handed out (upstream
does the same), so a /16 holds 65,534 usable addresses.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable

import netaddr


class PoolError(Exception):
    """Base of IPAM errors; messages are meant for status conditions."""


class PoolExhausted(PoolError):
    pass


class AddressUnavailable(PoolError):
    """The address is outside the pool or already allocated."""


class GlobalIPPool:
    """Thread-safe allocator over one CIDR."""

    def __init__(self, cidr: str) -> None:
        try:
            net = netaddr.IPNetwork(cidr)
        except (netaddr.AddrFormatError, ValueError, TypeError) as exc:
            raise PoolError(f"invalid CIDR {cidr!r}") from exc
        if net.size < 4:
            raise PoolError(f"CIDR {cidr} is too small for a global IP pool")
        self.cidr = str(net.cidr)
        self.version = net.version
        self._first: int = int(net.first) + 1
        self._last: int = int(net.last) - 1
        # Allocated intervals [start, end], sorted by start, never touching.
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._allocated = 0
        self._lock = threading.Lock()

    # --- queries ----------------------------------------------------------------
    @property
    def size(self) -> int:
        return self._last - self._first + 1

    @property
    def allocated(self) -> int:
        return self._allocated

    @property
    def available(self) -> int:
        return self.size - self._allocated

    def intervals(self) -> int:
        """How many allocated runs are kept (memory is proportional to this)."""
        return len(self._starts)

    def is_allocated(self, ip: str) -> bool:
        value = self._value(ip)
        with self._lock:
            i = bisect.bisect_right(self._starts, value) - 1
            return i >= 0 and self._ends[i] >= value

    def contains(self, ip: str) -> bool:
        try:
            value = int(netaddr.IPAddress(ip))
        except (netaddr.AddrFormatError, ValueError, TypeError):
            return False
        return self._first <= value <= self._last

    # --- allocation ---------------------------------------------------------------
    def allocate(self, count: int = 1) -> list[str]:
        """A contiguous block of `count` addresses (first fit)."""
        if count < 1:
            raise PoolError(f"cannot allocate {count} addresses")
        with self._lock:
            start = self._find_gap(count)
            if start is None:
                raise PoolExhausted(
                    f"no {count} contiguous free addresses in {self.cidr} "
                    f"({self.available} of {self.size} free)"
                )
            self._mark(start, start + count - 1)
        return [self._text(v) for v in range(start, start + count)]

    def reserve(self, ips: Iterable[str]) -> None:
        """Mark given addresses allocated (after a restart); all or nothing."""
        values = sorted({self._value(ip) for ip in ips})
        with self._lock:
            for v in values:
                if not self._first <= v <= self._last:
                    raise AddressUnavailable(f"{self._text(v)} is not in pool {self.cidr}")
                i = bisect.bisect_right(self._starts, v) - 1
                if i >= 0 and self._ends[i] >= v:
                    raise AddressUnavailable(f"{self._text(v)} is already allocated")
            for v in values:
                self._mark(v, v)

    def release(self, ips: Iterable[str]) -> None:
        """Return addresses to the pool; releasing a free address is a no-op."""
        values = sorted({self._value(ip) for ip in ips})
        with self._lock:
            for v in values:
                self._unmark(v)

    # --- internals ------------------------------------------------------------------
    def _value(self, ip: str) -> int:
        try:
            addr = netaddr.IPAddress(ip)
        except (netaddr.AddrFormatError, ValueError, TypeError) as exc:
            raise AddressUnavailable(f"invalid IP address {ip!r}") from exc
        if addr.version != self.version:
            raise AddressUnavailable(f"{ip} is not an IPv{self.version} address")
        return int(addr)

    def _text(self, value: int) -> str:
        return str(netaddr.IPAddress(value, self.version))

    def _find_gap(self, count: int) -> int | None:
        candidate = self._first
        for s, e in zip(self._starts, self._ends, strict=True):
            if s - candidate >= count:
                return candidate
            candidate = e + 1
        if self._last - candidate + 1 >= count:
            return candidate
        return None

    def _mark(self, start: int, end: int) -> None:
        """Insert [start, end] (known free), merging with neighbours."""
        i = bisect.bisect_left(self._starts, start)
        merge_left = i > 0 and self._ends[i - 1] == start - 1
        merge_right = i < len(self._starts) and self._starts[i] == end + 1
        if merge_left and merge_right:
            self._ends[i - 1] = self._ends[i]
            del self._starts[i], self._ends[i]
        elif merge_left:
            self._ends[i - 1] = end
        elif merge_right:
            self._starts[i] = start
        else:
            self._starts.insert(i, start)
            self._ends.insert(i, end)
        self._allocated += end - start + 1

    def _unmark(self, value: int) -> None:
        i = bisect.bisect_right(self._starts, value) - 1
        if i < 0 or self._ends[i] < value:
            return
        s, e = self._starts[i], self._ends[i]
        if s == e:
            del self._starts[i], self._ends[i]
        elif value == s:
            self._starts[i] = s + 1
        elif value == e:
            self._ends[i] = e - 1
        else:
            self._ends[i] = value - 1
            self._starts.insert(i + 1, value + 1)
            self._ends.insert(i + 1, e)
        self._allocated -= 1
