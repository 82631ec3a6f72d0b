"""The WireGuard cable: an encrypted tunnel between the active gateways.

One device per gateway node, `wg-globalnet` (UDP 51820), with a tunnel address
241.a.b.c/8 from the low 24 bits of the node's underlay IP (VXLAN's 240/8 scheme
on another /8, so both devices can stand side by side while a node changes
driver). Every remote gateway is a peer: its public key and underlay endpoint
from its Endpoint, allowed IPs its subnets (the global CIDR) plus its tunnel
address/32, and its subnets are routes via its tunnel address (`proto 150`, as
for VXLAN). MTU: the underlay's minus 80 (outer IPv6 40 + UDP 8 + WireGuard 32;
the IPv4 case needs 60, one size fits both).

Who carries the packets: kernel WireGuard when `ip link add type wireguard` works
in the gateway's namespace, else `wireguard-go` (userspace over TUN, foreground,
one process per device whose PID is kept beside its UAPI socket so a restarted
engine adopts or stops it). Both are configured with `wg` and read back with
`wg show DEV dump`, the one code path. `wg` and wireguard-go meet at
`/run/wireguard/DEV.sock`, a fixed path: in a pod that is the container's own
/run; several gateways sharing one mount namespace (tests) each pass `run_root`,
a directory that stands for /run of their wireguard-go and `wg` in a private
mount namespace (needs CAP_SYS_ADMIN).

The key pair is the gateway's, made once (X25519, 0600) under `state_dir` and kept
across restarts, so a restarted engine publishes the same public key and its
peers need no change; the private key never leaves the node.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import netaddr

from datapath import daemons
from datapath import netns as nsutil
from datapath.cable import CableError, PeerState, RemoteGateway, configure_device
from datapath.netlink import IPRoute
from datapath.routes import ConvergeResult, Route, cable_routes

log = logging.getLogger(__name__)

IFNAME = "wg-globalnet"
PORT = 51820
TUNNEL_NET = netaddr.IPNetwork("241.0.0.0/8")
OVERHEAD = 80
KEEPALIVE = 10  # seconds: keeps the handshake fresh, so a dead peer shows within one
PUBLIC_KEY = "publicKey"  # upstream's backend_config keys
UDP_PORT = "udp-port"
KEY_FILE = "wireguard-private.key"
IMPLEMENTATIONS = ("auto", "kernel", "userspace")
USERSPACE = "wireguard-go"
START_TIMEOUT = 5.0


def tunnel_ip(private_ip: str) -> str:
    """241.x.y.z: the WireGuard tunnel address of the gateway at underlay IP w.x.y.z."""
    return str(netaddr.IPAddress(int(TUNNEL_NET.network) | (int(netaddr.IPAddress(private_ip))
                                                           & 0xFFFFFF)))


def load_or_create_key(state_dir: Path) -> tuple[str, str]:
    """(private, public) key, base64 as `wg` writes them; made on first use.

    Written to a temporary file opened 0600 and renamed, so a crash leaves either
    no key or a whole one, never one readable by others.
    """
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    path = state_dir / KEY_FILE
    if path.exists():
        private = path.read_text().strip()
        try:
            raw = base64.b64decode(private, validate=True)
            key = X25519PrivateKey.from_private_bytes(raw)
        except ValueError as exc:
            raise CableError(f"{path} holds no WireGuard private key: {exc}") from None
    else:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = X25519PrivateKey.generate()
        private = base64.b64encode(key.private_bytes_raw()).decode()
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(private + "\n")
        os.replace(tmp, path)
        log.info("made a WireGuard key pair in %s", path)
    public = base64.b64encode(key.public_key().public_bytes_raw()).decode()
    return private, public


@dataclass(frozen=True)
class Peer:
    """One peer line of `wg show DEV dump`."""

    public_key: str
    endpoint: str  # "" for (none)
    allowed_ips: frozenset[str]
    latest_handshake: int
    rx_bytes: int
    tx_bytes: int
    keepalive: int  # 0: off


@dataclass(frozen=True)
class Dump:
    private_key: str
    listen_port: int
    peers: dict[str, Peer]


def parse_dump(text: str) -> Dump:
    """`wg show DEV dump`: the interface line, then one line per peer, tab-separated."""
    lines = [line.split("\t") for line in text.splitlines() if line.strip()]
    if not lines or len(lines[0]) < 3:
        raise CableError(f"unexpected `wg show dump` output: {text[:80]!r}")
    private, _public, port = lines[0][:3]
    peers = {}
    for f in lines[1:]:
        if len(f) < 8:
            continue
        peers[f[0]] = Peer(
            public_key=f[0], endpoint="" if f[2] == "(none)" else f[2],
            allowed_ips=frozenset() if f[3] == "(none)" else frozenset(f[3].split(",")),
            latest_handshake=int(f[4]), rx_bytes=int(f[5]), tx_bytes=int(f[6]),
            keepalive=0 if f[7] == "off" else int(f[7]))
    return Dump("" if private == "(none)" else private, int(port), peers)


class WireguardCable:
    """The WireGuard cable of one gateway node (a network namespace, or our own)."""

    driver = "wireguard"

    def __init__(self, local_ip: str, *, state_dir: Path, netns: str | None = None,
                 mtu: int = 1500, port: int = PORT, run_root: Path | None = None,
                 implementation: str = "auto", daemon: str = "managed") -> None:
        if implementation not in IMPLEMENTATIONS:
            raise CableError(f"WireGuard implementation {implementation!r}: "
                             f"one of {', '.join(IMPLEMENTATIONS)}")
        if daemon not in ("managed", "external"):
            raise CableError(f"WireGuard daemon {daemon!r}: managed or external")
        # external: wireguard-go runs beside us (the gateway pod's cable container)
        # and outlives our restarts; we never start, stop or replace it.
        self.external = daemon == "external"
        self.local_ip, self.netns, self.port = local_ip, netns, port
        self.mtu = mtu - OVERHEAD
        self.run_root, self.want = run_root, implementation
        self.private_key, self.public_key = load_or_create_key(state_dir)
        self.routes = cable_routes(netns)
        self.mode: str | None = None  # "kernel" or USERSPACE once the device is known
        self._proc: subprocess.Popen[bytes] | None = None
        self._ips: dict[str, str] = {}  # public key -> remote private IP

    # -- the Cable protocol ------------------------------------------------------------

    def implementation(self) -> str:
        if self.mode is None:
            with self._ipr() as ipr:
                found = ipr.link_lookup(ifname=IFNAME)
                if found:
                    self.mode = self._mode_of(ipr, int(found[0]))
        return self.mode or "none"

    def backend_config(self) -> dict[str, str]:
        return {PUBLIC_KEY: self.public_key, UDP_PORT: str(self.port)}

    def tunnel_ip(self, private_ip: str) -> str:
        return tunnel_ip(private_ip)

    def unusable(self, remote: RemoteGateway) -> str | None:
        key = remote.config(PUBLIC_KEY)
        if not key:
            return "no WireGuard public key in its Endpoint"
        try:
            if len(base64.b64decode(key, validate=True)) != 32:
                raise ValueError("not 32 bytes")
        except ValueError:
            return f"its WireGuard public key {key!r} is not valid"
        port = remote.config(UDP_PORT) or str(PORT)
        if not port.isdigit() or not 0 < int(port) < 65536:
            return f"its udp-port {port!r} is not a port"
        return None

    def converge(self, remotes: list[RemoteGateway]) -> ConvergeResult:
        usable = [r for r in remotes
                  if r.private_ip != self.local_ip and self.unusable(r) is None]
        wanted: dict[str, tuple[str, frozenset[str]]] = {}
        for r in usable:
            allowed = frozenset({*r.subnets, f"{tunnel_ip(r.private_ip)}/32"})
            host = f"[{r.private_ip}]" if ":" in r.private_ip else r.private_ip
            wanted[str(r.config(PUBLIC_KEY))] = (f"{host}:{r.config(UDP_PORT) or PORT}",
                                                 allowed)
        self._ensure_device()
        dump = self._dump()
        for key in sorted(set(dump.peers) - set(wanted)):
            self._wg(["set", IFNAME, "peer", key, "remove"])
            log.info("removed WireGuard peer %s", key)
        for key, (endpoint, allowed) in sorted(wanted.items()):
            have = dump.peers.get(key)
            if (have and have.endpoint == endpoint and have.allowed_ips == allowed
                    and have.keepalive == KEEPALIVE):
                continue
            self._wg(["set", IFNAME, "peer", key, "endpoint", endpoint,
                      "allowed-ips", ",".join(sorted(allowed)),
                      "persistent-keepalive", str(KEEPALIVE)])
            log.info("WireGuard peer %s at %s: %s", key, endpoint, ", ".join(sorted(allowed)))
        self._ips = {str(r.config(PUBLIC_KEY)): r.private_ip for r in usable}
        return self.routes.converge({Route(subnet, tunnel_ip(r.private_ip))
                                     for r in usable for subnet in r.subnets})

    def peers(self) -> dict[str, PeerState]:
        if not self.exists():
            return {}
        try:
            dump = self._dump()
        except CableError:
            return {}
        return {self._ips[k]: PeerState(p.latest_handshake, p.rx_bytes, p.tx_bytes, p.endpoint)
                for k, p in dump.peers.items() if k in self._ips}

    def exists(self) -> bool:
        with self._ipr() as ipr:
            return bool(ipr.link_lookup(ifname=IFNAME))

    def remove(self) -> None:
        """Routes, the userspace daemon (by PID), the device, its socket: all gone.
        With an external daemon the device is its: only routes and peers go."""
        self.routes.clear()
        if self.external:
            if self.exists() and self._answers():
                for key in sorted(self._dump().peers):
                    self._wg(["set", IFNAME, "peer", key, "remove"])
            self.mode = None
            return
        self._stop_daemon()
        with self._ipr() as ipr:
            for index in ipr.link_lookup(ifname=IFNAME):
                ipr.link("del", index=index)
        self._clean_run_files()
        self.mode = None

    # -- the device --------------------------------------------------------------------

    def _ipr(self) -> IPRoute:
        return IPRoute(netns=self.netns) if self.netns else IPRoute()

    @property
    def run_dir(self) -> Path:
        """Where wireguard-go's UAPI socket (and our PID file) is, seen from here."""
        return (self.run_root or Path("/run")) / "wireguard"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{IFNAME}.globalnet.pid"

    def _mode_of(self, ipr: IPRoute, index: int) -> str:
        info = ipr.get_links(index)[0].get_attr("IFLA_LINKINFO")
        kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
        return "kernel" if kind == "wireguard" else USERSPACE

    def _command(self, argv: list[str]) -> list[str]:
        if self.run_root is None:
            return argv
        return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                'mount --bind "$0" /run && exec "$@"', str(self.run_root), *argv]

    def _wg(self, args: list[str], *, stdin: str | None = None) -> str:
        with nsutil.entered(self.netns):
            out = subprocess.run(self._command(["wg", *args]), input=stdin,
                                 capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            raise CableError(f"wg {args[0]} {IFNAME}: {out.stderr.strip() or out.returncode}")
        return out.stdout

    def _dump(self) -> Dump:
        return parse_dump(self._wg(["show", IFNAME, "dump"]))

    def _answers(self) -> bool:
        try:
            self._dump()
        except CableError:
            return False
        return True

    def _ensure_device(self) -> None:
        with self._ipr() as ipr:
            found = ipr.link_lookup(ifname=IFNAME)
            if found:
                known, self.mode = self.mode, self._mode_of(ipr, int(found[0]))
                if known is None:
                    log.info("found %s (%s): keeping it", IFNAME, self.mode)
                if self.mode == USERSPACE and self.external and not self._answers():
                    raise CableError(f"{IFNAME} exists but {USERSPACE} does not answer on "
                                     f"{self.run_dir}/{IFNAME}.sock yet")
                if self.mode == USERSPACE and not self._answers():
                    # A TUN device nobody serves (its daemon was killed): start over.
                    log.warning("%s has no wireguard-go behind it: rebuilding", IFNAME)
                    ipr.link("del", index=int(found[0]))
                    found = []
            if not found and self.external and not self._kernel_possible(ipr):
                raise CableError(f"waiting for {USERSPACE} (the cable container) to "
                                 f"create {IFNAME}")
            if not found:
                self._stop_daemon()  # one left from a device deleted by hand
                self._clean_run_files()
                self._create(ipr)
                found = ipr.link_lookup(ifname=IFNAME)
                if not found:
                    raise CableError(f"{IFNAME} did not appear")
            index = int(found[0])
            dump = self._dump()
            if dump.private_key != self.private_key or dump.listen_port != self.port:
                self._wg(["set", IFNAME, "private-key", "/dev/stdin",
                          "listen-port", str(self.port)], stdin=self.private_key + "\n")
            configure_device(ipr, index, tunnel_ip(self.local_ip), TUNNEL_NET.prefixlen,
                             self.mtu)

    def _kernel_possible(self, ipr: IPRoute) -> bool:
        """Whether this namespace's kernel makes WireGuard devices (then the device is
        ours to make even with an external daemon: it has nothing to run)."""
        if self.want == "userspace":
            return False
        probe = "gn-wg-probe"
        try:
            ipr.link("add", ifname=probe, kind="wireguard")
        except Exception:  # pyroute2's NetlinkError: no WireGuard module
            return False
        for index in ipr.link_lookup(ifname=probe):
            ipr.link("del", index=index)
        return True

    def _create(self, ipr: IPRoute) -> None:
        if self.want in ("auto", "kernel"):
            try:
                ipr.link("add", ifname=IFNAME, kind="wireguard")
                self.mode = "kernel"
                log.info("created %s with kernel WireGuard (UDP %d)", IFNAME, self.port)
                return
            except Exception as exc:  # pyroute2's NetlinkError (EOPNOTSUPP: no module)
                if self.want == "kernel":
                    raise CableError(f"kernel WireGuard: cannot create {IFNAME}: {exc}") from None
                log.info("no kernel WireGuard here (%s): using %s", exc, USERSPACE)
        self._start_daemon()
        self.mode = USERSPACE

    def _start_daemon(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        log_path = self.run_dir / f"{IFNAME}.globalnet.log"
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "WG_PROCESS_FOREGROUND": "1", "LOG_LEVEL": "error"}
        with nsutil.entered(self.netns), open(log_path, "wb") as out:
            try:
                proc = subprocess.Popen(self._command([USERSPACE, "-f", IFNAME]), env=env,
                                        stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                        start_new_session=True)
            except FileNotFoundError:
                raise CableError(f"{USERSPACE} is not installed and this kernel has no "
                                 "WireGuard") from None
        self._proc = proc
        self.pid_file.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + START_TIMEOUT
        sock = self.run_dir / f"{IFNAME}.sock"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if sock.exists() and self.exists():
                log.info("created %s with %s (userspace, PID %d, UDP %d)",
                         IFNAME, USERSPACE, proc.pid, self.port)
                return
            time.sleep(0.05)
        self._stop_daemon()
        tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise CableError(f"{USERSPACE} did not start {IFNAME}: {tail[0]}")

    def _daemon_pid(self) -> int | None:
        """The PID of our wireguard-go for this device, if it still runs."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        if USERSPACE.encode() not in cmdline or IFNAME.encode() not in cmdline:
            return None  # a PID reused by someone else
        if self._proc is not None and self._proc.pid == pid and self._proc.poll() is not None:
            return None
        return pid

    def _stop_daemon(self) -> None:
        pid = self._daemon_pid()
        daemons.stop(pid, self._proc)
        if pid is not None:
            log.info("stopped %s (PID %d)", USERSPACE, pid)
        self._proc = None


    def _clean_run_files(self) -> None:
        for name in (f"{IFNAME}.sock", f"{IFNAME}.globalnet.pid", f"{IFNAME}.globalnet.log"):
            with contextlib.suppress(FileNotFoundError):
                (self.run_dir / name).unlink()
