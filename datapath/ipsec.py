"""The IPsec cable: IKEv2 + ESP-in-UDP between the active gateways, by strongSwan.

One charon per gateway node, with its own generated `strongswan.conf` (through
`STRONGSWAN_CONF`), its own vici socket and log under `<run_root>/ipsec/`, and
configured only through vici (PyPI `vici`). charon writes its PID file to the
fixed `/run/charon.pid`: several gateways sharing one mount namespace (tests)
each pass `run_root`, which charon gets as its private /run (`unshare --mount`,
as `datapath.wireguard` does for wireguard-go; needs CAP_SYS_ADMIN).

Who carries the packets: kernel-libipsec, ESP in userspace over a TUN device
that the plugin names `ipsec%d` itself (`ipsec0` in a gateway namespace of its
own; found from charon's log, or as the one TUN device called ipsec*). This
kernel has TUN but no ESP, so kernel xfrm SAs cannot be installed here; on a
node with ESP the same IKE configuration would work with kernel-netlink alone
(not implemented: `implementation="kernel"` is refused). The TUN device gets a
tunnel address 243.a.b.c/8 from the low 24 bits of the underlay IP (VXLAN is on
240/8 and WireGuard on 241/8, so the drivers can stand side by side) and the
underlay MTU minus OVERHEAD, at most 1400 (LIBIPSEC_MTU: libipsec's own buffer).

Plugins: exactly `LOAD`, the minimal set found by hand: without `kdf` 5.9's
PRF+ fails ("KDF_PRF ... not supported"), without `nonce` charon does not start;
`random` is not needed (openssl's RNG serves), nor x509, pem, pubkey or updown
for PSK authentication.

One IKE connection `gn-<remote underlay IP>` per remote gateway: IKEv2, PSK (one
key for the clusterset, `CableOptions.psk`), identities the underlay IPs,
AES-GCM-256 with X25519, `encap = yes` so ESP always goes in UDP 4500 (the
underlay carries only UDP 500 and 4500; kernel-libipsec only does UDP-encapsulated
ESP anyway). Its one child `gn` has remote_ts = the remote's subnets + its
tunnel address/32 and local_ts = ours. Of each pair only the gateway with the
lower underlay IP initiates (start-of-day and after the peer is lost: DPD every
10 s, `dpd_action = restart`); the other only responds, so the two never race
into duplicate SAs. `converge()` goes by difference against `list-conns` and
`list-sas`: an engine restart loads nothing that is already loaded and never
touches an established SA (adopt-on-restart).

Routing: kernel-libipsec installs a route per outbound policy itself, in
charon's table 220 (`ip rule` priority 220) via the TUN device, and it ignores
`install_routes = no` (checked: the routes appear anyway; its CHILD_SA fails
when it cannot install them). So charon's table 220 stays, and it needs a local
address inside every local traffic selector (else "error installing route with
policy"): the driver puts the network address of each local subnet (never
handed out by Globalnet's IPAM) on the TUN as a /32. Besides charon's routes the
driver routes every remote subnet via the remote tunnel address in the main
table (`proto 150`, `datapath.routes`) as the other drivers do: that route is
what the engine converges and reports, and it keeps a remote's traffic on the
TUN (never out of the underlay's default route in clear) while its SA is being
negotiated and table 220 has no route for it. Without `local_subnets`
local_ts is 0.0.0.0/0, which works only where the gateway already holds an
address inside each of its subnets.

Daemon modes: "managed", the driver starts charon (PID file beside its vici
socket), adopts a running one after a restart, and `remove()` stops it by PID;
"external", a process beside the engine runs charon and the driver only waits
for its vici socket and configures it. That process is
`python -m datapath.ipsec daemon --run-root DIR [--private-run]`: it writes the
same strongswan.conf and execs charon in the foreground, so a pod's cable
container keeps the SAs up across engine restarts (the engine gets the same
DIR as `run_root`).

Endpoint `backend_config` keys: `ike-port` (IKE, UDP 500) and `udp-port` (the
ESP-in-UDP/NAT-T port, 4500; the name WireGuard uses for its one UDP port).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import netaddr
import vici

from datapath import daemons
from datapath import netns as nsutil
from datapath.cable import CableError, PeerState, RemoteGateway, configure_device
from datapath.netlink import IPRoute
from datapath.routes import ConvergeResult, Route, cable_routes

log = logging.getLogger(__name__)

TUNNEL_NET = netaddr.IPNetwork("243.0.0.0/8")
IKE_PORT = 500
NATT_PORT = 4500
# ESP-in-UDP with AES-GCM over IPv6: 40 + UDP 8 + SPI/seq 8 + IV 8 + ICV 16
# + up to 3 padding + 2 trailer = 85; IPv4 needs 20 less. One size for both.
OVERHEAD = 90
# libipsec reads its TUN device into buffers of the MTU it created it with (1400):
# a bigger MTU set later passes longer packets that arrive cut (checked: pings of
# 1404+ bytes are lost at MTU 1410). So never above it.
LIBIPSEC_MTU = 1400
IKE_PORT_KEY = "ike-port"  # our backend_config keys
UDP_PORT_KEY = "udp-port"
CONN_PREFIX = "gn-"
CHILD = "gn"
PSK_ID = "globalnet-cable"
TUN_PREFIX = "ipsec"  # kernel-libipsec names its device ipsec%d; not configurable
LOAD = "nonce openssl kdf kernel-libipsec kernel-netlink socket-default vici"
# Debian's package of each plugin in LOAD that is not in libstrongswan itself.
PLUGIN_PACKAGES = {"openssl": "libstrongswan-standard-plugins",
                   "kernel-libipsec": "libcharon-extra-plugins",
                   "socket-default": "strongswan-libcharon", "vici": "strongswan-swanctl"}
IKE_PROPOSALS = ["aes256gcm16-prfsha256-x25519"]
ESP_PROPOSALS = ["aes256gcm16-x25519"]
DPD_DELAY = "10s"
CHARON_PATHS = (Path("/usr/lib/ipsec/charon"), Path("/usr/libexec/ipsec/charon"),
                Path("/usr/lib/strongswan/charon"))
USERSPACE = "charon (kernel-libipsec)"
IMPLEMENTATIONS = ("auto", "userspace")
DAEMON_MODES = ("managed", "external")
START_TIMEOUT = 10.0
ROUTING_TABLE = 220  # charon's default, named here because remove() cleans its rule


def tunnel_ip(private_ip: str) -> str:
    """243.x.y.z: the IPsec tunnel address of the gateway at underlay IP w.x.y.z."""
    return str(netaddr.IPAddress(int(TUNNEL_NET.network) | (int(netaddr.IPAddress(private_ip))
                                                           & 0xFFFFFF)))


def conn_name(remote_ip: str) -> str:
    return f"{CONN_PREFIX}{remote_ip}"


def find_charon(path: Path | None = None) -> Path:
    """charon's binary (not on PATH in Debian), or a one-line CableError."""
    for candidate in (path,) if path is not None else CHARON_PATHS:
        if candidate is not None and os.access(candidate, os.X_OK):
            return candidate
    where = path or CHARON_PATHS[0]
    raise CableError(f"charon not found at {where}: install strongswan-charon "
                     "strongswan-swanctl libcharon-extra-plugins libstrongswan-standard-plugins")


