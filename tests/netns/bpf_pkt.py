"""Packet building and checking for the BPF_PROG_TEST_RUN tests, plus the runner.

Packets are built byte by byte with correct checksums (RFC 791/793/768/792),
so a test's expectations never come from the code under test; `verify()`
recomputes every checksum of a packet the program returned. `TestRun` runs a
loaded tc program once on one frame through libbpf's bpf_prog_test_run_opts.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from dataclasses import dataclass

ETH = bytes.fromhex("020000000002" "020000000001") + struct.pack("!H", 0x0800)
TCP, UDP, ICMP = 6, 17, 1
SYN, ACK, FIN = 0x02, 0x10, 0x01


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = int(sum(struct.unpack(f"!{len(data) // 2}H", data)))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _pseudo(src: str, dst: str, proto: int, length: int) -> bytes:
    return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, proto, length)


def ipv4(src: str, dst: str, proto: int, payload: bytes, *, frag: int = 0, ident: int = 1,
         ttl: int = 64) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, frag, ttl, proto, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    return hdr + payload


def tcp(src: str, dst: str, sport: int, dport: int, *, flags: int = SYN,
        payload: bytes = b"", options: bytes = b"") -> bytes:
    assert len(options) % 4 == 0
    doff = 5 + len(options) // 4
    seg = struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, doff << 4, flags, 65535, 0, 0)
    seg += options + payload
    c = csum(_pseudo(src, dst, TCP, len(seg)) + seg)
    return ipv4(src, dst, TCP, seg[:16] + struct.pack("!H", c) + seg[18:])


def mss_option(mss: int) -> bytes:
    """NOP, NOP, MSS (kind 2, length 4), SACK permitted: 8 bytes of SYN options."""
    return b"\x01\x01" + struct.pack("!BBH", 2, 4, mss) + b"\x04\x02"  # + SACK permitted


def mss_of(ip: bytes) -> int:
    ihl = (ip[0] & 0xF) * 4
    opts = ip[ihl + 20:ihl + (ip[ihl + 12] >> 4) * 4]
    i = 0
    while i < len(opts):
        if opts[i] == 1:
            i += 1
            continue
        if opts[i] == 2:
            return int(struct.unpack("!H", opts[i + 2:i + 4])[0])
        i += opts[i + 1]
    raise LookupError("no MSS option")


def udp(src: str, dst: str, sport: int, dport: int, payload: bytes = b"hello") -> bytes:
    dgram = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    c = csum(_pseudo(src, dst, UDP, len(dgram)) + dgram) or 0xFFFF
    return ipv4(src, dst, UDP, dgram[:6] + struct.pack("!H", c) + dgram[8:])


def icmp(src: str, dst: str, type_: int, code: int, rest: bytes, body: bytes) -> bytes:
    msg = struct.pack("!BBH", type_, code, 0) + rest + body
    c = csum(msg)
    return ipv4(src, dst, ICMP, msg[:2] + struct.pack("!H", c) + msg[4:])


def echo(src: str, dst: str, ident: int, *, reply: bool = False, seq: int = 1) -> bytes:
    return icmp(src, dst, 0 if reply else 8, 0, struct.pack("!HH", ident, seq), b"ping" * 4)


def icmp_error(src: str, dst: str, quoted: bytes, *, type_: int = 3, code: int = 4,
               mtu: int = 1400) -> bytes:
    """An ICMP error (default: fragmentation needed) quoting IP header + 8 bytes, or more."""
    return icmp(src, dst, type_, code, struct.pack("!HH", 0, mtu), quoted)


@dataclass(frozen=True)
class Parsed:
    src: str
    dst: str
    proto: int
    sport: int
    dport: int
    ihl: int
    payload: bytes  # the L4 bytes


def parse(ip: bytes) -> Parsed:
    ihl = (ip[0] & 0xF) * 4
    l4 = ip[ihl:]
    if ip[9] == ICMP:
        sport = dport = struct.unpack("!H", l4[4:6])[0]
    else:
        sport, dport = struct.unpack("!HH", l4[:4])
    return Parsed(socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20]), ip[9], sport, dport,
                  ihl, l4)


def verify(ip: bytes, *, quoted_l4: bool = True) -> None:
    """Assert every checksum of an IPv4 packet is right (quoted headers of ICMP
    errors included)."""
    ihl = (ip[0] & 0xF) * 4
    assert csum(ip[:ihl]) == 0, "IP header checksum"
    src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
    l4, proto = ip[ihl:struct.unpack("!H", ip[2:4])[0]], ip[9]
    if proto in (TCP, UDP):
        if proto == UDP and struct.unpack("!H", l4[6:8])[0] == 0:
            return
        assert csum(_pseudo(src, dst, proto, len(l4)) + l4) == 0, f"L4 checksum ({proto})"
    elif proto == ICMP:
        assert csum(l4) == 0, "ICMP checksum"
        if l4[0] in (3, 11, 12):
            inner = l4[8:]
            inner_ihl = (inner[0] & 0xF) * 4
            assert csum(inner[:inner_ihl]) == 0, "quoted IP header checksum"
            if quoted_l4 and inner[9] in (TCP, UDP):
                isrc, idst = socket.inet_ntoa(inner[12:16]), socket.inet_ntoa(inner[16:20])
                seg = inner[inner_ihl:struct.unpack("!H", inner[2:4])[0]]
                if not (inner[9] == UDP and struct.unpack("!H", seg[6:8])[0] == 0):
                    assert csum(_pseudo(isrc, idst, inner[9], len(seg)) + seg) == 0, \
                        "quoted L4 checksum"


class _Opts(ctypes.Structure):
    """struct bpf_test_run_opts of libbpf 1.1 (Debian 12's libbpf1)."""

    _fields_ = [("sz", ctypes.c_size_t), ("data_in", ctypes.c_void_p),
                ("data_out", ctypes.c_void_p), ("data_size_in", ctypes.c_uint32),
                ("data_size_out", ctypes.c_uint32), ("ctx_in", ctypes.c_void_p),
                ("ctx_out", ctypes.c_void_p), ("ctx_size_in", ctypes.c_uint32),
                ("ctx_size_out", ctypes.c_uint32), ("retval", ctypes.c_uint32),
                ("repeat", ctypes.c_int), ("duration", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("cpu", ctypes.c_uint32),
                ("batch_size", ctypes.c_uint32)]


_lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
_lib.bpf_prog_test_run_opts.argtypes = [ctypes.c_int, ctypes.POINTER(_Opts)]
_lib.bpf_prog_test_run_opts.restype = ctypes.c_int

TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT = 0, 2, 7


@dataclass(frozen=True)
class Result:
    verdict: int
    frame: bytes

    @property
    def ip(self) -> bytes:
        return self.frame[14:]


def run_prog(prog_fd: int, ip_packet: bytes) -> Result:
    frame = ETH + ip_packet
    data_in = ctypes.create_string_buffer(frame, len(frame))
    data_out = ctypes.create_string_buffer(len(frame) + 256)
    opts = _Opts(sz=ctypes.sizeof(_Opts), data_in=ctypes.cast(data_in, ctypes.c_void_p),
                 data_out=ctypes.cast(data_out, ctypes.c_void_p), data_size_in=len(frame),
                 data_size_out=len(frame) + 256, repeat=1)
    ret = _lib.bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts))
    if ret < 0:
        raise OSError(-ret, "bpf_prog_test_run_opts")
    return Result(int(opts.retval), data_out.raw[:opts.data_size_out])
