"""Connection-tracking state replicated between a cluster's gateway nodes (conntrackd).

The active gateway's kernel holds the state of every connection it carries: which
backend kube-proxy chose for an ingress connection, which global IP and port an
egress connection left with. A standby that takes over without that state sees
established connections arrive mid-stream; whichever packet comes first makes a
new entry, and when it is a reply (a backend answering a remote client) the egress
translation claims it and the connection is reset. So every gateway node runs
conntrackd (netfilter's conntrack-tools, FTFW mode), sending each change of a
cross-cluster connection to the other gateway nodes, which keep it in conntrackd's
*external cache*, outside their kernel; the node that turns active commits that
cache into its kernel (`ConntrackSync.take_over`: 130-320 ms for the few thousand
entries of a lab's probes, while the remote clusters' cables move to it), and a
node that turns passive has its kernel's leftovers of its term expire
(`ConntrackSync.stand_by`).

Nothing a peer sends ever writes into the active gateway's kernel. It did once
(peers wrote received entries straight into their kernels): a passive node's
leftover entry for a tuple the active one had just reused (a client port, minutes
later) came back to the active node as an update or a delete, and conntrackd
replaced or removed the live entry; the connection's next packet made a new one,
kube-proxy chose another backend, and that backend reset the connection (about one
new connection in fifty, in steady state as after a failover).

Only cross-cluster connections are replicated (`Filter`: an address in one of
`SyncLink.subnets`, the global CIDRs of the clusterset under Globalnet), over the
cluster network (the nodes' InternalIPs: the underlay link may be the one that
failed). One peer: UDP unicast; more: a multicast group on the same link.

A passive gateway node must not track cross-cluster connections itself: packets
of connections the active gateway carries pass through it when it hosts their
backend (or their client), and its own entry for such a pass-through connection
has the same reply tuple as the active gateway's NATed one, so the replicated
entry (or the one it makes itself at takeover) is given another port and the
connection is reset. `Standby` keeps the table `inet globalnet-standby` on a passive
node (`notrack` for every address of `SyncLink.subnets`, before conntrack) and
removes it the moment the node turns active, before its cable carries anything.

This module knows no API: the gateway engine finds the peers and hands over a
`SyncLink`; `ConntrackSync.converge` starts, restarts (on a changed link) or stops
the daemon, one per node, and says how it is doing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import netaddr

from datapath import daemons

log = logging.getLogger(__name__)

SYNC_PORT = 3780  # conntrackd's customary port
MULTICAST_GROUP = "225.0.0.50"
BINARY = "conntrackd"


class ConntrackSyncError(RuntimeError):
    """conntrackd cannot run here (missing binary, no address for the link)."""


@dataclass(frozen=True)
class SyncLink:
    """What one node's conntrackd needs: its address on the link the gateway nodes
    share, the other gateway nodes' addresses there, and which connections count."""

    local_ip: str
    peers: tuple[str, ...]
    subnets: tuple[str, ...]
    port: int = SYNC_PORT

    def __post_init__(self) -> None:
        for ip in (self.local_ip, *self.peers):
            if not netaddr.valid_ipv4(ip):
                raise ConntrackSyncError(f"not an IPv4 address for conntrack sync: {ip!r}")
        for cidr in self.subnets:
            try:
                netaddr.IPNetwork(cidr)
            except (netaddr.AddrFormatError, ValueError, TypeError) as exc:
                raise ConntrackSyncError(f"not a CIDR for conntrack sync: {cidr!r}") from exc