def check_plugins(charon: Path) -> None:
    """Every plugin in LOAD exists beside charon; charon itself only logs a miss."""
    plugins = charon.parent / "plugins"
    for name in LOAD.split():
        if not (plugins / f"libstrongswan-{name}.so").exists():
            package = PLUGIN_PACKAGES.get(name, "libstrongswan")
            raise CableError(f"strongSwan plugin {name} missing under {plugins} "
                             f"(install {package})")


@dataclass(frozen=True)
class Paths:
    """charon's files for one gateway, as seen from outside its private /run."""

    run_root: Path | None

    @property
    def run_dir(self) -> Path:
        return (self.run_root or Path("/run")) / "ipsec"

    @property
    def conf(self) -> Path:
        return self.run_dir / "strongswan.conf"

    @property
    def vici(self) -> Path:
        return self.run_dir / "charon.vici"

    @property
    def log(self) -> Path:
        return self.run_dir / "charon.log"

    @property
    def out(self) -> Path:
        return self.run_dir / "charon.out"

    @property
    def pid(self) -> Path:
        return self.run_dir / "charon.globalnet.pid"

    @property
    def charon_pid(self) -> Path:  # charon's own, at the fixed /run/charon.pid
        return (self.run_root or Path("/run")) / "charon.pid"

    def all(self) -> tuple[Path, ...]:
        return (self.conf, self.vici, self.log, self.out, self.pid)


