"""ctypes mirrors of the structs in bpf/lib/*.h, and their conversions.

Byte order is as in the C declarations: addresses and ports in network order
(written here with `_be32`/`_be16` from dotted text and numbers), everything else
in host order. No struct has implicit padding; explicit `pad` fields are zero.
`LAYOUTS` lists every mirrored struct with its C name, so the layout tests
(tests/unit/test_ebpf_structs.py, and tests/netns/test_bpf_layout.py, which has
clang check the same offsets against the C headers) cover each one.
"""

from __future__ import annotations

import ctypes
import socket
import struct


def be32(ip: str) -> int:
    """An IPv4 address as the __be32 the kernel stores (host-order int of its bytes)."""
    return int(struct.unpack("=I", socket.inet_aton(ip))[0])


def ip_of(value: int) -> str:
    return socket.inet_ntoa(struct.pack("=I", value))


def be16(port: int) -> int:
    return int(struct.unpack("=H", struct.pack("!H", port))[0])


def port_of(value: int) -> int:
    return int(struct.unpack("!H", struct.pack("=H", value))[0])


class NatKey(ctypes.Structure):
    """struct gn_nat_key (lib/nat.h), 8 bytes."""

    _fields_ = [("addr", ctypes.c_uint32), ("proto", ctypes.c_uint8),
                ("pad", ctypes.c_uint8), ("port", ctypes.c_uint16)]


class NatValue(ctypes.Structure):
    """struct gn_nat_value (lib/nat.h), 24 bytes."""

    _fields_ = [("addr", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64)]


class NatSlot(ctypes.Structure):
    """struct gn_nat_slot (lib/nat.h), 32 bytes: global network order (0: empty),
    pad 0, then a gn_nat_value."""

    _fields_ = [("global_ip", ctypes.c_uint32), ("pad", ctypes.c_uint32),
                ("value", NatValue)]


class CidrKey(ctypes.Structure):
    """struct gn_cidr_key (lib/nat.h), 8 bytes: prefixlen host order, addr network."""

    _fields_ = [("prefixlen", ctypes.c_uint32), ("addr", ctypes.c_uint32)]


class CidrValue(ctypes.Structure):
    """struct gn_cidr_value (lib/nat.h), 4 bytes."""

    _fields_ = [("kind", ctypes.c_uint32)]


class EgressValue(ctypes.Structure):
    """struct gn_egress_value (lib/egress.h), 24 bytes."""

    _fields_ = [("first", ctypes.c_uint32), ("count", ctypes.c_uint32),
                ("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64)]


class CtKey(ctypes.Structure):
    """struct gn_ct_key (lib/ct.h), 16 bytes."""

    _fields_ = [("saddr", ctypes.c_uint32), ("daddr", ctypes.c_uint32),
                ("sport", ctypes.c_uint16), ("dport", ctypes.c_uint16),
                ("proto", ctypes.c_uint8), ("dir", ctypes.c_uint8), ("pad", ctypes.c_uint16)]


class CtValue(ctypes.Structure):
    """struct gn_ct_value (lib/ct.h), 32 bytes."""

    _fields_ = [("addr", ctypes.c_uint32), ("port", ctypes.c_uint16),
                ("flags", ctypes.c_uint8), ("pad", ctypes.c_uint8),
                ("last_seen", ctypes.c_uint64), ("packets", ctypes.c_uint64),
                ("bytes", ctypes.c_uint64)]


class U32(ctypes.Structure):
    """A bare __u32 / __be32 key or value."""

    _fields_ = [("value", ctypes.c_uint32)]


class U16(ctypes.Structure):
    """A bare __u16 value (host order: the largest MSS of a device)."""

    _fields_ = [("value", ctypes.c_uint16)]


class U64(ctypes.Structure):
    """A bare __u64 value (the stats counters)."""

    _fields_ = [("value", ctypes.c_uint64)]


LAYOUTS: dict[str, tuple[type[ctypes.Structure], int]] = {
    "gn_nat_key": (NatKey, 8),
    "gn_nat_value": (NatValue, 24),
    "gn_nat_slot": (NatSlot, 32),
    "gn_cidr_key": (CidrKey, 8),
    "gn_cidr_value": (CidrValue, 4),
    "gn_egress_value": (EgressValue, 24),
    "gn_ct_key": (CtKey, 16),
    "gn_ct_value": (CtValue, 32),
}
"""C struct name -> (mirror, size in bytes)."""
