"""Listening ports for lab and test processes, chosen so nothing else can take them.

A port from `bind(('', 0))` lies in the kernel's ephemeral range, the one every
outgoing connection draws its source port from: between picking it and etcd or
an API server binding it, a client connection can take it ("address already in
use"). So ports are picked below that range, at random (several test processes
may pick at once), checked free, and never handed out twice by one process.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_SPAN = 12_000  # how far below the ephemeral range we look
_handed_out: set[int] = set()


def port_is_free(host: str, port: int) -> bool:
    """Whether a listener could bind `host:port` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def listen_port_range() -> range:
    """Ports below the kernel's ephemeral range (default 20768-32767)."""
    try:
        low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return range(max(1024, low - _SPAN), low)


def free_port_block(count: int, host: str = "127.0.0.1") -> int:
    """First of `count` consecutive free ports that this process has not handed out."""
    ports = listen_port_range()
    for _ in range(500):
        base = random.randrange(ports.start, ports.stop - count)
        block = range(base, base + count)
        if _handed_out.isdisjoint(block) and all(port_is_free(host, p) for p in block):
            _handed_out.update(block)
            return base
    raise RuntimeError(f"no {count} consecutive free ports in {ports.start}-{ports.stop - 1}")


def free_port(host: str = "127.0.0.1") -> int:
    """One free listening port (see the module docstring for why not port 0)."""
    return free_port_block(1, host)