def strongswan_conf(paths: Paths, *, ike_port: int = IKE_PORT,
                    natt_port: int = NATT_PORT) -> str:
    """The whole strongswan.conf of one gateway's charon (nothing from /etc)."""
    return f"""# Written by datapath.ipsec: one gateway's charon, configured through vici.
charon {{
  load = {LOAD}
  port = {ike_port}
  port_nat_t = {natt_port}
  # kernel-libipsec installs its policy routes here regardless (see datapath.ipsec).
  routing_table = {ROUTING_TABLE}
  routing_table_prio = {ROUTING_TABLE}
  install_virtual_ip = no
  # A lost peer is noticed within ~15 s of DPD instead of charon's ~165 s default.
  retransmit_tries = 3
  retransmit_timeout = 2.0
  plugins {{
    vici {{
      socket = unix://{paths.vici}
    }}
  }}
  filelog {{
    globalnet {{
      path = {paths.log}
      time_format = %s
      append = no
      flush_line = yes
      default = 1
    }}
  }}
}}
"""


def charon_argv(charon: Path, run_root: Path | None) -> list[str]:
    """charon, with `run_root` as its private /run when there is one."""
    if run_root is None:
        return [str(charon)]
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            'mount --bind "$0" /run && exec "$@"', str(run_root), str(charon)]


def charon_env(paths: Paths) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "STRONGSWAN_CONF": str(paths.conf)}


def write_conf(paths: Paths) -> None:
    paths.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths.conf.write_text(strongswan_conf(paths))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _texts(value: Any) -> list[str]:
    return [_text(v) for v in value or ()]


@dataclass(frozen=True)
class Sa:
    """What `list-sas` says of one connection's newest IKE SA and its child."""

    ike_id: int
    ike_state: str
    established_ago: int
    endpoint: str
    child_id: int
    child_state: str
    rx_bytes: int
    tx_bytes: int


def parse_sas(entries: Sequence[dict[str, Any]]) -> dict[str, Sa]:
    """`list-sas` events (one {name: sa} each) to the newest SA per connection name."""
    out: dict[str, Sa] = {}
    for entry in entries:
        for name, sa in entry.items():
            name = _text(name)
            children = [c for c in (sa.get("child-sas") or {}).values()
                        if _text(c.get("name", "")) == CHILD]
            installed = [c for c in children if _text(c.get("state", "")) == "INSTALLED"]
            child = max(installed or children, key=lambda c: int(_text(c["uniqueid"])),
                        default=None)
            found = Sa(ike_id=int(_text(sa["uniqueid"])), ike_state=_text(sa["state"]),
                       established_ago=int(_text(sa.get("established", -1))),
                       endpoint=f"{_text(sa.get('remote-host', ''))}:"
                                f"{_text(sa.get('remote-port', ''))}",
                       child_id=int(_text(child["uniqueid"])) if child else 0,
                       child_state=_text(child["state"]) if child else "",
                       rx_bytes=int(_text(child.get("bytes-in", 0))) if child else 0,
                       tx_bytes=int(_text(child.get("bytes-out", 0))) if child else 0)
            have = out.get(name)
            if (have is None or (found.ike_state == "ESTABLISHED") > (have.ike_state ==
                                                                     "ESTABLISHED")
                    or (found.ike_state == have.ike_state and found.ike_id > have.ike_id)):
                out[name] = found
    return out


def _port(value: str | None, default: int) -> int | None:
    text = value or str(default)
    if not text.isdigit() or not 0 < int(text) < 65536:
        return None
    return int(text)


