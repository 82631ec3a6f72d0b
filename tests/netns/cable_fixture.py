"""What the cable drivers' tests share: two gateway namespaces on an underlay veth
pair, each holding an address of its cluster's global CIDR, and one TCP exchange
through whatever tunnel joins them."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from datapath import netns as nsutil
from lab import netns


@contextmanager
def two_gateways(make_netns: Callable[[str], str], tag: str, a_ip: str, b_ip: str
                 ) -> Iterator[tuple[str, str]]:
    """Namespaces `<tag>a` (underlay `a_ip`, holding 242.1.0.1) and `<tag>b` (`b_ip`,
    242.2.0.1), joined by `ul0`."""
    a, b = make_netns(f"{tag}a"), make_netns(f"{tag}b")
    netns.ensure_veth(netns=a, ifname="ul0", peer_netns=b, peer_ifname="ul0",
                      address=f"{a_ip}/24", peer_address=f"{b_ip}/24")
    for ns, own in ((a, "242.1.0.1"), (b, "242.2.0.1")):
        netns.run(ns, ["ip", "link", "set", "lo", "up"])
        netns.run(ns, ["ip", "addr", "add", f"{own}/32", "dev", "lo"])
    yield a, b


def processes_in(name: str) -> list[int]:
    """PIDs whose network namespace is `name`'s."""
    inode, found = os.stat(nsutil.NETNS_DIR / name).st_ino, []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.stat(entry / "ns" / "net").st_ino == inode:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def tcp_echo(server_ns: str, client_ns: str, src: str, dst: str) -> bytes:
    """One TCP exchange from `src` in `client_ns` to `dst`:7000 in `server_ns`."""
    with nsutil.entered(server_ns):
        server = socket.create_server((dst, 7000))
    with nsutil.entered(client_ns):
        client = socket.socket()
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            got.append(conn.recv(100))
            conn.sendall(b"pong " + got[0])

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        client.settimeout(10)
        client.bind((src, 0))
        client.connect((dst, 7000))
        client.sendall(b"ping")
        answer = client.recv(100)
    finally:
        client.close()
        t.join(10)
        server.close()
    assert got == [b"ping"]
    return answer
