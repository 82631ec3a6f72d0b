"""Two tiny nfnetlink clients libnftables does not offer: the ruleset generation
and the change events (`nft monitor`'s feed), both per network namespace.

* `NfTables.generation()` sends NFT_MSG_GETGEN. The kernel bumps the generation on
  every committed batch in the namespace (anyone's), so "unchanged since we last
  looked" proves nothing was edited, in microseconds. `set_elements()` and
  `fingerprint()` dump one set, or our declarations and rules, without
  libnftables' habit of fetching every element of the table first.
* `Events` joins the NFNLGRP_NFTABLES group. Every committed change is announced
  object by object (with the table name), then closed by NFT_MSG_NEWGEN carrying
  the generation and the pid of the committing task. That tells the drift
  watcher that *someone else* touched our table without listing 50,000 elements.
  The kernel reports the task id (thread), not the process id. If the socket
  overflows (ENOBUFS, e.g. during our own bulk load) events are lost, which the
  caller must treat as "maybe touched".

Message layouts: include/uapi/linux/netfilter/nf_tables.h and nfnetlink.h.
"""

from __future__ import annotations

import errno
import hashlib
import os
import select
import socket
import struct
from dataclasses import dataclass
from typing import Any, NamedTuple

from datapath.netns import entered

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NFNLGRP_NFTABLES = 7
NFNL_SUBSYS_NFTABLES = 10
NLM_F_REQUEST = 0x1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_DUMP = 0x300
NFT_MSG_GETTABLE = 1
NFT_MSG_GETCHAIN = 4
NFT_MSG_GETRULE = 7
NFT_MSG_GETSET = 10
NFT_MSG_GETSETELEM = 13
NFT_MSG_GETGEN = 16
NFT_MSG_NEWGEN = 15
NFTA_GEN_ID = 1
NFTA_GEN_PROC_PID = 2
# Object messages whose attribute 1 is the table name (NFTA_*_TABLE / NFTA_TABLE_NAME):
# NEW/DEL of table, chain, rule, set, set element, object, flowtable, and DESTROY (6.3+).
_TABLE_MSGS = frozenset({0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 18, 20, 22, 24, 26, 27, 28, 29, 30,
                         31, 32})
NFPROTO = {"inet": 1, "ip": 2, "ip6": 10}
_HDR = struct.Struct("=IHHII")  # nlmsghdr
_NFGEN = struct.Struct("=BBH")  # nfgenmsg
_NLA = struct.Struct("=HH")


