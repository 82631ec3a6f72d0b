"""The hand-written DNS wire parser and reply helpers, without sockets.

The parser is strict on purpose: what it accepts gets its reply cached by the
query's bytes, so each rule below is also a rule about what can reach the cache.
Queries are built with dnspython and then damaged byte by byte.

Address convention: none; these tests only build and parse messages.
"""

from __future__ import annotations

import struct

import dns.edns
import dns.message
import pytest

from lighthouse.dns.wire import (
    CD,
    QR,
    RD,
    TC,
    Malformed,
    QType,
    Rcode,
    error_response,
    opt_record,
    parse_query,
    response_flags,
)

NAME = "Web.Default.svc.clusterset.local"


def wire(name: str = NAME, qtype: str = "A", **kw: object) -> bytes:
    return dns.message.make_query(name, qtype, id=0x1234, **kw).to_wire()  # type: ignore[arg-type]


def rcode_of(data: bytes) -> Rcode | None:
    with pytest.raises(Malformed) as info:
        parse_query(data)
    return info.value.rcode


def test_a_plain_query_parses_with_lowercased_labels_and_its_question_as_sent() -> None:
    data = wire()
    q = parse_query(data)
    assert q.labels == (b"web", b"default", b"svc", b"clusterset", b"local")
    assert (q.qtype, q.qclass, q.edns) == (QType.A, 1, None)
    assert q.question == data[12:]
    assert q.qname_key == data[12:-4].lower()
    assert q.flags & RD


def test_an_edns_query_exposes_payload_do_bit_and_options() -> None:
    q = parse_query(wire(use_edns=0, payload=4000, want_dnssec=True))
    assert q.edns is not None
    assert (q.edns.payload, q.edns.version, q.edns.do, q.edns.has_options) == (4000, 0, True, False)
    cookie = dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"\x01" * 8)
    q = parse_query(wire(use_edns=0, options=[cookie]))
    assert q.edns is not None and q.edns.has_options


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda d: d[:11], None),  # no full header
        (lambda d: bytes([d[0], d[1], d[2] | 0x80]) + d[3:], None),  # a response
        (lambda d: d[:2] + bytes([d[2] | 0x28]) + d[3:], Rcode.NOTIMP),  # opcode 5
        (lambda d: d[:5] + b"\x00" + d[6:], Rcode.FORMERR),  # QDCOUNT 0
        (lambda d: d[:5] + b"\x02" + d[6:], Rcode.FORMERR),  # QDCOUNT 2
        (lambda d: d[:7] + b"\x01" + d[8:], Rcode.FORMERR),  # an answer record
        (lambda d: d[:9] + b"\x01" + d[10:], Rcode.FORMERR),  # an authority record
        (lambda d: d[:11] + b"\x01" + d[12:], Rcode.FORMERR),  # ARCOUNT 1, no record
        (lambda d: d[:-1], Rcode.FORMERR),  # class cut short
        (lambda d: d[:20], Rcode.FORMERR),  # name cut short
        (lambda d: d + b"\x00", Rcode.FORMERR),  # trailing byte
        (lambda d: d[:12] + b"\xc0\x0c" + d[-4:], Rcode.FORMERR),  # compression pointer
        (lambda d: d[:12] + b"\x41" + d[13:], Rcode.FORMERR),  # extended label type
        (lambda d: d[:12] + b"\x3f" + d[13:], Rcode.FORMERR),  # label past the end
        (lambda d: d + b"\x00" * 1100, Rcode.FORMERR),  # oversized
    ],
    ids=[
        "short", "response", "opcode", "qd0", "qd2", "answer", "authority", "ar-missing",
        "class-cut", "name-cut", "trailing", "pointer", "ext-label", "label-overrun", "huge",
    ],
)
def test_damaged_queries_are_dropped_or_get_formerr(damage: object, expected: Rcode | None) -> None:
    assert rcode_of(damage(wire())) == expected  # type: ignore[operator]


def test_names_over_255_bytes_are_formerr() -> None:
    labels = b"".join(b"\x3f" + b"a" * 63 for _ in range(4))  # 256 bytes with the root
    data = struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + labels + b"\x00\x00\x01\x00\x01"
    assert rcode_of(data) == Rcode.FORMERR


@pytest.mark.parametrize(
    "opt",
    [
        b"\x01\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00",  # owner not the root
        b"\x00\x00\x01\x04\xd0\x00\x00\x00\x00\x00\x00",  # type A, not OPT
        b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x05\x00",  # rdata runs past the end
        b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x02\x00\x0a",  # option header cut
        b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x05\x00\x0a\x00\x08\x01",  # option overrun
        b"\x00\x00\x29",  # record cut short
    ],
    ids=["owner", "type", "rdlen", "opt-header", "opt-overrun", "cut"],
)
def test_malformed_opt_records_are_formerr(opt: bytes) -> None:
    data = bytearray(wire())
    data[11] = 1
    assert rcode_of(bytes(data) + opt) == Rcode.FORMERR


def test_opt_in_the_question_is_formerr_and_edns_version_1_is_badvers() -> None:
    assert rcode_of(wire(qtype="OPT")) == Rcode.FORMERR
    assert rcode_of(wire(use_edns=1)) == Rcode.BADVERS


def test_reply_flags_copy_opcode_rd_and_cd_and_set_qr() -> None:
    flags = response_flags(RD | CD, Rcode.NXDOMAIN, aa=True, tc=True)
    assert flags & QR and flags & RD and flags & CD and flags & TC
    assert flags & 0xF == Rcode.NXDOMAIN
    assert response_flags(0, Rcode.NOERROR, aa=False) == QR


def test_badvers_puts_its_upper_bits_in_the_opt_record() -> None:
    data = wire(use_edns=1)
    with pytest.raises(Malformed) as info:
        parse_query(data)
    reply = dns.message.from_wire(
        error_response(data, Rcode.BADVERS, query=info.value.query)
    )
    assert int(reply.rcode()) == Rcode.BADVERS
    assert opt_record(1232, do=False)[3:5] == b"\x04\xd0"


def test_an_error_reply_without_a_parsed_question_is_a_bare_header() -> None:
    data = wire()
    reply = error_response(data, Rcode.FORMERR)
    assert len(reply) == 12 and reply[:2] == data[:2]
    assert int(dns.message.from_wire(reply).rcode()) == Rcode.FORMERR
