"""Batched UDP I/O: recvmmsg(2) and sendmmsg(2) through ctypes (Linux, glibc).

Why: per datagram, ``socket.recvfrom`` + ``socket.sendto`` cost two system calls,
two address conversions and a 2-tuple; at the query rates a C server reaches, that
overhead decides whether we get to 0.8x NSD. Measured on this machine kind, same
runs, dnsperf -q 20: a recvfrom/sendto loop reached 0.58-0.91x NSD's queries/s at
15 us of CPU per query, these batches 0.79-1.03x at 10 us (NSD: 9 us). NSD
batches the same way. ``bench/dns.py`` prints the current (batched) figures.

Layout: ``batch`` receive slots of ``recv_size`` bytes, one sockaddr buffer per
slot. Replies are sent without copying: reply j is two iovecs, the 2-byte ID read
in place from receive slot j and the rest of the reply straight from the bytes
object the fast path's entry holds (its buffer address is computed once, when the
answer is cached). Reply j always goes to the sender of receive slot j; a batch
with dropped datagrams is sent as several runs. The buffers are exposed as
ctypes arrays and memoryviews so the fast path's loop (``fastpath.py``) can index
them without method calls; offsets come from the platform's struct layout.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import socket
from typing import Final

MSG_DONTWAIT: Final = getattr(socket, "MSG_DONTWAIT", 0x40)
_SOCKADDR_SIZE: Final = 128  # sizeof(struct sockaddr_storage)


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.c_void_p),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", _MsgHdr), ("len", ctypes.c_uint)]


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    except OSError:
        return None
    if not (hasattr(libc, "recvmmsg") and hasattr(libc, "sendmmsg")):
        return None
    libc.recvmmsg.argtypes = [
        ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p,
    ]
    libc.recvmmsg.restype = ctypes.c_int
    libc.sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    libc.sendmmsg.restype = ctypes.c_int
    return libc


_LIBC = _libc()


def available() -> bool:
    """Whether this platform has recvmmsg/sendmmsg (and a layout we know: LP64)."""
    return (
        _LIBC is not None
        and ctypes.sizeof(ctypes.c_void_p) == ctypes.sizeof(ctypes.c_size_t) == 8
        and ctypes.sizeof(_MMsgHdr) % 8 == 0
    )


def buffer_address(data: bytes) -> int:
    """Address of the bytes object's own buffer (no copy): for zero-copy sends.

    Valid while ``data`` is alive; callers keep a reference until the send is done.
    """
    address = ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value
    assert address is not None
    return address


class MmsgSocket:
    """recvmmsg/sendmmsg over one bound, non-blocking UDP socket."""

    def __init__(self, sock: socket.socket, *, batch: int = 64, recv_size: int) -> None:
        if _LIBC is None:
            raise OSError(errno.ENOSYS, "recvmmsg/sendmmsg not available")
        self._libc = _LIBC
        self.fd = sock.fileno()
        self.batch = batch
        self.recv_size = recv_size
        namelen = 16 if sock.family == socket.AF_INET else 28

        self.rbuf = (ctypes.c_char * (batch * recv_size))()
        self._names = (ctypes.c_char * (batch * _SOCKADDR_SIZE))()
        self._riov = (_IoVec * batch)()
        # Two iovecs per reply: the 2-byte ID, read in place from the query's
        # receive slot, then the rest of the reply, wherever its bytes live.
        self._siov = (_IoVec * (2 * batch))()
        self._rvec = (_MMsgHdr * batch)()
        self._svec = (_MMsgHdr * batch)()
        self._rbase = ctypes.addressof(self.rbuf)
        self._name_base = ctypes.addressof(self._names)
        for i in range(batch):
            self._riov[i].base = self._rbase + i * recv_size
            self._riov[i].len = recv_size
            rhdr = self._rvec[i].hdr
            rhdr.name = self._name_base + i * _SOCKADDR_SIZE
            rhdr.namelen = _SOCKADDR_SIZE
            rhdr.iov = ctypes.addressof(self._riov[i])
            rhdr.iovlen = 1
            self._siov[2 * i].base = self._rbase + i * recv_size
            self._siov[2 * i].len = 2
            shdr = self._svec[i].hdr
            shdr.name = self._name_base + i * _SOCKADDR_SIZE
            shdr.namelen = namelen
            shdr.iov = ctypes.addressof(self._siov[2 * i])
            shdr.iovlen = 2
        self._rvec_addr = ctypes.addressof(self._rvec)
        self._svec_addr = ctypes.addressof(self._svec)
        self._stride = ctypes.sizeof(_MMsgHdr)

        # Indexable views: received lengths (uint32) and the send iovecs
        # (pointer-sized: reply j's tail is at 4j+2 (address) and 4j+3 (length)).
        self.recv_len = memoryview(self._rvec).cast("B").cast("I")
        self.len_index = _MMsgHdr.len.offset // 4
        self.len_stride = self._stride // 4
        self.send_iov = memoryview(self._siov).cast("B").cast("Q")

    def recv(self) -> int:
        """Read up to ``batch`` datagrams; 0 when none is waiting."""
        n = self._libc.recvmmsg(self.fd, self._rvec_addr, self.batch, MSG_DONTWAIT, None)
        if n >= 0:
            return int(n)
        err = ctypes.get_errno()
        if err in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
            return 0
        raise OSError(err, "recvmmsg failed")

    def send(self, first: int, count: int) -> int:
        """Send replies ``first`` .. ``first + count - 1``; returns how many failed."""
        sent = 0
        failed = 0
        base = self._svec_addr + first * self._stride
        while sent < count:
            n = self._libc.sendmmsg(self.fd, base + sent * self._stride, count - sent, 0)
            if n > 0:
                sent += n
            else:
                # The datagram at ``sent`` failed (ENOBUFS, EPERM from a firewall,
                # ...): skip it, a DNS client retries.
                sent += 1
                failed += 1
        return failed
