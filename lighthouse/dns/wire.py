"""DNS wire format by hand, for exactly the bytes the answer path touches.

Why not dnslib here: building a ``DNSRecord`` per query costs tens of
microseconds; this parser reads only the header, the one question and an optional
EDNS OPT record, and it is strict, so anything it accepts is a plain query whose
answer can be cached by its bytes (see ``fastpath.py``). dnslib still packs every
answer, off the hot path.

Strictness (RFC 1035 §4.1, RFC 6891 §6):

* fewer than 12 bytes, or the QR bit set: drop (there is no query to answer, and
  answering responses invites loops and reflection);
* opcode other than QUERY: NOTIMP;
* QDCOUNT != 1, any answer or authority record, more than one additional record,
  an additional record that is not a well-formed OPT at the root, a question name
  with a compression pointer or an extended label type, a name over 255 bytes,
  a message cut short, trailing bytes, more than :data:`MAX_QUERY` bytes: FORMERR;
* OPT version other than 0: BADVERS (extended rcode 16, RFC 6891 §6.1.3).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

HEADER_LEN: Final = 12
MAX_QUERY: Final = 1024
"""Largest query accepted. Real ones are under 300 bytes (a 255-byte name, the
question's type and class, an OPT record with a cookie); a padded one (RFC 8467)
rounds up to 468. Anything bigger is not a query we can answer."""
MAX_NAME: Final = 255

# Header flag bits (RFC 1035 §4.1.1, RFC 4035 §3.2 for AD/CD).
QR: Final = 0x8000
OPCODE_MASK: Final = 0x7800
AA: Final = 0x0400
TC: Final = 0x0200
RD: Final = 0x0100
CD: Final = 0x0010

CLASS_IN: Final = 1
OPT_DO: Final = 0x8000

_HDR = struct.Struct("!HHHH")
_TYPE_CLASS = struct.Struct("!HH")
_OPT_FIXED = struct.Struct("!HHBBHH")


class Rcode(enum.IntEnum):
    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5
    BADVERS = 16  # extended: the upper 8 bits live in the OPT record


class QType(enum.IntEnum):
    A = 1
    NS = 2
    CNAME = 5
    SOA = 6
    PTR = 12
    MX = 15
    TXT = 16
    AAAA = 28
    SRV = 33
    OPT = 41
    SVCB = 64
    HTTPS = 65
    IXFR = 251
    AXFR = 252
    ANY = 255


@dataclass(frozen=True, slots=True)
class Edns:
    """The client's OPT record: what it can receive and whether it sent options."""

    payload: int
    version: int
    do: bool
    has_options: bool


@dataclass(frozen=True, slots=True)
class Query:
    """One parsed query; ``data`` is the message exactly as received."""

    data: bytes
    flags: int
    labels: tuple[bytes, ...]
    question_end: int
    qtype: int
    qclass: int
    edns: Edns | None

    @property
    def question(self) -> bytes:
        """The question section as received (original case), to echo verbatim."""
        return self.data[HEADER_LEN : self.question_end]

    @property
    def qname_key(self) -> bytes:
        """The question name in wire form, lowercased: the cache key."""
        return self.data[HEADER_LEN : self.question_end - 4].lower()


class Malformed(Exception):
    """The message cannot be answered as asked: reply ``rcode``, or drop it if None."""

    def __init__(self, reason: str, rcode: Rcode | None, *, query: Query | None = None):
        super().__init__(reason)
        self.reason = reason
        self.rcode = rcode
        self.query = query


def parse_query(data: bytes) -> Query:
    """Parse and validate one query message; raise :class:`Malformed` otherwise."""
    size = len(data)
    if size < HEADER_LEN:
        raise Malformed("short header", None)
    flags = (data[2] << 8) | data[3]
    if flags & QR:
        raise Malformed("a response, not a query", None)
    if size > MAX_QUERY:
        raise Malformed("oversized query", Rcode.FORMERR)
    if flags & OPCODE_MASK:
        raise Malformed("opcode not QUERY", Rcode.NOTIMP)
    qdcount, ancount, nscount, arcount = _HDR.unpack_from(data, 4)
    if qdcount != 1 or ancount or nscount or arcount > 1:
        raise Malformed("unexpected section counts", Rcode.FORMERR)

    labels: list[bytes] = []
    pos = HEADER_LEN
    while True:
        if pos >= size:
            raise Malformed("name runs past the end", Rcode.FORMERR)
        length = data[pos]
        if length == 0:
            pos += 1
            break
        if length > 63:
            # 0xC0 is a compression pointer, 0x40/0x80 extended label types: none
            # belongs in the question of a query.
            raise Malformed("pointer or extended label in question", Rcode.FORMERR)
        end = pos + 1 + length
        if end > size:
            raise Malformed("label runs past the end", Rcode.FORMERR)
        labels.append(data[pos + 1 : end].lower())
        pos = end
    if pos - HEADER_LEN > MAX_NAME:
        raise Malformed("name longer than 255 bytes", Rcode.FORMERR)
    if pos + 4 > size:
        raise Malformed("question type and class missing", Rcode.FORMERR)
    qtype, qclass = _TYPE_CLASS.unpack_from(data, pos)
    pos += 4
    question_end = pos

    edns: Edns | None = None
    if arcount:
        edns, pos = _parse_opt(data, pos)
    if pos != size:
        raise Malformed("trailing bytes", Rcode.FORMERR)
    query = Query(data, flags, tuple(labels), question_end, qtype, qclass, edns)
    if qtype == QType.OPT:
        raise Malformed("OPT in the question", Rcode.FORMERR, query=query)
    if edns is not None and edns.version != 0:
        raise Malformed("unsupported EDNS version", Rcode.BADVERS, query=query)
    return query


def _parse_opt(data: bytes, pos: int) -> tuple[Edns, int]:
    size = len(data)
    # Root owner name (one zero byte), then type, class, TTL, RDLENGTH.
    if pos + 11 > size:
        raise Malformed("additional record cut short", Rcode.FORMERR)
    if data[pos] != 0:
        raise Malformed("additional record is not OPT at the root", Rcode.FORMERR)
    rtype, payload, _ext_rcode, version, opt_flags, rdlen = _OPT_FIXED.unpack_from(data, pos + 1)
    if rtype != QType.OPT:
        raise Malformed("additional record is not OPT", Rcode.FORMERR)
    pos += 11
    end = pos + rdlen
    if end > size:
        raise Malformed("OPT data runs past the end", Rcode.FORMERR)
    has_options = rdlen > 0
    while pos < end:
        if pos + 4 > end:
            raise Malformed("OPT option header cut short", Rcode.FORMERR)
        opt_len = (data[pos + 2] << 8) | data[pos + 3]
        pos += 4 + opt_len
        if pos > end:
            raise Malformed("OPT option runs past its record", Rcode.FORMERR)
    return Edns(payload, version, bool(opt_flags & OPT_DO), has_options), end


def response_flags(query_flags: int, rcode: int, *, aa: bool, tc: bool = False) -> int:
    """Header flags of our response: QR, the query's opcode, RD and CD copied.

    RFC 1035 copies RD; RFC 4035 §3.1.6 copies CD. We never recurse (RA clear) and
    never validate (AD clear).
    """
    flags = QR | (query_flags & (OPCODE_MASK | RD | CD)) | (rcode & 0xF)
    if aa:
        flags |= AA
    if tc:
        flags |= TC
    return flags


def opt_record(payload: int, *, do: bool, rcode: int = 0) -> bytes:
    """Our OPT record: the UDP payload we accept and the upper bits of ``rcode``."""
    return b"\x00" + _OPT_FIXED.pack(
        QType.OPT, payload, (rcode >> 4) & 0xFF, 0, OPT_DO if do else 0, 0
    )


def header(msg_id: bytes, flags: int, qd: int, an: int, ns: int, ar: int) -> bytes:
    return msg_id + struct.pack("!HHHHH", flags, qd, an, ns, ar)


def error_response(
    data: bytes, rcode: int, *, query: Query | None = None, udp_payload: int = 1232
) -> bytes:
    """A reply without records: echoes the question when it could be parsed."""
    flags = (data[2] << 8) | data[3]
    question = query.question if query is not None else b""
    opt = b""
    if query is not None and query.edns is not None:
        opt = opt_record(udp_payload, do=query.edns.do, rcode=rcode)
    head = header(
        data[:2], response_flags(flags, rcode, aa=False), 1 if question else 0, 0, 0,
        1 if opt else 0,
    )
    return head + question + opt
