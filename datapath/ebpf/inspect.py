"""Read back what the eBPF datapath holds, for `gnctl show nat --datapath ebpf`
and for tests: mappings with their counters, and a canonical text snapshot.

Reads only pins (and `tc` for the snapshot): works from any process, changes
nothing, needs no compiler. Without a bpffs given, the pins are looked for in
/sys/fs/bpf, then in every other bpffs mounted (a lab's private one, say), then in
the bpffs of an agent running inside the named network namespace in a mount
namespace of its own (an agent pod on a lab node).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from datapath.ebpf import elements, shim, tc
from datapath.ebpf import names as n
from datapath.ebpf import structs as s
from datapath.ebpf.maps import PinnedMap


@dataclass(frozen=True)
class MappingRow:
    """One ingress mapping element with its counters (forward and reverse)."""

    global_ip: str
    local: str
    ports: str            # "all" or "tcp/80"
    packets_in: int
    bytes_in: int
    packets_out: int
    bytes_out: int


def _open(pins: n.PinLayout, macro: str) -> PinnedMap:  # type: ignore[type-arg]
    return PinnedMap(pins.map(macro), elements.KEY_TYPES[macro], elements.VALUE_TYPES[macro])


def bpf_mounts() -> list[Path]:
    """Every bpffs mount point this process sees, in mount order."""
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "bpf":
            out.append(Path(fields[1].replace("\\040", " ")))
    return out


def pin_layout(netns: str | None, bpffs: Path | None) -> n.PinLayout:
    """Where the pins of `netns` are: under `bpffs` when given, else the first
    mounted bpffs holding them (/sys/fs/bpf first)."""
    scope = n.scope_of(netns)
    if bpffs is not None:
        return n.PinLayout(bpffs, scope)
    for candidate in [n.DEFAULT_BPFFS, *bpf_mounts()]:
        pins = n.PinLayout(candidate, scope)
        if pins.root.is_dir():
            return pins
    if netns is not None:
        found = _agent_pins(netns)
        if found is not None:
            return found
    return n.PinLayout(n.DEFAULT_BPFFS, scope)


def _agent_pins(netns: str) -> n.PinLayout | None:
    """The pins of an agent running *inside* network namespace `netns` with a mount
    namespace of its own (a pod on a node: it pins as "host" under its /sys/fs/bpf),
    reached through /proc/PID/root of a process in that network namespace."""
    from datapath.netns import NETNS_DIR

    try:
        wanted = (NETNS_DIR / netns).stat().st_ino
    except OSError:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if (proc / "ns" / "net").stat().st_ino != wanted:
                continue
            pins = n.PinLayout(proc / "root" / n.DEFAULT_BPFFS.relative_to("/"),
                               n.scope_of(None))
            if pins.root.is_dir():
                return pins
    return None


def read_mappings(*, netns: str | None = None, bpffs: Path | None = None) -> list[MappingRow]:
    pins = pin_layout(netns, bpffs)
    fwd, rev = _open(pins, n.INGRESS), _open(pins, n.REVERSE)
    try:
        reverse = {(s.ip_of(k.addr), k.proto, k.port): v for k, v in rev.items()}
        slotted = _slot_counters(pins)
        rows = []
        for k, v in fwd.items():
            target = s.ip_of(v.addr)
            back = reverse.get((target, k.proto, k.port))
            ports = "all" if k.proto == 0 else (
                f"{elements.PROTO_NAME.get(k.proto, str(k.proto))}/{s.port_of(k.port)}")
            extra = slotted.get((s.ip_of(k.addr), target), (0, 0)) if k.proto == 0 else (0, 0)
            rows.append(MappingRow(s.ip_of(k.addr), target, ports,
                                   int(v.packets) + extra[0], int(v.bytes) + extra[1],
                                   int(back.packets) if back else 0,
                                   int(back.bytes) if back else 0))
    finally:
        fwd.close()
        rev.close()
    return sorted(rows, key=lambda r: (r.global_ip, r.ports))


def _slot_counters(pins: n.PinLayout) -> dict[tuple[str, str], tuple[int, int]]:
    """(global IP, target) -> (packets, bytes) counted in the ingress slots (the
    every-port entries the programs translate from their slot, names.INGRESS_SLOT)."""
    try:
        slots = _open(pins, n.INGRESS_SLOT)
    except OSError:
        return {}
    try:
        out = {}
        for raw in slots.read_array(n.INGRESS_SLOT_SIZE):
            entry = elements.slot_from_ctypes(raw)
            if entry is not None:
                out[(entry[0], entry[1])] = (int(raw.value.packets), int(raw.value.bytes))
        return out
    finally:
        slots.close()


def read_drops(*, netns: str | None = None, bpffs: Path | None = None) -> dict[str, int]:
    pins = pin_layout(netns, bpffs)
    stats = _open(pins, n.STATS)
    try:
        out = {}
        for d in n.Drop:
            v = stats.lookup(s.U32(value=int(d)))
            out[d.name.lower()] = int(v.value) if v is not None else 0
        return out
    finally:
        stats.close()


def snapshot(*, netns: str | None = None, bpffs: Path | None = None) -> str:
    """Filters, pins, configuration map elements (no counters) and the shim table,
    as sorted text: equal snapshots mean equal datapath state."""
    pins = pin_layout(netns, bpffs)
    lines: list[str] = []
    out = tc.run(netns, ["ip", "-o", "link", "show"], check=False)
    for line in out.splitlines():
        if line.count(":") < 2:
            continue
        dev = line.split(":")[1].strip().split("@")[0]
        for direction in ("ingress", "egress"):
            a = tc.attached(netns, dev, direction)
            if a is not None:
                lines.append(f"filter {dev} {direction} {a.name} id={a.prog_id}")
    if pins.root.exists():
        lines += [f"pin {p.relative_to(pins.root)}" for p in sorted(pins.root.rglob("*"))
                  if not p.is_dir()]
        for macro in n.CONFIG_MAPS:
            with contextlib.suppress(OSError):
                m = _open(pins, macro)
                try:
                    lines += sorted(
                        f"{n.MAP[macro].name} {elements.key_from_ctypes(macro, k)} -> "
                        f"{elements.value_from_ctypes(macro, v)}" for k, v in m.items())
                finally:
                    m.close()
    lines += [line.strip() for line in shim.listing(netns).splitlines() if line.strip()]
    return "\n".join(lines) if lines else "<nothing>"
