"""The UDP fast path (``lighthouse.dns.fastpath``) on its own: table, hit counting, readers.

The table is filled by hand here, not by the slow path, so the rules the fast path
alone is responsible for are checked directly: a hit echoes the query's ID and
continues the slow path's rotation, misses and drops go to the responder, hit
counts reach the metrics exactly once, and entries dropped while the batched
reader runs stay alive until its batch is sent. The readers are driven by hand
(no event loop) over real UDP sockets, both ways the transport can run.

Address convention: a reader socket on 127.0.0.1 (port chosen by the kernel) and
one client socket, also on 127.0.0.1. Payloads are opaque bytes: the fast path
never parses, so the "queries" are not DNS messages.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from lighthouse.dns import fastpath
from lighthouse.dns.fastpath import Entry, FastPath
from lighthouse.dns.metrics import DnsMetrics

IO_MODES = ["plain", pytest.param("mmsg", marks=pytest.mark.skipif(
    not fastpath.available(), reason="recvmmsg/sendmmsg not available on this platform"))]
STATS = ("A", "NOERROR")
RECV_SIZE = 1025


class SlowPath:
    """A stand-in for ``AnswerCache.respond``: records its calls, drops b"drop"."""

    def __init__(self) -> None:
        self.calls: list[bytes] = []

    def __call__(self, data: bytes, *, udp: bool) -> bytes | None:
        assert udp
        self.calls.append(data)
        if data[2:] == b"drop":
            return None
        return data[:2] + b"slow:" + data[2:]


@pytest.fixture
def metrics() -> DnsMetrics:
    return DnsMetrics()


@pytest.fixture
def fast(metrics: DnsMetrics) -> FastPath:
    return FastPath(lock=threading.RLock(), metrics=metrics)


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket]]:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        server.bind(("127.0.0.1", 0))
        server.setblocking(False)
        client.bind(("127.0.0.1", 0))
        client.settimeout(2)
        yield server, client
    finally:
        server.close()
        client.close()


def reader_for(
    fast: FastPath, sock: socket.socket, io: str, slow: SlowPath, metrics: DnsMetrics,
    batch: int = 8,
) -> fastpath.Reader:
    build = fast.mmsg_reader if io == "mmsg" else fast.plain_reader
    return build(sock, respond=slow, batch=batch, recv_size=RECV_SIZE, observe=metrics.observe)


def exchange(
    reader: fastpath.Reader,
    sockets: tuple[socket.socket, socket.socket],
    queries: list[bytes],
    replies: int,
) -> list[bytes]:
    """Send ``queries``, run the reader until ``replies`` replies came back, return them."""
    server, client = sockets
    for q in queries:
        client.sendto(q, server.getsockname())
    got: list[bytes] = []
    deadline = time.monotonic() + 5
    while len(got) < replies:
        assert time.monotonic() < deadline, f"only {len(got)} of {replies} replies: {got}"
        if select.select([server], [], [], 0)[0]:
            reader()
        if select.select([client], [], [], 0.05)[0]:
            got.append(client.recv(2048))
    return got


def test_an_entry_has_slots_and_no_dict() -> None:
    """Slots keep the per-hit attribute reads and the counter write cheap."""
    entry = Entry(0, 1, 0, STATS, (b"x",), (0, 1))
    assert not hasattr(entry, "__dict__")
    with pytest.raises(AttributeError):
        entry.other = 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("io", IO_MODES)
def test_a_hit_echoes_the_query_id_and_serves_the_cached_reply_without_the_slow_path(
    fast: FastPath, sockets: tuple[socket.socket, socket.socket], io: str, metrics: DnsMetrics
) -> None:
    slow = SlowPath()
    fast.insert(b"web", (b"reply-web",), stats=STATS, index=0)
    reader = reader_for(fast, sockets[0], io, slow, metrics)
    assert exchange(reader, sockets, [b"\xab\xcdweb", b"\x00\x07web"], 2) == [
        b"\xab\xcdreply-web", b"\x00\x07reply-web",
    ]
    assert slow.calls == []
    assert fast.live_hits() == [(STATS, 2)]


@pytest.mark.parametrize("io", IO_MODES)
def test_hits_continue_the_rotation_from_the_variant_the_slow_path_served(
    fast: FastPath, sockets: tuple[socket.socket, socket.socket], io: str, metrics: DnsMetrics
) -> None:
    fast.insert(b"web", (b"v0", b"v1", b"v2"), stats=STATS, index=1)
    reader = reader_for(fast, sockets[0], io, SlowPath(), metrics)
    got = exchange(reader, sockets, [b"\x00\x01web"] * 4, 4)
    assert [reply[2:] for reply in got] == [b"v2", b"v0", b"v1", b"v2"]


@pytest.mark.parametrize("io", IO_MODES)
def test_a_batch_mixing_hits_misses_and_drops_answers_each_query_with_its_own_reply(
    fast: FastPath, sockets: tuple[socket.socket, socket.socket], io: str, metrics: DnsMetrics
) -> None:
    slow = SlowPath()
    fast.insert(b"web", (b"reply-web",), stats=STATS, index=0)
    queries = [
        b"\x00\x01web", b"\x00\x02api", b"\x00\x03drop", b"\x00\x04web",
        b"\x00\x05drop", b"\x00\x06db", b"\x00\x07web",
    ]
    got = exchange(reader_for(fast, sockets[0], io, slow, metrics), sockets, queries, 5)
    assert sorted(got) == sorted([
        b"\x00\x01reply-web", b"\x00\x02slow:api", b"\x00\x04reply-web",
        b"\x00\x06slow:db", b"\x00\x07reply-web",
    ])
    assert sorted(slow.calls) == sorted(
        [b"\x00\x02api", b"\x00\x03drop", b"\x00\x05drop", b"\x00\x06db"]
    )


def test_hits_are_counted_live_then_folded_once_when_the_entry_leaves(
    fast: FastPath, metrics: DnsMetrics, sockets: tuple[socket.socket, socket.socket]
) -> None:
    fast.insert(b"web", (b"w",), stats=STATS, index=5)
    fast.insert(b"api", (b"a",), stats=("AAAA", "NOERROR"), index=0)
    reader = reader_for(fast, sockets[0], "plain", SlowPath(), metrics)
    exchange(reader, sockets, [b"\x00\x00web"] * 3 + [b"\x00\x00api"], 4)
    assert sorted(metrics.queries().items()) == [(("A", "NOERROR"), 3), (("AAAA", "NOERROR"), 1)]
    fast.drop([b"web", b"gone"])
    assert metrics.answered == {STATS: 3}
    assert sorted(metrics.queries().items()) == [(("A", "NOERROR"), 3), (("AAAA", "NOERROR"), 1)]
    fast.clear()
    assert len(fast) == 0 and fast.live_hits() == []
    assert metrics.answered == {STATS: 3, ("AAAA", "NOERROR"): 1}


def test_without_the_batched_reader_dropped_entries_are_freed_at_once(fast: FastPath) -> None:
    fast.insert(b"web", (b"w",), stats=STATS, index=0)
    fast.drop([b"web"])
    assert fast.retired == []


@pytest.mark.skipif(not fastpath.available(), reason="recvmmsg/sendmmsg not available")
def test_entries_dropped_under_the_batched_reader_live_until_its_next_batch(
    fast: FastPath, metrics: DnsMetrics, sockets: tuple[socket.socket, socket.socket]
) -> None:
    """sendmmsg reads a hit's reply in place: its bytes must outlive the send."""
    reader = reader_for(fast, sockets[0], "mmsg", SlowPath(), metrics)
    fast.insert(b"web", (b"w",), stats=STATS, index=0)
    fast.insert(b"api", (b"a",), stats=STATS, index=0)
    fast.drop([b"web"])
    fast.clear()
    assert sorted(e.tails[0] for e in fast.retired) == [b"a", b"w"]
    exchange(reader, sockets, [b"\x00\x00db"], 1)  # a reader run: the batch before is sent
    assert fast.retired == []
    fast.insert(b"web", (b"w",), stats=STATS, index=0)
    fast.close()
    fast.drop([b"web"])
    assert fast.retired == []  # stopped: nothing is parked any more
