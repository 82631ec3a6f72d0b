"""Garbage collection of the BPF connection table (lib/ct.h), from Python.

The programs stamp each entry with `bpf_ktime_get_ns()` (CLOCK_MONOTONIC, the
clock `time.monotonic_ns()` reads). A connection is its two entries (egress and
reply); it expires when both have been idle longer than its protocol's timeout
(`names.Timeouts`; the short TCP one once a FIN or RST was seen), and both are
deleted, one element at a time. A reply entry whose egress half the LRU evicted
expires on its own age.
"""

from __future__ import annotations

import time

from datapath.ebpf import names as n
from datapath.ebpf import structs as s
from datapath.ebpf.maps import PinnedMap

IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP = 1, 6, 17


def timeout_of(proto: int, flags: int, timeouts: n.Timeouts = n.TIMEOUTS) -> float:
    if proto == IPPROTO_TCP:
        return timeouts.tcp_closing if flags & n.CT_F_CLOSING else timeouts.tcp
    if proto == IPPROTO_UDP:
        return timeouts.udp
    if proto == IPPROTO_ICMP:
        return timeouts.icmp
    return timeouts.other


def reply_key(key: s.CtKey, value: s.CtValue) -> s.CtKey:
    """The reply entry's key of an egress entry."""
    return s.CtKey(saddr=key.daddr, daddr=value.addr,
                   sport=value.port if key.proto == IPPROTO_ICMP else key.dport,
                   dport=value.port, proto=key.proto, dir=int(n.CtDir.REPLY), pad=0)


def _ident(key: s.CtKey) -> tuple[int, ...]:
    return (key.saddr, key.daddr, key.sport, key.dport, key.proto, key.dir)


def collect(ct: PinnedMap[s.CtKey, s.CtValue], *, timeouts: n.Timeouts = n.TIMEOUTS,
            now_ns: int | None = None) -> int:
    """Delete every expired connection; returns how many entries were removed."""
    now = time.monotonic_ns() if now_ns is None else now_ns
    entries = {_ident(k): (k, v) for k, v in ct.items()}
    paired: set[tuple[int, ...]] = set()
    removed = 0
    for key, value in list(entries.values()):
        if key.dir != n.CtDir.EGRESS:
            continue
        rk = reply_key(key, value)
        partner = entries.get(_ident(rk))
        paired.add(_ident(rk))
        last = max(value.last_seen, partner[1].last_seen if partner else 0)
        flags = value.flags | (partner[1].flags if partner else 0)
        if now - last > timeout_of(key.proto, flags, timeouts) * 1e9:
            removed += int(ct.delete(key))
            if partner:
                removed += int(ct.delete(rk))
    for ident, (key, value) in entries.items():
        if key.dir == n.CtDir.REPLY and ident not in paired and (
                now - value.last_seen > timeout_of(key.proto, value.flags, timeouts) * 1e9):
            removed += int(ct.delete(key))
    return removed
