"""The real programs of bpf/, loaded once per test module with private pins.

`LoadedProgs` compiles bpf/ through the backend's own loader into a private
bpffs scope, opens every map, and offers per-test `reset()` (deletes every
element it finds, one by one) so each BPF_PROG_TEST_RUN case starts from empty
maps. Address conventions of the cases:
  our global CIDR 242.0.0.0/16, remote 242.1.0.0/16, local pods 10.244.0.0/16
  242.0.10.1 <-> 10.96.0.10 (tcp/80, udp/53 only), 242.0.3.30 <-> 10.244.1.30 (all ports)
  cluster egress 242.0.0.1-4, pod-selector group 242.0.2.1 for 10.244.1.12
  242.0.255.254 health check; remote client 242.1.0.7
"""

from __future__ import annotations

import contextlib
import ctypes
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from datapath.ebpf import elements, loader
from datapath.ebpf import names as n
from datapath.ebpf import structs as s
from datapath.ebpf.maps import PinnedMap
from tests.netns.conformance import ebpf_bpffs


@dataclass
class LoadedProgs:
    pins: n.PinLayout
    programs: loader.Programs
    maps: dict[str, PinnedMap]  # type: ignore[type-arg]

    def fd(self, prog: str) -> int:
        return self.programs.fds[prog]

    def put(self, macro: str, key: tuple[object, ...], value: tuple[object, ...]) -> None:
        self.maps[macro].update(elements.key_to_ctypes(macro, key),
                                elements.value_to_ctypes(macro, value))

    def get(self, macro: str, raw_key: ctypes.Structure) -> ctypes.Structure | None:
        return self.maps[macro].lookup(raw_key)

    def count(self, macro: str) -> int:
        return sum(1 for _ in self.maps[macro].walk_keys())

    def reset(self) -> None:
        for macro, m in self.maps.items():
            if macro in (n.STATS, n.PORT_HINT):  # arrays: zeroed, never deleted
                for k in list(m.walk_keys()):
                    m.update(k, elements.VALUE_TYPES[macro]())
                continue
            if macro == n.INGRESS_SLOT:  # 65,536 slots: zero the used ones only
                for idx, raw in enumerate(m.read_array(n.INGRESS_SLOT_SIZE)):
                    if bytes(raw) != bytes(len(bytes(raw))):
                        m.update(s.U32(value=idx), s.NatSlot())
                continue
            for k in list(m.walk_keys()):
                m.delete(k)


@contextlib.contextmanager
def loaded() -> Iterator[LoadedProgs]:
    pins = n.PinLayout(ebpf_bpffs(), f"unit-{uuid.uuid4().hex[:6]}")
    programs = loader.compile_and_pin(pins, loader.build_id(pins))
    maps = {m.macro: PinnedMap(pins.map(m.macro), elements.KEY_TYPES[m.macro],
                               elements.VALUE_TYPES[m.macro]) for m in n.MAPS}
    try:
        yield LoadedProgs(pins, programs, maps)
    finally:
        for m in maps.values():
            m.close()
        programs.close()
        pins.remove()