class IpsecCable:
    """The IPsec cable of one gateway node (a network namespace, or our own)."""

    driver = "ipsec"

    def __init__(self, local_ip: str, *, psk: str | None, netns: str | None = None,
                 mtu: int = 1500, run_root: Path | None = None, daemon: str = "managed",
                 implementation: str = "auto", local_subnets: Sequence[str] = (),
                 charon: Path | None = None) -> None:
        if implementation not in IMPLEMENTATIONS:
            raise CableError(f"IPsec implementation {implementation!r}: one of "
                             f"{', '.join(IMPLEMENTATIONS)} (kernel xfrm is not supported)")
        if daemon not in DAEMON_MODES:
            raise CableError(f"IPsec daemon {daemon!r}: one of {', '.join(DAEMON_MODES)}")
        self.local_ip, self.netns, self.psk = local_ip, netns, psk or None
        self.mtu = min(mtu - OVERHEAD, LIBIPSEC_MTU)
        self.daemon, self.charon_path = daemon, charon
        self.local_subnets = tuple(str(netaddr.IPNetwork(s).cidr) for s in local_subnets)
        self.paths = Paths(run_root)
        self.routes = cable_routes(netns)
        self._proc: subprocess.Popen[bytes] | None = None
        self._psk_loaded = False
        self._wanted: set[str] = set()  # connection names of the last converge

    # -- the Cable protocol ------------------------------------------------------------

    def implementation(self) -> str:
        return USERSPACE

    def backend_config(self) -> dict[str, str]:
        return {IKE_PORT_KEY: str(IKE_PORT), UDP_PORT_KEY: str(NATT_PORT)}

    def tunnel_ip(self, private_ip: str) -> str:
        return tunnel_ip(private_ip)

    def unusable(self, remote: RemoteGateway) -> str | None:
        if not self.psk:
            return "no IPsec pre-shared key configured on this gateway"
        for key, default in ((IKE_PORT_KEY, IKE_PORT), (UDP_PORT_KEY, NATT_PORT)):
            if _port(remote.config(key), default) is None:
                return f"its {key} {remote.config(key)!r} is not a port"
        return None

    def converge(self, remotes: list[RemoteGateway]) -> ConvergeResult:
        usable = [r for r in remotes
                  if r.private_ip != self.local_ip and self.unusable(r) is None]
        self._ensure_daemon()
        wanted = {conn_name(r.private_ip): r for r in usable}
        with self._vici() as v:
            self._ensure_psk(v)
            loaded = self._loaded_conns(v)
            sas = parse_sas(list(v.list_sas()))
            for name in sorted(set(loaded) - set(wanted)):
                v.unload_conn({"name": name})
                self._terminate(v, name, sas)
                log.info("removed IPsec connection %s", name)
            for name, r in sorted(wanted.items()):
                conn = self._conn(r)
                if loaded.get(name) != self._fingerprint(conn):
                    v.load_conn({name: conn})
                    if name in loaded:  # changed selectors: the old SA cannot carry them
                        self._terminate(v, name, sas)
                        sas.pop(name, None)
                    log.info("IPsec connection %s: %s", name,
                             ", ".join(conn["children"][CHILD]["remote_ts"]))
                if self._initiator(r) and name not in sas:
                    # Async (timeout -1); the reply is a stream, sent only once read.
                    for _ in v.initiate({"child": CHILD, "ike": name, "timeout": -1}):
                        pass
                    log.info("initiating IPsec connection %s", name)
        self._wanted = set(wanted)
        return self.routes.converge({Route(subnet, tunnel_ip(r.private_ip))
                                     for r in usable for subnet in r.subnets})

    def peers(self) -> dict[str, PeerState]:
        if not self._wanted:
            return {}
        try:
            with self._vici() as v:
                sas = parse_sas(list(v.list_sas()))
        except CableError:
            return {}
        now = int(time.time())
        return {name[len(CONN_PREFIX):]: PeerState(
                    latest_handshake=now - sa.established_ago if sa.established_ago >= 0
                    else 0,
                    rx_bytes=sa.rx_bytes, tx_bytes=sa.tx_bytes, endpoint=sa.endpoint,
                    state=f"{sa.ike_state}/{sa.child_state or 'NO_CHILD_SA'}")
                for name, sa in sas.items() if name in self._wanted}

    def sas(self) -> dict[str, Sa]:
        """charon's SAs per remote underlay IP (for diagnosis and tests)."""
        with self._vici() as v:
            return {name[len(CONN_PREFIX):]: sa
                    for name, sa in parse_sas(list(v.list_sas())).items()
                    if name.startswith(CONN_PREFIX)}

    def exists(self) -> bool:
        with self._ipr() as ipr:
            return self._tun_index(ipr) is not None

    def remove(self) -> None:
        """Routes, charon (managed: by PID), its TUN device and run files: all gone.
        An external charon is not ours to stop: its connections are unloaded."""
        self.routes.clear()
        if self.daemon == "external":
            with (contextlib.suppress(CableError, OSError, vici.exception.CommandException),
                  self._vici() as v):
                sas = parse_sas(list(v.list_sas()))
                for name in self._loaded_conns(v):
                    v.unload_conn({"name": name})
                    self._terminate(v, name, sas)
            self._wanted = set()
            return
        self._stop_daemon()
        with self._ipr() as ipr:
            index = self._tun_index(ipr)
            if index is not None:  # a TUN device outlives only a charon killed -9
                ipr.link("del", index=index)
        self._drop_rule()
        self._clean_run_files()
        self._psk_loaded, self._wanted = False, set()

    # -- vici ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _vici(self) -> Iterator[Any]:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        try:
            try:
                sock.connect(str(self.paths.vici))
            except OSError as exc:
                raise CableError(f"charon's vici socket {self.paths.vici}: "
                                 f"{exc.strerror or exc}") from None
            try:
                yield vici.Session(sock)
            except vici.exception.CommandException as exc:
                raise CableError(f"charon: {exc}") from None
        finally:
            sock.close()

    def _answers(self) -> bool:
        try:
            with self._vici() as v:
                v.version()
        except (CableError, OSError, vici.exception.SessionException,
                vici.exception.DeserializationException):
            return False
        return True

    def _ensure_psk(self, v: Any) -> None:
        """Load the key unless this charon has it (a restarted charon has none; vici
        lists key ids, never the keys, so a changed PSK needs a new cable object)."""
        if not self.psk:
            return
        if self._psk_loaded and PSK_ID in _texts(v.get_shared().get("keys")):
            return
        # No owners: the one clusterset key for every peer identity.
        v.load_shared({"id": PSK_ID, "type": "IKE", "data": self.psk, "owners": []})
        self._psk_loaded = True

    def _loaded_conns(self, v: Any) -> dict[str, tuple[object, ...]]:
        out: dict[str, tuple[object, ...]] = {}
        for entry in v.list_conns():
            for name, conn in entry.items():
                name = _text(name)
                if not name.startswith(CONN_PREFIX):
                    continue  # not ours: someone else's connection in a shared charon
                child = (conn.get("children") or {}).get(CHILD) or {}
                out[name] = (tuple(_texts(conn.get("remote_addrs"))),
                             tuple(sorted(_texts(child.get("local-ts")))),
                             tuple(sorted(_texts(child.get("remote-ts")))),
                             _text(child.get("dpd_action", "")))
        return out

    @staticmethod
    def _fingerprint(conn: dict[str, Any]) -> tuple[object, ...]:
        """A loaded connection as `list-conns` shows it ('restart' reads back as
        'start', 'clear' as 'none'), to tell changed from unchanged."""
        child = conn["children"][CHILD]
        return (tuple(conn["remote_addrs"]), tuple(sorted(child["local_ts"])),
                tuple(sorted(child["remote_ts"])),
                {"restart": "start", "clear": "none"}.get(child["dpd_action"],
                                                           child["dpd_action"]))

    def _initiator(self, remote: RemoteGateway) -> bool:
        return (int(ipaddress.ip_address(self.local_ip))
                < int(ipaddress.ip_address(remote.private_ip)))

    def _local_ts(self) -> list[str]:
        if not self.local_subnets:
            return ["0.0.0.0/0"]
        return [*self.local_subnets, f"{tunnel_ip(self.local_ip)}/32"]

    def _conn(self, r: RemoteGateway) -> dict[str, Any]:
        initiator = self._initiator(r)
        conn: dict[str, Any] = {
            "version": "2", "local_addrs": [self.local_ip], "remote_addrs": [r.private_ip],
            "encap": "yes", "mobike": "no", "proposals": IKE_PROPOSALS,
            "dpd_delay": DPD_DELAY, "unique": "replace", "keyingtries": "0",
            "local": {"auth": "psk", "id": self.local_ip},
            "remote": {"auth": "psk", "id": r.private_ip},
            "children": {CHILD: {
                "mode": "tunnel", "esp_proposals": ESP_PROPOSALS,
                "local_ts": self._local_ts(),
                "remote_ts": sorted({*(str(netaddr.IPNetwork(s).cidr) for s in r.subnets),
                                     f"{tunnel_ip(r.private_ip)}/32"}),
                "start_action": "none",
                # The initiator brings a lost peer back; the responder only forgets it.
                "dpd_action": "restart" if initiator else "clear",
                "close_action": "start" if initiator else "none"}}}
        port = _port(r.config(IKE_PORT_KEY), IKE_PORT)
        if port not in (None, IKE_PORT):
            conn["remote_port"] = str(port)
        return conn

    @staticmethod
    def _terminate(v: Any, name: str, sas: dict[str, Sa]) -> None:
        if name in sas:
            with contextlib.suppress(vici.exception.CommandException):
                for _ in v.terminate({"ike": name, "timeout": -1, "force": "yes"}):
                    pass

    # -- the daemon and its device -----------------------------------------------------

    def _ipr(self) -> IPRoute:
        return IPRoute(netns=self.netns) if self.netns else IPRoute()

    def _tun_name(self) -> str | None:
        """The device charon logged creating ("created TUN device: ipsec0")."""
        with contextlib.suppress(OSError):
            found = re.findall(r"created TUN device: (\S+)", self.paths.log.read_text(
                errors="replace"))
            if found:
                return str(found[-1])
        return None

    def _tun_index(self, ipr: IPRoute) -> int | None:
        logged = self._tun_name()
        if logged:
            found = ipr.link_lookup(ifname=logged)
            return int(found[0]) if found else None
        tuns = []
        for link in ipr.get_links():
            name = str(link.get_attr("IFLA_IFNAME"))
            info = link.get_attr("IFLA_LINKINFO")
            kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
            if name.startswith(TUN_PREFIX) and kind == "tun":
                tuns.append(int(link["index"]))
        return tuns[0] if len(tuns) == 1 else None

    def _ensure_daemon(self) -> None:
        if self.daemon == "external":
            if not self._answers():
                raise CableError(f"waiting for charon (no vici socket at {self.paths.vici})")
        else:
            pid = self._daemon_pid()
            if pid is not None and not (self._answers() and self.exists()):
                log.warning("charon (PID %d) does not answer or lost its TUN device: "
                            "restarting it", pid)
                self._stop_daemon()
                pid = None
            if pid is None:
                self._start_daemon()
        with self._ipr() as ipr:
            index = self._tun_index(ipr)
            if index is None:
                raise CableError(f"charon runs but its {TUN_PREFIX}N TUN device is not here "
                                 "(is kernel-libipsec loaded?)")
            configure_device(ipr, index, tunnel_ip(self.local_ip), TUNNEL_NET.prefixlen,
                             self.mtu)
            have = {a.get_attr("IFA_ADDRESS")
                    for a in ipr.get_addr(index=index, family=socket.AF_INET)}
            for subnet in self.local_subnets:
                # kernel-libipsec routes a policy only from a local address inside its
                # local selector: the subnet's network address, never a global IP.
                anchor = str(netaddr.IPNetwork(subnet).network)
                if anchor not in have:
                    ipr.addr("add", index=index, address=anchor, prefixlen=32)

    def _start_daemon(self) -> None:
        charon = find_charon(self.charon_path)
        check_plugins(charon)
        self._stop_stale()
        write_conf(self.paths)
        for stale in (self.paths.vici, self.paths.log):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        with nsutil.entered(self.netns), open(self.paths.out, "wb") as out:
            proc = subprocess.Popen(charon_argv(charon, self.paths.run_root),
                                    env=charon_env(self.paths), stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=out, start_new_session=True)
        self._proc = proc
        self.paths.pid.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            if self.paths.vici.exists() and self._answers() and self.exists():
                log.info("started charon (PID %d, kernel-libipsec on %s)", proc.pid,
                         self._tun_name())
                return
            time.sleep(0.05)
        self._stop_daemon()
        raise CableError(f"charon did not come up (no vici socket at {self.paths.vici}): "
                         f"{self._log_tail()}")

    def _log_tail(self) -> str:
        for path in (self.paths.log, self.paths.out):
            with contextlib.suppress(OSError):
                lines = path.read_text(errors="replace").strip().splitlines()
                if lines:
                    return lines[-1].strip()
        return "no output"

    def _daemon_pid(self) -> int | None:
        """The PID of our charon, if it still runs (its cmdline checked: PIDs recycle)."""
        if self._proc is not None and self._proc.poll() is not None:
            # Reaped here: a dead child's zombie still holds its PID, and charon
            # refuses to start while /run/charon.pid names a PID that exists.
            self._proc = None
        try:
            pid = int(self.paths.pid.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        if b"charon" not in cmdline:
            return None
        if self._proc is not None and self._proc.pid == pid and self._proc.poll() is not None:
            return None
        return None if daemons.process_gone(pid) else pid

    def _stop_stale(self) -> None:
        """A charon of ours whose PID file was lost would hold the sockets: stop it via
        charon's own PID file (checked to be a charon). Only in a private /run: the
        shared /run/charon.pid may be the host's own strongSwan."""
        if self.paths.run_root is None:
            return
        try:
            pid = int(self.paths.charon_pid.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            alive = (b"charon" in Path(f"/proc/{pid}/cmdline").read_bytes()
                     and not daemons.process_gone(pid))
        except OSError:
            alive = False
        if alive:
            self.paths.pid.write_text(f"{pid}\n")
            self._stop_daemon()
        with contextlib.suppress(FileNotFoundError):
            self.paths.charon_pid.unlink()  # names a dead charon now

    def _stop_daemon(self) -> None:
        pid = self._daemon_pid()
        daemons.stop(pid, self._proc)
        if pid is not None:
            log.info("stopped %s (PID %d)", "charon", pid)
        self._proc = None


    def _drop_rule(self) -> None:
        """charon removes its `lookup 220` rule when it stops cleanly; not when killed.
        Only in a gateway namespace of the cable's own: in ours (a hostNetwork pod)
        the rule may be a host strongSwan's."""
        if self.netns is None:
            return
        with self._ipr() as ipr:
            for rule in ipr.get_rules(family=socket.AF_INET):
                if (rule.get_attr("FRA_TABLE") == ROUTING_TABLE
                        and rule.get_attr("FRA_PRIORITY") == ROUTING_TABLE):
                    with contextlib.suppress(Exception):
                        ipr.rule("del", table=ROUTING_TABLE, priority=ROUTING_TABLE)

    def _clean_run_files(self) -> None:
        private = (self.paths.charon_pid,) if self.paths.run_root is not None else ()
        for path in (*self.paths.all(), *private):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        with contextlib.suppress(OSError):
            self.paths.run_dir.rmdir()


def main(argv: Sequence[str] | None = None) -> int:
    """`daemon`: charon in the foreground for an external cable container."""
    parser = argparse.ArgumentParser(prog="python -m datapath.ipsec")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("daemon", help="write strongswan.conf and exec charon (foreground)")
    d.add_argument("--run-root", type=Path, default=Path("/run"),
                   help="the engine's CableOptions.run_root: vici socket in DIR/ipsec/")
    d.add_argument("--private-run", action="store_true",
                   help="give charon DIR as its private /run (several on one host)")
    d.add_argument("--charon", type=Path, default=None, help="charon's binary")
    args = parser.parse_args(argv)
    try:
        charon = find_charon(args.charon)
        check_plugins(charon)
    except CableError as exc:
        print(f"datapath.ipsec: {exc}", file=sys.stderr)
        return 2
    paths = Paths(args.run_root)
    write_conf(paths)
    with contextlib.suppress(FileNotFoundError):
        paths.vici.unlink()  # a socket left by a killed charon
    argv_ = charon_argv(charon, args.run_root if args.private_run else None)
    os.execvpe(argv_[0], argv_, {**os.environ, **charon_env(paths)})
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