def _attrs(data: bytes, offset: int, end: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while offset + 4 <= end:
        length, kind = _NLA.unpack_from(data, offset)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[offset + 4:offset + length]
        offset += (length + 3) & ~3
    return out


def _messages(data: bytes) -> list[tuple[int, int, dict[int, bytes]]]:
    """(nfnetlink message type, nfgen family, attributes) for each message."""
    out = []
    offset = 0
    while offset + _HDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _HDR.unpack_from(data, offset)
        if length < _HDR.size:
            break
        if kind >> 8 == NFNL_SUBSYS_NFTABLES:
            family, _, _ = _NFGEN.unpack_from(data, offset + _HDR.size)
            attrs = _attrs(data, offset + _HDR.size + _NFGEN.size, offset + length)
            out.append((kind & 0xFF, family, attrs))
        offset += (length + 3) & ~3
    return out


def _open(netns: str | None) -> socket.socket:
    with entered(netns):
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.bind((0, 0))
    return sock


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return _NLA.pack(length, kind) + payload + b"\0" * (-length % 4)


class RawElement(NamedTuple):
    """One set element as the kernel dumps it: key, data, flags, comment and, for
    ranges stored by the pipapo backend, the key the range ends at."""

    key: bytes
    data: bytes | None
    flags: int
    comment: str
    key_end: bytes | None = None


NFT_SET_ELEM_INTERVAL_END = 1


class NfTables:
    """Direct nfnetlink queries in one namespace: the generation, a set's elements,
    a fingerprint of a table's rules. Listing through libnftables fetches every
    element of the table into its cache first (about a second per 100,000); these
    fetch only what is asked."""

    def __init__(self, netns: str | None) -> None:
        self._sock = _open(netns)
        self._seq = 0

    def _request(self, msg_type: int, flags: int, family: int, attrs: bytes) -> list[bytes]:
        """Send one request; the payloads (after nfgenmsg) of every answer message."""
        self._seq += 1
        seq = self._seq
        body = _NFGEN.pack(family, 0, 0) + attrs
        self._sock.send(_HDR.pack(_HDR.size + len(body), (NFNL_SUBSYS_NFTABLES << 8) | msg_type,
                                  NLM_F_REQUEST | flags, seq, 0) + body)
        out: list[bytes] = []
        while True:
            data = self._sock.recv(1 << 20)
            offset = 0
            while offset + _HDR.size <= len(data):
                length, kind, _, got_seq, _ = _HDR.unpack_from(data, offset)
                if length < _HDR.size:
                    return out
                if got_seq == seq:
                    if kind == NLMSG_DONE:
                        return out
                    if kind == NLMSG_ERROR:
                        (code,) = struct.unpack_from("=i", data, offset + _HDR.size)
                        if code:
                            raise OSError(-code, f"nfnetlink {msg_type}: {os.strerror(-code)}")
                        return out
                    out.append(data[offset + _HDR.size + _NFGEN.size:offset + length])
                    if not flags & NLM_F_DUMP:
                        return out
                offset += (length + 3) & ~3

    def generation(self) -> int:
        for payload in self._request(NFT_MSG_GETGEN, 0, socket.AF_UNSPEC, b""):
            attrs = _attrs(payload, 0, len(payload))
            if NFTA_GEN_ID in attrs:
                return int(struct.unpack(">I", attrs[NFTA_GEN_ID])[0])
        raise OSError("no generation in NFT_MSG_NEWGEN")

    def set_elements(self, family: str, table: str, name: str) -> list[RawElement]:
        """Every element of one set or map (the hot loop of a full read: kept flat)."""
        attrs = _attr(1, table.encode() + b"\0") + _attr(2, name.encode() + b"\0")
        out: list[RawElement] = []
        unpack = _NLA.unpack_from
        for payload in self._request(NFT_MSG_GETSETELEM, NLM_F_DUMP, NFPROTO[family], attrs):
            elements = _attrs(payload, 0, len(payload)).get(3, b"")
            offset, total = 0, len(elements)
            while offset + 4 <= total:
                length, _ = unpack(elements, offset)
                end, pos = offset + length, offset + 4
                offset += (length + 3) & ~3
                key = b""
                data = key_end = None
                flags, comment = 0, ""
                while pos + 4 <= end:
                    alen, akind = unpack(elements, pos)
                    akind &= 0x3FFF
                    if akind == 1:  # NFTA_SET_ELEM_KEY { NFTA_DATA_VALUE }
                        key = elements[pos + 8:pos + alen]
                    elif akind == 2:  # NFTA_SET_ELEM_DATA { NFTA_DATA_VALUE }
                        data = elements[pos + 8:pos + alen]
                    elif akind == 3:  # NFTA_SET_ELEM_FLAGS
                        flags = int.from_bytes(elements[pos + 4:pos + 8], "big")
                    elif akind == 6:  # NFTA_SET_ELEM_USERDATA
                        comment = _comment(elements[pos + 4:pos + alen])
                    elif akind == 10:  # NFTA_SET_ELEM_KEY_END { NFTA_DATA_VALUE }
                        key_end = elements[pos + 8:pos + alen]
                    pos += (alen + 3) & ~3
                out.append(RawElement(key, data, flags, comment, key_end))
        return out

    def fingerprint(self, family: str, table: str) -> str | None:
        """A digest of the table's declarations and rules, None if there is no table.

        Covers the table's object count (so a flowtable or counter someone added
        shows), every set and chain declaration and every rule (expressions and
        comment), leaving out what differs between identical tables: handles,
        set ids. Equal digests mean an equal ruleset; elements are not included."""
        tname = table.encode() + b"\0"
        fam = NFPROTO[family]
        digest = hashlib.sha256()
        try:
            found = self._request(NFT_MSG_GETTABLE, 0, fam, _attr(1, tname))
        except FileNotFoundError:
            return None
        for payload in found:
            attrs = _attrs(payload, 0, len(payload))
            _digest(digest, attrs, keep=(2, 3))  # NFTA_TABLE_FLAGS, NFTA_TABLE_USE
        # Left out: set id, handles, chain counters and NFTA_SET_COUNT (20, kernel
        # 6.13+: the number of elements, which this digest must not depend on).
        for msg_type, skip in ((NFT_MSG_GETSET, (10, 16, 20)), (NFT_MSG_GETCHAIN, (2, 8)),
                               (NFT_MSG_GETRULE, (3,))):
            for payload in self._request(msg_type, NLM_F_DUMP, fam, _attr(1, tname)):
                attrs = _attrs(payload, 0, len(payload))
                if attrs.get(1) == tname:  # attribute 1 is the table name for all three
                    _digest(digest, attrs, skip=skip)
        return digest.hexdigest()

    def close(self) -> None:
        self._sock.close()


def _digest(digest: Any, attrs: dict[int, bytes], *, keep: tuple[int, ...] = (),
            skip: tuple[int, ...] = ()) -> None:
    for kind in sorted(attrs):
        if (keep and kind not in keep) or kind in skip:
            continue
        digest.update(struct.pack("=HI", kind, len(attrs[kind])) + attrs[kind])
    digest.update(b"\xff")


def _comment(udata: bytes) -> str:
    """NFTNL_UDATA_SET_ELEM_COMMENT (type 0) from an element's user data TLVs."""
    offset = 0
    while offset + 2 <= len(udata):
        kind, length = udata[offset], udata[offset + 1]
        if kind == 0:
            return udata[offset + 2:offset + 2 + length].rstrip(b"\0").decode(errors="replace")
        offset += 2 + length
    return ""


@dataclass(frozen=True)
class Commit:
    """One committed batch as announced: its generation, committing task, and
    whether it touched our table."""

    generation: int
    task: int
    touched: bool


class Events:
    """Subscription to nftables change events in one namespace, filtered to a table."""

    def __init__(self, netns: str | None, *, family: str, table: str,
                 rcvbuf: int = 8 << 20) -> None:
        self._sock = _open(netns)
        self._family = NFPROTO[family]
        self._table = table.encode() + b"\0"
        try:  # SO_RCVBUFFORCE needs CAP_NET_ADMIN, which programming nftables needs anyway
            self._sock.setsockopt(socket.SOL_SOCKET, 33, rcvbuf)  # SO_RCVBUFFORCE
        except OSError:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self._sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, NFNLGRP_NFTABLES)
        self._sock.setblocking(False)
        self._pending = False

    def fileno(self) -> int:
        return self._sock.fileno()

    def read(self, timeout: float) -> tuple[list[Commit], bool]:
        """Commits announced within `timeout` seconds, and whether events were lost."""
        commits: list[Commit] = []
        lost = False
        ready, _, _ = select.select([self._sock], [], [], timeout)
        while ready:
            try:
                data = self._sock.recv(1 << 20)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    lost = True
                    continue
                raise
            for msg_type, family, attrs in _messages(data):
                if msg_type in _TABLE_MSGS:
                    if family == self._family and attrs.get(1) == self._table:
                        self._pending = True
                elif msg_type == NFT_MSG_NEWGEN:
                    gen = int(struct.unpack(">I", attrs.get(NFTA_GEN_ID, b"\0" * 4))[0])
                    task = int(struct.unpack(">I", attrs.get(NFTA_GEN_PROC_PID, b"\0" * 4))[0])
                    commits.append(Commit(gen, task, self._pending))
                    self._pending = False
        return commits, lost

    def close(self) -> None:
        self._sock.close()
