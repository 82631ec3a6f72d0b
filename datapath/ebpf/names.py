"""Every name, size and constant the BPF programs and Python share, written once.

The C side (bpf/) never spells a map name, pin path, size, flag or drop code:
`defines()` hands them to clang as `-D` (Cilium's generated-config pattern) -
map names excepted, which the loader substitutes for their `GN_MAP_<X>` tokens
(bcc refuses map calls through macros; see loader.py) - and Python reads the
same values from here. Changing a value here changes
both sides; the config hash of the loaded programs changes with it, so a
restarted agent notices and reloads.

Pin layout under one folder of ours (`PinLayout`):

    <bpffs>/globalnet/<scope>/maps/<map name>          every map
    <bpffs>/globalnet/<scope>/progs/<hash>/<program>   the programs of one build

`scope` is the network namespace's name (`host` for the agent's own), so
several gateways on one machine (the lab, the tests) never share state.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

BPF_DIR = Path(__file__).resolve().parents[2] / "bpf"
"""The C sources: one file per attach point, helpers in lib/."""

DEFAULT_BPFFS = Path("/sys/fs/bpf")
PIN_FOLDER = "globalnet"

# Programs: entry point name = file name (bpf/<name>.c), and where it attaches.
FROM_TUNNEL = "gn_from_tunnel"
TO_TUNNEL = "gn_to_tunnel"
PROGRAMS = {FROM_TUNNEL: "ingress", TO_TUNNEL: "egress"}

# tc: our filters sit at this preference with handle 1 on clsact ingress/egress;
# other filters on the device are never touched.
TC_PREF = 0xC1A
TC_HANDLE = 1


@dataclass(frozen=True)
class MapSpec:
    name: str   # kernel map name (at most 15 characters) and pin file name
    macro: str  # the C macro naming it: GN_MAP_<X>, with GN_PIN_<X> its pin path
    size: int   # max entries
    size_macro: str


# Sizes: ingress covers 50,000 mappings with exported ports (several keys each).
INGRESS_SIZE = 262_144
CT_SIZE = 262_144
HINT_WORDS = 1024  # 64-bit words of the port hint per map: a bit per low 16 bits
INGRESS_SLOT_SIZE = 1 << 16  # one slot per low 16 bits of a global IP (a power of two)
MAPS: tuple[MapSpec, ...] = (
    MapSpec("gn_ingress", "INGRESS", INGRESS_SIZE, "GN_INGRESS_SIZE"),
    MapSpec("gn_reverse", "REVERSE", INGRESS_SIZE, "GN_INGRESS_SIZE"),
    MapSpec("gn_cidrs", "CIDRS", 1024, "GN_CIDRS_SIZE"),
    MapSpec("gn_health", "HEALTH", 256, "GN_HEALTH_SIZE"),
    MapSpec("gn_egress_pods", "EGRESS_PODS", 65_536, "GN_EGRESS_PODS_SIZE"),
    MapSpec("gn_egress_cidrs", "EGRESS_CIDRS", 1024, "GN_CIDRS_SIZE"),
    MapSpec("gn_ct", "CT", CT_SIZE, "GN_CT_SIZE"),
    MapSpec("gn_stats", "STATS", 32, "GN_STATS_SIZE"),
    MapSpec("gn_mss", "MSS", 64, "GN_MSS_SIZE"),
    MapSpec("gn_port_hint", "PORT_HINT", 2 * HINT_WORDS, "GN_PORT_HINT_SIZE"),
    MapSpec("gn_ingress_slot", "INGRESS_SLOT", INGRESS_SLOT_SIZE, "GN_INGRESS_SLOT_SIZE"),
)
MAP = {m.macro: m for m in MAPS}
INGRESS, REVERSE, CIDRS, HEALTH = "INGRESS", "REVERSE", "CIDRS", "HEALTH"
EGRESS_PODS, EGRESS_CIDRS, CT, STATS = "EGRESS_PODS", "EGRESS_CIDRS", "CT", "STATS"
MSS = "MSS"
"""Largest TCP MSS per attached device (ifindex -> MTU - MSS_OVERHEAD)."""
PORT_HINT = "PORT_HINT"
"""Which addresses may have exported-port entries (bpf/lib/nat.h, gn_nat__maybe_ports):
an array of HINT_WORDS 64-bit words for the ingress map, then as many for the reverse
map; bit (low 16 bits of the address, host order) is set while any port entry of such
an address is installed. Derived from the ingress and reverse maps by the backend."""
INGRESS_SLOT = "INGRESS_SLOT"
"""Every-port ingress entries in a flat array (bpf/lib/nat.h, gn_nat__every_port): slot
(low 16 bits of the global IP, host order) -> a copy of the entry with its global IP,
at most one address per slot; GN_MAP_INGRESS stays authoritative. Derived from the
ingress map by the backend, like the port hint."""
MSS_OVERHEAD = 40  # IPv4 and TCP headers without options
CONFIG_MAPS = (INGRESS, REVERSE, CIDRS, HEALTH, EGRESS_PODS, EGRESS_CIDRS)
"""The maps Python converges to the intent (the others are the programs' state)."""


class Drop(enum.IntEnum):
    """Why a program dropped a packet: the one table of drop codes (`GN_DROP_*`),
    an index into the stats map. Never renumber; retire a code as UNUSEDn."""

    UNMAPPED = 1      # to a global IP of ours with no mapping, port or connection
    FRAGMENT = 2      # a later fragment that only a connection could translate
    NO_PORT = 3       # no free global port in the group for a new connection
    NO_ADDRESS = 4    # an egress group without addresses
    REWRITE = 5       # a checksum or store helper failed
    ICMP_ERROR = 6    # an ICMP error for our global IP quoting nothing we know
    PROTO = 7         # ICMP other than echo and errors, from a translated pod
    NOT_EXPORTED = 8  # a new connection to a headless target on a port it does not export


class CidrKind(enum.IntEnum):
    OURS = 1
    REMOTE = 2


class CtDir(enum.IntEnum):
    EGRESS = 0
    REPLY = 1


NAT_F_ADMIT_PORTS = 0x01
"""gn_nat_value.flags: the every-port entry of a headless target that admits new
connections on its exported ports only."""

CT_F_CLOSING = 0x01
"""gn_ct_value.flags: a FIN or RST was seen; the short timeout applies."""

MARK_INGRESS = 0x0010_0000
"""skb mark bit gn_from_tunnel sets on translated ingress packets. The mark shim
(shim.py) clears it, together with kube-proxy's masquerade bit 0x4000, before
kube-proxy's KUBE-POSTROUTING decides on masquerading."""
KUBE_MASQ_MARK = 0x4000

PORT_MIN, PORT_MAX, PORT_TRIES = 1024, 65535, 16
"""Egress port allocation: the pod's own port when free and >= PORT_MIN, else random
ports in [PORT_MIN, PORT_MAX], PORT_TRIES attempts before GN_DROP_NO_PORT."""


@dataclass(frozen=True)
class Timeouts:
    """Idle seconds after which the garbage collector removes a connection."""

    tcp: float = 6 * 3600.0
    tcp_closing: float = 10.0
    udp: float = 60.0
    icmp: float = 30.0
    other: float = 60.0


TIMEOUTS = Timeouts()


@dataclass(frozen=True)
class PinLayout:
    """Where one gateway's maps and programs are pinned (see module docstring)."""

    bpffs: Path
    scope: str

    @property
    def root(self) -> Path:
        return self.bpffs / PIN_FOLDER / self.scope

    def map(self, macro: str) -> Path:
        return self.root / "maps" / MAP[macro].name

    @property
    def progs(self) -> Path:
        return self.root / "progs"

    def prog(self, build: str, program: str) -> Path:
        return self.progs / build / program

    def remove(self) -> None:
        """Unpin everything of this scope, and our top folder if no other scope uses it."""
        import contextlib
        import shutil

        if self.root.exists():
            shutil.rmtree(self.root)
        with contextlib.suppress(OSError):
            self.root.parent.rmdir()


def scope_of(netns: str | None) -> str:
    return netns or "host"


def defines(pins: PinLayout) -> list[str]:
    """The `-D` flags of every compile: the whole shared configuration, sorted so
    that the build hash is stable."""
    values: dict[str, str] = {"GN_CONFIG": "1"}
    for m in MAPS:
        values[f"GN_PIN_{m.macro}"] = f'"{pins.map(m.macro)}"'
        values[m.size_macro] = str(m.size)
    for d in Drop:
        values[f"GN_DROP_{d.name}"] = str(int(d))
    for k in CidrKind:
        values[f"GN_CIDR_{k.name}"] = str(int(k))
    for c in CtDir:
        values[f"GN_CT_{c.name}"] = str(int(c))
    values.update({
        "GN_CT_F_CLOSING": str(CT_F_CLOSING),
        "GN_NAT_F_ADMIT_PORTS": str(NAT_F_ADMIT_PORTS),
        "GN_MARK_INGRESS": f"0x{MARK_INGRESS:x}",
        "GN_PORT_MIN": str(PORT_MIN),
        "GN_PORT_MAX": str(PORT_MAX),
        "GN_PORT_TRIES": str(PORT_TRIES),
        "GN_HINT_WORDS": str(HINT_WORDS),
    })
    return [f"-D{k}={v}" for k, v in sorted(values.items())]