def render_config(link: SyncLink, interface: str, run_dir: Path) -> str:
    """conntrackd.conf for `link` on device `interface`, its files under `run_dir`."""
    if len(link.peers) == 1:
        transport = (f"  UDP {{\n    IPv4_address {link.local_ip}\n"
                     f"    IPv4_Destination_Address {link.peers[0]}\n"
                     f"    Port {link.port}\n    Interface {interface}\n"
                     "    Checksum on\n  }\n")
    else:
        transport = (f"  Multicast {{\n    IPv4_address {MULTICAST_GROUP}\n"
                     f"    Group {link.port}\n    IPv4_interface {link.local_ip}\n"
                     f"    Interface {interface}\n    Checksum on\n  }}\n")
    accepted = "\n".join(
        f"      IPv{netaddr.IPNetwork(c).version}_address {netaddr.IPNetwork(c).cidr}"
        for c in sorted(set(link.subnets)))
    return (
        "# Written by the Globalnet gateway engine (datapath/ctsync.py): replicates the\n"
        "# state of cross-cluster connections to the other gateway nodes.\n"
        "Sync {\n"
        "  Mode FTFW {\n"
        "    # Received entries stay in the external cache; the node that turns\n"
        "    # active commits them (conntrackd -c): a peer never writes into the\n"
        "    # active gateway's kernel.\n"
        "    DisableExternalCache off\n"
        "    StartupResync on\n"
        "  }\n"
        f"{transport}"
        "}\n"
        "General {\n"
        "  HashSize 8192\n"
        "  HashLimit 262144\n"
        "  Syslog off\n"
        f"  LogFile {run_dir / 'conntrackd.log'}\n"
        f"  LockFile {run_dir / 'conntrackd.lock'}\n"
        f"  UNIX {{\n    Path {run_dir / 'conntrackd.ctl'}\n  }}\n"
        "  NetlinkBufferSize 2097152\n"
        "  NetlinkBufferSizeMaxGrowth 8388608\n"
        "  NetlinkEventsReliable on\n"
        "  Filter From Userspace {\n"
        "    Address Accept {\n"
        f"{accepted}\n"
        "    }\n"
        "  }\n"
        "}\n")


STANDBY_TABLE = "globalnet-standby"


def standby_ruleset(subnets: tuple[str, ...]) -> str:
    """The passive node's table: cross-cluster traffic passes through untracked."""
    elements = ", ".join(str(netaddr.IPNetwork(c).cidr) for c in sorted(set(subnets)))
    chains = []
    for chain, hook in (("prerouting", "prerouting"), ("output", "output")):
        chains.append(
            f"  chain {chain} {{\n"
            f"    type filter hook {hook} priority raw - 10; policy accept;\n"
            f'    ip saddr @clusterset notrack comment "passive gateway: cross-cluster '
            f'connections are tracked on the active one"\n'
            f'    ip daddr @clusterset notrack comment "passive gateway: cross-cluster '
            f'connections are tracked on the active one"\n'
            "  }\n")
    return (f"table inet {STANDBY_TABLE}\ndelete table inet {STANDBY_TABLE}\n"
            f"table inet {STANDBY_TABLE} {{\n"
            '  comment "Globalnet: this gateway node is passive (gateway/engine.py)"\n'
            "  set clusterset {\n    type ipv4_addr; flags interval;\n"
            f'    comment "every cluster\'s global CIDR"\n'
            f"    elements = {{ {elements} }}\n  }}\n"
            + "".join(chains) + "}\n")


