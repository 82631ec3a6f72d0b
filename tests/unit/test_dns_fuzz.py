"""Fuzzing the running DNS server with random and mutated packets, over UDP and TCP.

A seeded mutator throws more than 100,000 datagrams (valid queries of every name
form, damaged by bit flips, truncation, splices, wild counts and label lengths,
plus pure noise and oversized datagrams) at a server on loopback, then TCP
connections carrying mutated frames and broken framing. Hypothesis adds
structured queries (random header bits, labels, types, classes, OPT options) and
checks each reply's header against its query.

Passing means: nothing reached the loop's exception handler, the answer path
caught no internal error (``serving`` checks both), every reply parses as DNS and
echoes its query's ID, and the server still answers correctly afterwards. Between
bursts a probe query must be answered, so the server is alive throughout and the
run is paced by the server, not by sleeps.

Address convention: the server listens on 127.0.0.1; cluster ``east`` (local)
owns 242.0.0.0/16 and ``west`` 242.1.0.0/16.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
from collections.abc import Iterator

import dns.edns
import dns.exception
import dns.message
import dns.rcode
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lighthouse.dns.records import ClusterExport, Endpoint, ServicePort, ServiceRecords
from lighthouse.dns.server import ServerThread
from lighthouse.dns.testing import addresses, ask, serving

pytestmark = pytest.mark.slow  # about 15-30 s together on this machine kind

SEED = 0x6E5F
UDP_PACKETS = 100_000
TCP_CONNECTIONS = 60
BURST = 250
ZONE = "clusterset.local"
PROBE = dns.message.make_query(f"probe.default.svc.{ZONE}", "A", id=0xBEEF).to_wire()


def clusterset() -> ServiceRecords:
    records = ServiceRecords(local_cluster="east")
    http = (ServicePort(port=80, name="http"), ServicePort(port=53, protocol="UDP", name="dns"))
    probe = ClusterExport(cluster="east", global_ip="242.0.0.1")
    records.upsert_service(namespace="default", name="probe", export=probe)
    records.upsert_service(
        namespace="default", name="web",
        export=ClusterExport(cluster="west", global_ip="242.1.0.7", ports=http),
    )
    records.upsert_service(
        namespace="default", name="web",
        export=ClusterExport(cluster="east", global_ip="242.0.0.7", ports=http),
    )
    endpoints = tuple(Endpoint(ip=f"242.1.0.{i + 10}", hostname=f"db-{i}") for i in range(40))
    records.upsert_service(
        namespace="default", name="db",
        export=ClusterExport(cluster="west", endpoints=endpoints, ports=http),
    )
    return records


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with serving(clusterset()) as thread:
        yield thread


def corpus() -> list[bytes]:
    """Valid queries for every name form, with and without EDNS, in odd cases too."""
    names = [
        f"web.default.svc.{ZONE}", f"WEB.Default.svc.{ZONE}", f"west.web.default.svc.{ZONE}",
        f"db.default.svc.{ZONE}", f"db-3.west.db.default.svc.{ZONE}",
        f"_http._tcp.web.default.svc.{ZONE}", f"_dns._udp.west.web.default.svc.{ZONE}",
        f"_tcp.web.default.svc.{ZONE}", f"default.svc.{ZONE}", f"svc.{ZONE}", ZONE,
        f"nope.default.svc.{ZONE}", "example.com", ".".join(["a" * 63] * 3) + "." + ZONE,
    ]
    cookie = dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"\x07" * 8)
    out = []
    for qname in names:
        for qtype in ("A", "SRV", "AAAA", "SOA", "ANY", "TXT"):
            out.append(dns.message.make_query(qname, qtype).to_wire())
            out.append(dns.message.make_query(qname, qtype, use_edns=0, payload=512).to_wire())
            out.append(dns.message.make_query(qname, qtype, use_edns=0, options=[cookie]).to_wire())
    return out


def mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(11)
        if op == 0 and data:  # flip bits
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(len(data))
                data[i] ^= 1 << rng.randrange(8)
        elif op == 1 and data:  # overwrite bytes
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == 2:  # truncate
            del data[rng.randrange(len(data) + 1):]
        elif op == 3:  # append noise
            data += rng.randbytes(rng.randint(1, 64))
        elif op == 4 and data:  # insert noise
            i = rng.randrange(len(data))
            data[i:i] = rng.randbytes(rng.randint(1, 16))
        elif op == 5 and len(data) >= 12:  # wild section counts
            data[4:12] = struct.pack("!HHHH", *(rng.choice((0, 1, 2, 0xFFFF)) for _ in range(4)))
        elif op == 6 and len(data) > 13:  # a label length byte gone wrong
            data[12] = rng.choice((0, 1, 63, 64, 0x7F, 0xC0, 0xFF))
        elif op == 7:  # splice with another seed
            other = rng.choice(seeds)
            data = data[: rng.randrange(len(data) + 1)] + other[rng.randrange(len(other)):]
        elif op == 8:  # pure noise
            data = bytearray(rng.randbytes(rng.randint(0, 600)))
        elif op == 9:  # oversized
            data += rng.randbytes(rng.randint(1025, 3000))
        elif op == 10 and len(data) >= 4:  # random flags byte pair (opcode, QR, ...)
            data[2:4] = rng.randbytes(2)
    return bytes(data)


def check_reply(reply: bytes) -> int:
    """Every reply is a parseable DNS response; returns its ID."""
    assert len(reply) >= 12 and reply[2] & 0x80, reply[:12]
    try:
        dns.message.from_wire(reply)
    except dns.exception.DNSException as exc:
        raise AssertionError(f"unparseable reply {reply!r}") from exc
    return int.from_bytes(reply[:2], "big")


def drain_until_probe(sock: socket.socket) -> int:
    """Read replies (checking each) until the probe's comes back; returns how many."""
    count = 0
    while True:
        reply = sock.recv(4096)
        count += 1
        if check_reply(reply) == 0xBEEF and reply[12:].startswith(PROBE[12:]):
            return count


