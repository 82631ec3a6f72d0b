"""Listening ports for test and lab processes: outside the ephemeral range, never twice."""

from __future__ import annotations

import socket
from pathlib import Path

from lab import ports


def test_ports_are_below_the_ephemeral_range_and_never_handed_out_twice() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    picked = [ports.free_port() for _ in range(200)]
    assert len(set(picked)) == len(picked)
    assert all(1024 <= p < low for p in picked)


def test_a_port_in_use_is_never_picked() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", ports.free_port()))
        busy.listen()
        taken = busy.getsockname()[1]
        assert not ports.port_is_free("127.0.0.1", taken)
        base = ports.free_port_block(3)
        assert all(ports.port_is_free("127.0.0.1", base + i) for i in range(3))
        assert taken not in range(base, base + 3)