class Standby:
    """The passive node's untracked table in namespace `netns` (None: ours)."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._applied: tuple[str, ...] | None = None

    def converge(self, subnets: tuple[str, ...] | None) -> None:
        """Untrack `subnets` (passive); None: remove the table (active)."""
        if subnets == self._applied and subnets is not None:
            return
        if subnets:
            self._nft(standby_ruleset(subnets))
        else:
            self._nft(f"table inet {STANDBY_TABLE}\ndelete table inet {STANDBY_TABLE}\n")
        self._applied = subnets or None

    def _nft(self, script: str) -> None:
        argv = ["nft", "-f", "-"]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        proc = subprocess.run(argv, input=script, text=True, capture_output=True, timeout=10)
        if proc.returncode != 0:
            self._applied = None
            raise ConntrackSyncError(f"nft: {proc.stderr.strip()}")


def available() -> bool:
    return shutil.which(BINARY) is not None


class ConntrackSync:
    """One node's conntrackd, run as our child in network namespace `netns` (None:
    ours), with its config, lock, control socket and log in `run_dir`."""

    def __init__(self, run_dir: Path, netns: str | None = None) -> None:
        self.run_dir, self.netns = run_dir, netns
        self._link: SyncLink | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def link(self) -> SyncLink | None:
        return self._link

    def running(self) -> bool:
        child = self._child
        return child is not None and child.poll() is None

    def ready(self) -> bool:
        """Running and past its initialisation (its control socket is there): events
        from now on are replicated; a connection made before may not be until the
        next change of its state."""
        return self.running() and (self.run_dir / "conntrackd.ctl").exists()

    def converge(self, link: SyncLink | None) -> None:
        """Run conntrackd for `link` (restarted when it changed or died); None: none."""
        with self._lock:
            if link is None or not link.peers:
                self._stop()
                self._link = None
                return
            if link == self._link and self.running():
                return
            self._stop()
            self._start(link)

    def stop(self) -> None:
        with self._lock:
            self._stop()
            self._link = None

    def take_over(self) -> float:
        """This node turns active: commit the entries its peers sent into the kernel,
        then make them this node's own (its
        internal cache from the kernel, sent in bulk to the peers, whose external
        caches now follow this node). Returns the commit's seconds."""
        start = time.monotonic()
        self._control("-c")
        took = time.monotonic() - start
        for option in ("-f", "internal"), ("-R",), ("-B",):
            self._control(*option)
        return took

    def stand_by(self) -> None:
        """This node turns passive: its kernel's entries of its term expire soon
        (conntrackd's PurgeTimeout, not days for an established connection), and it
        asks the active node for its state."""
        self._control("-t")
        self._control("-n")

    def _control(self, *option: str) -> None:
        """One request to the running daemon over its control socket."""
        conf = self.run_dir / "conntrackd.conf"
        if not self.ready():
            raise ConntrackSyncError("conntrackd is not running yet")
        binary = shutil.which(BINARY) or BINARY
        try:
            proc = subprocess.run([binary, "-C", str(conf), *option], capture_output=True,
                                  text=True, timeout=10)
        except subprocess.TimeoutExpired as exc:
            raise ConntrackSyncError(f"conntrackd {' '.join(option)}: no answer in 10 s"
                                     ) from exc
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines()
            raise ConntrackSyncError(f"conntrackd {' '.join(option)}: "
                                     f"{lines[-1] if lines else f'exit {proc.returncode}'}")

    def _start(self, link: SyncLink) -> None:
        binary = shutil.which(BINARY)
        if binary is None:
            raise ConntrackSyncError("conntrackd not found (Debian package conntrackd): "
                                     "connections will not survive a gateway failover")
        interface = self._interface_of(link.local_ip)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        conf = self.run_dir / "conntrackd.conf"
        conf.write_text(render_config(link, interface, self.run_dir))
        # A lock left by a conntrackd killed with its container: no process of ours
        # holds it (the pid file says which would).
        self._reap_previous()
        (self.run_dir / "conntrackd.lock").unlink(missing_ok=True)
        argv = [binary, "-C", str(conf)]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        self._child = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       start_new_session=True)
        (self.run_dir / "conntrackd.pid").write_text(f"{self._child.pid}\n")
        self._link = link
        log.info("conntrack sync with %s over %s (%s)", ", ".join(link.peers), interface,
                 "unicast" if len(link.peers) == 1 else "multicast")

    def _stop(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            daemons.stop(child.pid, child)
            (self.run_dir / "conntrackd.pid").unlink(missing_ok=True)

    def _reap_previous(self) -> None:
        """Stop a conntrackd an earlier engine of this node left (its pid file)."""
        pid_file = self.run_dir / "conntrackd.pid"
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().strip())
            if pid != os.getpid() and _is_conntrackd(pid):
                daemons.stop(pid, None)
        pid_file.unlink(missing_ok=True)

    def _interface_of(self, ip: str) -> str:
        from datapath.netlink import IPRoute

        ipr: Any = IPRoute(netns=self.netns) if self.netns else IPRoute()
        try:
            addrs = ipr.get_addr(address=ip)
            if not addrs:
                raise ConntrackSyncError(f"no interface holds {ip}, the conntrack sync address")
            return str(ipr.get_links(int(addrs[0]["index"]))[0].get_attr("IFLA_IFNAME"))
        finally:
            ipr.close()


def _is_conntrackd(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(a.endswith(b"conntrackd") for a in argv[:4])
