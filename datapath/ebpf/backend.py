"""The eBPF datapath: NAT intent -> pinned BPF maps read by tc programs.

Two programs (bpf/gn_from_tunnel.c at tc ingress, bpf/gn_to_tunnel.c at tc
egress) sit on the gateway's device toward the other clusters - given, or the
device that routes the remote global CIDRs. They translate ingress statelessly
from the ingress/reverse maps and egress through their own connection table;
Python only writes map elements (one at a time, never a flush) and collects
expired connections.

Life cycle:

* The first `apply` of an object (start-up, restart) is a *full sync*: the
  intent is validated whole, the programs of this build are adopted from their
  pins (compiled, loaded and pinned when absent), the maps are read back and
  converged by difference, the filters attached where they are not. A restart
  with pins in place costs zero operations and leaves the attached programs
  and the connection table alone, so established flows keep their translation.
* Later applies are *partial*: `globalnet.intent_validator` checks only the
  change, `sequence_delta` finds the changed mappings, their elements are
  written.
* An unsound intent raises `IntentRejected` before any map write. A failed
  write sets `need_full_sync`; the next apply re-reads the maps.
* Drift (our filter detached, a pin removed, the shim table deleted):
  `check_drift()` reports, `repair()` fixes; `drift.DriftWatcher` polls both.
  A wanted device that does not exist (yet) is no drift and no error: it is
  attached by the first repair after it appears (a tunnel device made, or
  rebuilt, by the gateway engine).
* `cleanup()` detaches our filters and removes our pins and the shim table,
  nothing else.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

import netaddr

from datapath.ebpf import ct, elements, loader, shim, tc
from datapath.ebpf import names as n
from datapath.ebpf import structs as s
from datapath.ebpf.elements import Elements, IngressIndex, Key, Value
from datapath.ebpf.maps import PinnedMap, fdinfo, obj_pin
from globalnet.datapath_api import ApplyResult, IntentRejected
from globalnet.intent import NatIntent, cidrs_changed, diff_intents, sequence_delta
from globalnet.intent_validator import IncrementalValidator

log = logging.getLogger(__name__)


class MapWriteFailed(RuntimeError):
    """The kernel refused a map write; the next apply re-reads the maps."""


class KernelMissing(RuntimeError):
    """The kernel or machine lacks what the eBPF datapath needs (bpffs, tc, BPF)."""


def ensure_bpffs(bpffs: Path) -> None:
    """Mount bpffs at `bpffs` when nothing is mounted there (only the default path
    is mounted for you; any other must be a bpffs already)."""
    if _is_bpffs(bpffs):
        return
    if bpffs != n.DEFAULT_BPFFS:
        raise KernelMissing(f"{bpffs} is not a bpf filesystem (mount -t bpf bpf {bpffs})")
    bpffs.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "bpf", "bpf", str(bpffs)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise KernelMissing(f"cannot mount bpffs at {bpffs}: {proc.stderr.strip()}")


def _is_bpffs(path: Path) -> bool:
    target = str(path.resolve())
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1] == target and fields[2] == "bpf":
            return True
    return False


class EbpfDatapath:
    """Datapath backend over tc BPF programs (see module docstring)."""

    name = "ebpf"

    def __init__(self, *, netns: str | None = None, bpffs: Path | None = None,
                 devices: Sequence[str] | None = None,
                 timeouts: n.Timeouts = n.TIMEOUTS, bpf_dir: Path = n.BPF_DIR) -> None:
        self.netns = netns
        self.bpf_dir = bpf_dir
        self.pins = n.PinLayout(bpffs or n.DEFAULT_BPFFS, n.scope_of(netns))
        self.timeouts = timeouts
        self._fixed_devices = tuple(devices) if devices else None
        self.devices: tuple[str, ...] = ()
        self._absent: set[str] = set()  # wanted devices not (yet) in the namespace
        self._lock = threading.RLock()
        self.intent: NatIntent | None = None
        self.need_full_sync = True
        self._validator = IncrementalValidator()
        self._ingress = IngressIndex()
        self._installed: Elements = {}
        # The port hint (names.PORT_HINT), derived from the installed ingress and
        # reverse keys: how many port keys set each (word, bit), the words as
        # written, and the words a write may have changed.
        self._hint_counts: dict[tuple[int, int], int] = {}
        self._hint_words: dict[int, int] = {}
        self._hint_dirty: set[int] = set()
        # The ingress slots (names.INGRESS_SLOT), derived from the installed
        # every-port ingress keys: their global IPs per slot, the slots as the
        # kernel holds them (claimed ones only), and the slots a write may change.
        self._slot_ips: dict[int, set[str]] = {}
        self._slots: dict[int, elements.SlotEntry] = {}
        self._slot_dirty: set[int] = set()
        self._maps: dict[str, PinnedMap] = {}  # type: ignore[type-arg]
        self._programs: loader.Programs | None = None
        self.last_operations = 0

    # -- the Datapath protocol ---------------------------------------------------

    def apply(self, intent: NatIntent, *, full: bool = False) -> ApplyResult:
        with self._lock:
            if full or self.need_full_sync or self.intent is None:
                return self._full_sync(intent, fresh=full or self.intent is None)
            return self._partial_sync(self.intent, intent)

    def cleanup(self) -> None:
        """Detach our filters, delete our pins and the shim table; nothing else."""
        with self._lock:
            for dev in self._all_devices():
                removed = False
                for direction in ("ingress", "egress"):
                    removed |= tc.detach(self.netns, dev, direction)
                if removed:
                    tc.remove_empty_clsact(self.netns, dev)
            shim.remove(self.netns)
            self.close()
            self.pins.remove()
            self.intent = None
            self._validator.reset()
            self._installed = {}
            self.devices = ()
            self.need_full_sync = True

    def close(self) -> None:
        """Close our fds; pinned state stays as it is."""
        for m in self._maps.values():
            m.close()
        self._maps = {}
        if self._programs is not None:
            self._programs.close()
            self._programs = None

    # -- reading -----------------------------------------------------------------

    def map(self, macro: str) -> PinnedMap:  # type: ignore[type-arg]
        return self._maps[macro]

    def program_fd(self, program: str) -> int:
        """The fd of a loaded program of ours (BPF_PROG_TEST_RUN, inspection)."""
        if self._programs is None:
            raise LookupError("no programs loaded yet: apply an intent first")
        return self._programs.fds[program]

    def read_config(self) -> Elements:
        """The configuration maps' elements as the kernel holds them."""
        out: Elements = {}
        for macro in n.CONFIG_MAPS:
            out[macro] = {elements.key_from_ctypes(macro, k): elements.value_from_ctypes(macro, v)
                          for k, v in self._maps[macro].items()}
        return out

    def collect_connections(self) -> int:
        """Delete expired connection-table entries (the garbage collector)."""
        with self._lock:
            if n.CT not in self._maps:
                return 0
            return ct.collect(self._maps[n.CT], timeouts=self.timeouts)

    # -- drift -------------------------------------------------------------------

    def check_drift(self) -> list[str]:
        """What differs from what we installed (filters, pins, shim); changes nothing."""
        with self._lock:
            if self.intent is None or self._programs is None:
                return []
            problems = [f"pin {p} missing" for p in self._expected_pins() if not p.exists()]
            for dev in self.devices:
                present: bool | None = None
                for prog, direction in n.PROGRAMS.items():
                    want = int(fdinfo(self._programs.fds[prog])["prog_id"])
                    have = tc.attached(self.netns, dev, direction)
                    if have is not None and have.prog_id == want:
                        continue
                    if have is None and present is None:
                        present = tc.exists(self.netns, dev)
                    if have is None and not present:
                        continue  # absent: attached when it appears (or reappears)
                    problems.append(f"{prog} not attached at {dev} {direction}")
            if not shim.installed(self.netns):
                problems.append(f"table ip {shim.TABLE} missing or changed")
            return problems

    def repair(self) -> int:
        """Fix what `check_drift` finds: re-pin from our fds, reattach, reinstall the shim."""
        with self._lock:
            if self.intent is None or self._programs is None:
                return 0
            ops = 0
            for macro, m in self._maps.items():
                path = self.pins.map(macro)
                if not path.exists():
                    obj_pin(m.fd, path)
                    ops += 1
            for prog, fd in self._programs.fds.items():
                path = self.pins.prog(self._programs.build, prog)
                if not path.exists():
                    obj_pin(fd, path)
                    ops += 1
            ops += self._ensure_attached(self.intent)
            ops += int(shim.ensure(self.netns))
            if ops:
                log.info("repaired %d drifted objects of the eBPF datapath in %s", ops,
                         self.netns or "own netns")
            return ops

    # -- internals ---------------------------------------------------------------

    def _expected_pins(self) -> list[Path]:
        assert self._programs is not None
        return ([self.pins.map(m.macro) for m in n.MAPS]
                + [self.pins.prog(self._programs.build, p) for p in n.PROGRAMS])

    def _all_devices(self) -> list[str]:
        if self.devices:
            return list(self.devices)
        out = tc.run(self.netns, ["ip", "-o", "link", "show"], check=False)
        return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()
                if line.count(":") >= 2]

    def _ensure_programs(self) -> int:
        ensure_bpffs(self.pins.bpffs)
        build = loader.build_id(self.pins, self.bpf_dir)
        if self._programs is not None and self._programs.build == build and self._maps:
            return 0
        ops = 0
        programs = loader.adopt(self.pins, build)
        if programs is None:
            programs = loader.compile_and_pin(self.pins, build, bpf_dir=self.bpf_dir)
            ops += 1
        opened: dict[str, PinnedMap] = {}  # type: ignore[type-arg]
        try:
            for m in n.MAPS:
                opened[m.macro] = PinnedMap(self.pins.map(m.macro),
                                            elements.KEY_TYPES[m.macro],
                                            elements.VALUE_TYPES[m.macro])
        except OSError as exc:
            for pm in opened.values():
                pm.close()
            programs.close()
            raise KernelMissing(f"cannot open the pinned maps under {self.pins.root}: {exc}"
                                ) from exc
        self.close()
        self._programs, self._maps = programs, opened
        return ops

    def _discover_devices(self, intent: NatIntent) -> tuple[str, ...]:
        if self._fixed_devices is not None:
            return self._fixed_devices
        found: dict[str, None] = {}
        for cidr in intent.remote_global_cidrs:
            net = netaddr.IPNetwork(cidr)
            dev = tc.route_device(self.netns, str(netaddr.IPAddress(net.first + 1)))
            if dev is not None and dev != "lo":
                found[dev] = None
        return tuple(found)

    def _ensure_attached(self, intent: NatIntent) -> int:
        assert self._programs is not None
        devices = self._discover_devices(intent)
        ops = 0
        for dev in self.devices:
            if dev not in devices:
                for direction in ("ingress", "egress"):
                    ops += int(tc.detach(self.netns, dev, direction))
        for dev in devices:
            if not tc.exists(self.netns, dev):
                # A tunnel device made later (or rebuilt) by the gateway engine:
                # the drift watcher attaches as soon as it is there.
                if dev not in self._absent:
                    log.info("device %s is absent in %s: attaching when it appears", dev,
                             self.netns or "own netns")
                    self._absent.add(dev)
                continue
            if dev in self._absent:
                log.info("device %s appeared in %s: attaching", dev, self.netns or "own netns")
                self._absent.discard(dev)
            ops += self._ensure_mss(dev)
            for prog, direction in n.PROGRAMS.items():
                want = int(fdinfo(self._programs.fds[prog])["prog_id"])
                have = tc.attached(self.netns, dev, direction)
                if have is not None and have.prog_id == want:
                    continue
                tc.attach(self.netns, dev, direction, self.pins.prog(self._programs.build, prog))
                ops += 1
        self.devices = devices
        loader.forget_other_builds(self.pins, self._programs.build)
        return ops

    def _ensure_mss(self, dev: str) -> int:
        """The device's largest TCP MSS in the MSS map (MSS clamping toward it)."""
        ifindex, mtu = tc.link(self.netns, dev)
        key = s.U32(value=ifindex)
        want = max(mtu - n.MSS_OVERHEAD, 536)
        have = self._maps[n.MSS].lookup(key)
        if have is not None and int(have.value) == want:
            return 0
        self._maps[n.MSS].update(key, s.U16(value=want))
        return 1

    def _desired(self, intent: NatIntent) -> Elements:
        want: Elements = {macro: {} for macro in n.CONFIG_MAPS}
        want.update(self._ingress.elements())
        want.update(elements.egress_elements(intent))
        want.update(elements.health_elements(intent))
        want.update(elements.cidr_elements(intent))
        return want

    def _write(self, macro: str, key: Key, value: Value | None) -> int:
        """Write one element; returns the operations (2 when a slot copying the old
        entry had to be released first)."""
        m = self._maps[macro]
        raw_key = elements.key_to_ctypes(macro, key)
        ops = 1
        slot = None
        if macro == n.INGRESS and key[1] == 0:
            slot = elements.slot_index(str(key[0]))
            held = self._slots.get(slot)
            if held is not None and held[0] == key[0] and value != (held[1], held[2]):
                ops += self._set_slot(slot, None)  # never copy what the hash no longer says
        try:
            if value is None:
                m.delete(raw_key)
            else:
                m.update(raw_key, elements.value_to_ctypes(macro, value))
        except OSError as exc:
            self.need_full_sync = True
            raise MapWriteFailed(f"{n.MAP[macro].name}: {exc}") from exc
        installed = self._installed.setdefault(macro, {})
        bit = elements.hint_bit(macro, key)
        if bit is not None and (key in installed) != (value is not None):
            step = 1 if value is not None else -1
            self._hint_counts[bit] = self._hint_counts.get(bit, 0) + step
            self._hint_dirty.add(bit[0])
        if slot is not None:
            ips = self._slot_ips.setdefault(slot, set())
            if value is None:
                ips.discard(str(key[0]))
            else:
                ips.add(str(key[0]))
            self._slot_dirty.add(slot)
        if value is None:
            installed.pop(key, None)
        else:
            installed[key] = value
        return ops

    def _load_hint(self) -> None:
        """Counts from the installed keys, words as the kernel holds them."""
        self._hint_counts = {}
        for macro in (n.INGRESS, n.REVERSE):
            for key in self._installed.get(macro, {}):
                bit = elements.hint_bit(macro, key)
                if bit is not None:
                    self._hint_counts[bit] = self._hint_counts.get(bit, 0) + 1
        self._hint_words = {int(k.value): int(v.value)
                            for k, v in self._maps[n.PORT_HINT].items()}
        self._hint_dirty = set(range(2 * n.HINT_WORDS))

    def _flush_hint(self) -> int:
        """Write the hint words that differ from the counts (after the map writes:
        the hint orders lookups, it never decides a translation)."""
        ops = 0
        for word in sorted(self._hint_dirty):
            want = sum(1 << b for b in range(64) if self._hint_counts.get((word, b), 0) > 0)
            if self._hint_words.get(word) == want:
                continue
            try:
                self._maps[n.PORT_HINT].update(s.U32(value=word), s.U64(value=want))
            except OSError as exc:
                self.need_full_sync = True
                raise MapWriteFailed(f"{n.MAP[n.PORT_HINT].name}: {exc}") from exc
            self._hint_words[word] = want
            ops += 1
        self._hint_dirty = set()
        return ops

    def _load_slots(self) -> None:
        """Addresses per slot from the installed keys, slots as the kernel holds them."""
        self._slot_ips = {}
        for key in self._installed.get(n.INGRESS, {}):
            if key[1] == 0:
                self._slot_ips.setdefault(elements.slot_index(str(key[0])), set()).add(
                    str(key[0]))
        self._slots = {}
        raw = self._maps[n.INGRESS_SLOT].read_array(n.INGRESS_SLOT_SIZE)
        for idx, value in enumerate(raw):
            entry = elements.slot_from_ctypes(value)
            if entry is not None:
                self._slots[idx] = entry
        self._slot_dirty = set(self._slots) | set(self._slot_ips)

    def _set_slot(self, idx: int, want: elements.SlotEntry | None) -> int:
        """Make slot `idx` hold `want` (None: claim nothing): one operation, written so
        that a program reading the slot meanwhile sees either the old or the new entry
        whole - the address claim is released first and set last, each write changing
        either the claim or the copy, never both."""
        have = self._slots.get(idx)
        if have == want:
            return 0
        m = self._maps[n.INGRESS_SLOT]
        key = s.U32(value=idx)
        try:
            if have is not None:
                m.update(key, elements.slot_to_ctypes(have, claimed=False))
                del self._slots[idx]
            if want is not None:
                m.update(key, elements.slot_to_ctypes(want, claimed=False))
                m.update(key, elements.slot_to_ctypes(want))
                self._slots[idx] = want
        except OSError as exc:
            self.need_full_sync = True
            raise MapWriteFailed(f"{n.MAP[n.INGRESS_SLOT].name}: {exc}") from exc
        return 1

    def _flush_slots(self) -> int:
        """Write the slots that differ from the installed every-port ingress keys
        (after the map writes: a slot only ever copies an installed entry)."""
        ops = 0
        installed = self._installed.get(n.INGRESS, {})
        for idx in sorted(self._slot_dirty):
            candidates = {ip: installed[(ip, 0, 0)] for ip in self._slot_ips.get(idx, ())}
            ops += self._set_slot(idx, elements.slot_owner(self._slots.get(idx), candidates))
            if not self._slot_ips.get(idx):
                self._slot_ips.pop(idx, None)
        self._slot_dirty = set()
        return ops

    def _converge_map(self, macro: str, want: dict[Key, Value]) -> int:
        have = self._installed.get(macro, {})
        ops = 0
        for key, value in want.items():
            if have.get(key) != value:
                ops += self._write(macro, key, value)
        for key in [k for k in have if k not in want]:
            ops += self._write(macro, key, None)
        return ops

    def _full_sync(self, intent: NatIntent, *, fresh: bool) -> ApplyResult:
        checked = self._validator.check(intent, full=True)
        if not checked.sound:
            raise IntentRejected(list(checked.errors))
        previous = self.intent
        try:
            ops = self._ensure_programs()
            self._ingress = IngressIndex.build(intent.ingress)
            self._installed = self.read_config()
            self._load_hint()
            self._load_slots()
            desired = self._desired(intent)
            for macro in n.CONFIG_MAPS:
                ops += self._converge_map(macro, desired[macro])
            ops += self._flush_hint()
            ops += self._flush_slots()
            ops += self._ensure_attached(intent)
            ops += int(shim.ensure(self.netns))
        except BaseException:
            self.need_full_sync = True
            raise
        self._validator.commit(checked)
        self.intent = intent
        self.need_full_sync = False
        self.last_operations = ops
        diff = diff_intents(None if fresh else previous, intent)
        return ApplyResult(diff=diff, operations=ops)

    def _partial_sync(self, old: NatIntent, new: NatIntent) -> ApplyResult:
        added, removed = sequence_delta(old.ingress, new.ingress)
        checked = self._validator.check(new, ingress_delta=(added, removed))
        if not checked.sound:
            raise IntentRejected(list(checked.errors))
        touched: dict[tuple[str, Key], None] = {}
        for m in removed:
            touched.update(dict.fromkeys(self._ingress.remove(m)))
        for m in added:
            touched.update(dict.fromkeys(self._ingress.add(m)))
        ops = 0
        try:
            for macro, key in touched:
                want = self._ingress.desired(macro, key)
                if self._installed.get(macro, {}).get(key) != want:
                    ops += self._write(macro, key, want)
            ops += self._flush_hint()
            ops += self._flush_slots()
            new_cidrs = cidrs_changed(old, new)
            if new_cidrs or old.egress != new.egress:
                for macro, want_map in elements.egress_elements(new).items():
                    ops += self._converge_map(macro, want_map)
            if old.health_checks != new.health_checks:
                for macro, want_map in elements.health_elements(new).items():
                    ops += self._converge_map(macro, want_map)
            if new_cidrs:
                for macro, want_map in elements.cidr_elements(new).items():
                    ops += self._converge_map(macro, want_map)
                ops += self._ensure_attached(new)
        except MapWriteFailed:
            self._ingress = IngressIndex.build(old.ingress)
            raise
        self._validator.commit(checked)
        self.intent = new
        self.last_operations = ops
        return ApplyResult(diff=diff_intents(old, new, ingress_delta=(added, removed)),
                           operations=ops)