def test_100k_random_and_mutated_datagrams_leave_the_server_answering(
    server: ServerThread,
) -> None:
    rng = random.Random(SEED)
    seeds = corpus()
    addr = ("127.0.0.1", server.server.port)
    replies = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.settimeout(5)
        sent = 0
        while sent < UDP_PACKETS:
            for _ in range(BURST):
                packet = mutate(rng, seeds) if rng.random() < 0.9 else rng.choice(seeds)
                # EMSGSIZE for a giant one: not a packet the server sees.
                with contextlib.suppress(OSError):
                    sock.sendto(packet, addr)
                sent += 1
            sock.sendto(PROBE, addr)
            replies += drain_until_probe(sock)
    assert replies > UDP_PACKETS // 4  # most valid-looking packets were answered
    metrics = server.server.metrics
    assert sum(metrics.malformed.values()) > UDP_PACKETS // 4  # and most were damaged
    assert addresses(ask(server.server.port, f"web.default.svc.{ZONE}")) == ["242.0.0.7"]
    assert addresses(ask(server.server.port, f"web.default.svc.{ZONE}", tcp=True)) == [
        "242.0.0.7"
    ]


def test_tcp_connections_carrying_mutated_frames_leave_the_server_answering(
    server: ServerThread,
) -> None:
    rng = random.Random(SEED + 1)
    seeds = corpus()
    port = server.server.port
    closed_by_server = 0
    for _ in range(TCP_CONNECTIONS):
        frames = []
        for _ in range(rng.randint(1, 60)):
            packet = mutate(rng, seeds)[:1024] or b"\x00"
            frames.append(struct.pack("!H", len(packet)) + packet)
        stream = b"".join(frames)
        if rng.random() < 0.3:  # broken framing somewhere
            stream = mutate(rng, [stream])
        received = b""
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            try:
                conn.sendall(stream + struct.pack("!H", len(PROBE)) + PROBE)
                conn.shutdown(socket.SHUT_WR)
                while chunk := conn.recv(65536):
                    received += chunk
            except OSError:
                # The server hangs up on framing it cannot follow; that is allowed.
                closed_by_server += 1
        # Whatever came back is a sequence of well-framed, parseable replies (a
        # connection the server aborted may end in a partial one).
        while len(received) >= 2:
            (size,) = struct.unpack("!H", received[:2])
            if len(received) < 2 + size:
                break
            check_reply(received[2 : 2 + size])
            received = received[2 + size :]
    assert addresses(ask(port, f"web.default.svc.{ZONE}", tcp=True)) == ["242.0.0.7"]


labels = st.lists(
    st.one_of(
        st.sampled_from([b"web", b"WEB", b"default", b"svc", b"clusterset", b"local", b"_http",
                         b"_tcp", b"west", b"db-1", b"db"]),
        st.binary(min_size=1, max_size=63),
    ),
    max_size=8,
)


@st.composite
def queries(draw: st.DrawFn) -> bytes:
    msg_id = draw(st.integers(0, 0xBEEE))  # never the probe's
    flags = draw(st.integers(0, 0xFFFF)) & ~0x8000  # queries only: responses are dropped
    name = b"".join(bytes([len(x)]) + x for x in draw(labels))
    if draw(st.booleans()):
        name += b"\x0aclusterset\x05local"
    qtype = draw(st.sampled_from([1, 28, 33, 6, 255, 41, 252, 0, 65535]))
    qclass = draw(st.sampled_from([1, 1, 1, 3, 255, 254, 0]))
    opt = b""
    if draw(st.booleans()):
        options = b"".join(
            struct.pack("!HH", code, len(data)) + data
            for code, data in draw(
                st.lists(st.tuples(st.integers(0, 65535), st.binary(max_size=40)), max_size=3)
            )
        )
        opt = b"\x00" + struct.pack(
            "!HHBBHH", 41, draw(st.integers(0, 65535)), 0, draw(st.sampled_from([0, 0, 1])),
            draw(st.integers(0, 0xFFFF)), len(options),
        ) + options
    head = struct.pack("!HHHHHH", msg_id, flags, 1, 0, 0, 1 if opt else 0)
    return head + name + b"\x00" + struct.pack("!HH", qtype, qclass) + opt


@settings(
    max_examples=1000,
    deadline=None,
    database=None,  # no .hypothesis folder in the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(query=queries())
def test_structured_random_queries_get_replies_that_match_their_header(
    server: ServerThread, query: bytes
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        addr = ("127.0.0.1", server.server.port)
        sock.sendto(query, addr)
        sock.sendto(PROBE, addr)
        # A query (QR clear, 12 bytes or more) is always answered, if only FORMERR,
        # and before the probe sent after it.
        reply = sock.recv(4096)
        check_reply(reply)
        assert reply[:2] == query[:2]
        qflags, rflags = query[2:4], reply[2:4]
        assert rflags[0] & 0x78 == qflags[0] & 0x78  # opcode copied
        assert rflags[0] & 0x01 == qflags[0] & 0x01  # RD copied
        if rflags[1] & 0x0F != dns.rcode.NOTIMP:
            assert rflags[1] & 0x10 == qflags[1] & 0x10  # CD copied
        assert not rflags[1] & 0x80  # RA never set
        assert len(reply) <= 1232
        # Take the probe's reply too before the socket closes: left in flight, it
        # could land in a later example's socket that got the same ephemeral port
        # and pass there for a reply to that example's query.
        assert drain_until_probe(sock) == 1
