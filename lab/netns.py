"""Network namespaces, links and addresses for the lab, through pyroute2.

Every lab object lives inside namespaces the lab created: nothing here touches
the namespace the caller runs in, except to enter and leave it. Changes are
idempotent (`ensure_*`): RTNL shows some results late and a retried `lab up`
must not fail on what the first attempt already did.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from pathlib import Path

from pyroute2 import IPRoute, NetlinkError
from pyroute2 import netns as pr_netns

from datapath.netns import NETNS_DIR, entered

__all__ = ["entered"]


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def list_names(prefix: str = "") -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix))


def ensure_netns(name: str) -> None:
    """Create namespace `name` with loopback up (no-op when it exists)."""
    if not exists(name):
        pr_netns.create(name)
    with IPRoute(netns=name) as ipr:
        lo = ipr.link_lookup(ifname="lo")
        ipr.link("set", index=lo[0], state="up")


def delete_netns(name: str) -> None:
    """Delete a namespace; links inside it go with it."""
    if exists(name):
        with contextlib.suppress(FileNotFoundError, OSError):
            pr_netns.remove(name)
    with contextlib.suppress(FileNotFoundError):
        (Path("/etc/netns") / name).joinpath("resolv.conf").unlink()
    with contextlib.suppress(FileNotFoundError, OSError):
        (Path("/etc/netns") / name).rmdir()


def _index(ipr: IPRoute, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise LookupError(f"no link {ifname}")
    return int(found[0])


def ensure_bridge(netns: str, ifname: str, address: str | None = None) -> None:
    """A bridge in `netns`, up, optionally with `address` (CIDR notation)."""
    with IPRoute(netns=netns) as ipr:
        if not ipr.link_lookup(ifname=ifname):
            ipr.link("add", ifname=ifname, kind="bridge")
        idx = _index(ipr, ifname)
        if address:
            _ensure_address(ipr, idx, address)
        ipr.link("set", index=idx, state="up")


def _ensure_address(ipr: IPRoute, idx: int, cidr: str) -> None:
    addr, _, plen = cidr.partition("/")
    try:
        ipr.addr("add", index=idx, address=addr, prefixlen=int(plen or 32))
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise


def ensure_veth(
    *,
    netns: str,
    ifname: str,
    peer_netns: str,
    peer_ifname: str,
    address: str | None = None,
    peer_address: str | None = None,
    master: str | None = None,
    peer_master: str | None = None,
) -> None:
    """A veth pair between two namespaces, both ends up.

    The pair is created inside `netns` with the peer moved into `peer_netns` in
    the same request, so it never appears in the caller's namespace.
    """
    with IPRoute(netns=netns) as ipr:
        if not ipr.link_lookup(ifname=ifname):
            peer_fd = os.open(NETNS_DIR / peer_netns, os.O_RDONLY)
            try:
                ipr.link(
                    "add", ifname=ifname, kind="veth",
                    peer={"ifname": peer_ifname, "net_ns_fd": peer_fd},
                )
            finally:
                os.close(peer_fd)
    for ns, name, addr, br in (
        (netns, ifname, address, master),
        (peer_netns, peer_ifname, peer_address, peer_master),
    ):
        with IPRoute(netns=ns) as ipr:
            idx = _index(ipr, name)
            if br:
                ipr.link("set", index=idx, master=_index(ipr, br))
            if addr:
                _ensure_address(ipr, idx, addr)
            ipr.link("set", index=idx, state="up")


def ensure_route(
    netns: str, dst: str, *, gateway: str | None = None, dev: str | None = None,
    onlink: bool = False,
) -> None:
    """Add or replace a route in `netns` (dst "default" or a CIDR)."""
    with IPRoute(netns=netns) as ipr:
        spec: dict[str, object] = {"dst": dst}
        if gateway:
            spec["gateway"] = gateway
        if dev:
            spec["oif"] = _index(ipr, dev)
            if not gateway:
                spec["scope"] = 253  # link: a directly attached destination, as `ip route` sets
        if onlink:
            spec["flags"] = 4  # RTNH_F_ONLINK: the gateway is reachable though not in a subnet
        ipr.route("replace", **spec)


def set_sysctl(netns: str, key: str, value: str) -> None:
    """Write a per-namespace sysctl (e.g. net.ipv4.ip_forward)."""
    path = Path("/proc/sys") / key.replace(".", "/")
    with entered(netns):
        # /proc/sys/net follows the writer's network namespace.
        path.write_text(value)


def exec_argv(netns: str, argv: list[str]) -> list[str]:
    """The argv that runs `argv` inside `netns` (a node's or the lab's own; pods
    are entered through `Lab.exec_argv`)."""
    return ["ip", "netns", "exec", netns, *argv]


def run(netns: str, argv: list[str], *, check: bool = True, timeout: float = 60) -> str:
    """Run a command inside `netns` and return its stdout."""
    proc = subprocess.run(
        exec_argv(netns, argv), capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} in {netns} failed ({proc.returncode}): {proc.stderr.strip()}"
        )
    return proc.stdout
