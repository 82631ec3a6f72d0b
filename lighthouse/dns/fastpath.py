"""The UDP fast path: complete replies keyed by query bytes, and the loops that serve them.

This is the one module that knows what a cached reply looks like. ``answers.py``
(the slow path) decides what goes in, :class:`FastPath` holds it, and the two UDP
readers built here are the only code that reads an :class:`Entry` per datagram.

* **Key**: the whole query minus its 2-byte ID. The slow path inserts a key only
  after the strict parser (``wire.py``) accepted those very bytes, so a hit *is*
  a validated query with the same flags, question and OPT: no parsing at all.
* **Entry**: each round-robin variant's reply minus its ID (``tails``), their
  buffer addresses and lengths (``iov``, flattened, for the zero-copy sendmmsg of
  ``mmsg.py``), and ``hits``, which is at once the round-robin index and the query
  counter the metrics read (``hits - start``). A hit serves variant
  ``(hits + 1) % count``.
* **Retired entries**: an entry dropped from the table while the batched reader
  runs is parked until the reader says its batch is sent
  (:meth:`FastPath.release_retired`), so no buffer a pending sendmmsg points into
  is freed underneath it.

Consistency: entries are inserted and dropped only under the records store's lock
(the slow path holds it when it inserts, the store when it invalidates), so no
reply computed from old records is inserted after the change that outdated it.
The readers look entries up and bump ``hits`` without the lock: ``entries`` is
only ever mutated in place, and a dict lookup is atomic. Hit counts are folded
into ``metrics.answered`` when an entry leaves the table.

Why the readers look the way they do: everything the loop touches is a local,
per-slot offsets are precomputed and ``Entry`` has slots, because attribute
lookups and arithmetic per datagram are a measurable share of the budget. Per
hit the batched reader slices the query once (the lookup key) and copies
nothing else: the kernel reads the ID from the receive buffer and the rest from
the entry's tail.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from lighthouse.dns import mmsg
from lighthouse.dns.metrics import DnsMetrics, StatsKey

log = logging.getLogger(__name__)

Reader = Callable[[], None]
"""A socket's reader callback: drains up to one batch of datagrams and answers them."""


class Responder(Protocol):
    """The slow path: the reply to any message (None: drop it); never raises."""

    def __call__(self, data: bytes, *, udp: bool) -> bytes | None: ...


@dataclass(slots=True, eq=False)
class Entry:
    """One cached reply, in every round-robin variant; see the module docstring."""

    hits: int
    """Round-robin index and hit counter: the next hit serves ``(hits + 1) % count``."""
    count: int
    """Number of variants (at least 1)."""
    start: int
    """``hits`` when inserted: the entry has served ``hits - start`` queries."""
    stats: StatsKey
    """The (qtype, rcode) series its hits count towards."""
    tails: tuple[bytes, ...]
    """Each variant's reply without its 2-byte ID."""
    iov: tuple[int, ...]
    """Buffer address and length of each tail, flattened: valid while ``tails`` lives."""

    @property
    def served(self) -> int:
        """Queries answered from this entry so far."""
        return self.hits - self.start


def available() -> bool:
    """Whether the batched (recvmmsg/sendmmsg) reader can run on this platform."""
    return mmsg.available()


class FastPath:
    """The exact-bytes reply table and its UDP readers.

    ``lock`` is the records store's lock: callers of :meth:`insert`, :meth:`drop`
    and :meth:`clear` hold it. Hit counts reach ``metrics`` live (``metrics.live``)
    and are folded into ``metrics.answered`` when an entry leaves.
    """

    def __init__(self, *, lock: threading.RLock, metrics: DnsMetrics) -> None:
        self.entries: dict[bytes, Entry] = {}
        """Query minus ID -> reply; mutated in place only (the readers keep ``get``)."""
        self.retired: list[Entry] = []
        """Entries dropped while the batched reader runs, kept until its batch is sent."""
        self._lock = lock
        self._answered = metrics.answered
        self._keep_retired = False
        metrics.live = self.live_hits

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    # -- the table (store lock held) ---------------------------------------------

    def insert(
        self, key: bytes, tails: tuple[bytes, ...], *, stats: StatsKey, index: int
    ) -> None:
        """Cache ``tails`` (per variant, replies minus ID) for queries ``key``.

        ``index`` is the variant just served for this query by the slow path, so
        the first hit continues the rotation with ``index + 1``.
        """
        iov: list[int] = []
        for tail in tails:
            iov += (mmsg.buffer_address(tail), len(tail))
        self.entries[key] = Entry(index, len(tails), index, stats, tails, tuple(iov))

    def drop(self, keys: Iterable[bytes]) -> None:
        """Remove the entries for ``keys`` (absent ones are skipped)."""
        pop = self.entries.pop
        for key in keys:
            entry = pop(key, None)
            if entry is not None:
                self._retire(entry)

    def clear(self) -> None:
        """Remove every entry."""
        for entry in self.entries.values():
            self._retire(entry)
        self.entries.clear()

    def _retire(self, entry: Entry) -> None:
        self._answered[entry.stats] += entry.served
        if self._keep_retired:
            self.retired.append(entry)

    def live_hits(self) -> list[tuple[StatsKey, int]]:
        """Queries served by the entries in the table, not folded yet (for metrics)."""
        with self._lock:
            return [(e.stats, e.served) for e in self.entries.values()]

    # -- lifecycle of retired entries --------------------------------------------

    def release_retired(self) -> None:
        """Free dropped entries: the batched reader has no send pending into them."""
        if self.retired:
            with self._lock:
                self.retired.clear()

    def close(self) -> None:
        """The readers have stopped: free retired entries and stop parking them."""
        with self._lock:
            self._keep_retired = False
            self.retired.clear()

    # -- the UDP readers ------------------------------------------------------------

    def mmsg_reader(
        self,
        sock: socket.socket,
        *,
        respond: Responder,
        batch: int,
        recv_size: int,
        observe: Callable[[int, float], None],
    ) -> Reader:
        """A reader answering in recvmmsg/sendmmsg batches, hits sent without copying.

        Slot i's reply always goes in send slot i; a miss or a dropped datagram
        splits the batch into runs sent separately.
        """
        io = mmsg.MmsgSocket(sock, batch=batch, recv_size=recv_size)
        with self._lock:
            self._keep_retired = True  # sendmmsg reads tails in place
        exact_get = self.entries.get
        release_retired = self.release_retired
        rbuf: Any = io.rbuf  # a ctypes char array: slicing gives bytes
        send_iov = io.send_iov
        recv_len = io.recv_len
        slots = [
            (i, i * io.recv_size, i * io.len_stride + io.len_index, 4 * i + 2)
            for i in range(io.batch)
        ]
        recv = io.recv
        send = io.send
        buffer_address = mmsg.buffer_address
        clock = time.perf_counter

        def on_readable() -> None:
            release_retired()  # the previous batch is sent: its buffers may go
            start = clock()
            try:
                n = recv()
            except OSError as exc:
                log.warning("recvmmsg: %s", exc)
                return
            if not n:
                return
            run = 0  # first slot of the run of replies not sent yet
            slow: list[bytes] = []  # keeps slow-path replies alive until sent
            for i, off, length_at, iov_at in slots[:n]:
                size = recv_len[length_at]
                entry = exact_get(rbuf[off + 2 : off + size])
                if entry is not None:
                    hits = entry.hits + 1
                    entry.hits = hits
                    iov = entry.iov
                    k = (hits % entry.count) << 1
                    send_iov[iov_at] = iov[k]
                    send_iov[iov_at + 1] = iov[k + 1]
                    continue
                # Off the hot path: first send the replies ready so far, so they
                # do not wait behind a cache fill (dnslib packing, ~0.1 ms).
                if i > run:
                    send(run, i - run)
                    run = i
                reply = respond(rbuf[off : off + size], udp=True)
                if reply is None:
                    run = i + 1
                    continue
                tail = reply[2:]  # the ID is sent from the query, as always
                slow.append(tail)
                send_iov[iov_at] = buffer_address(tail)
                send_iov[iov_at + 1] = len(tail)
            if n > run:
                send(run, n - run)
            observe(n, clock() - start)

        return on_readable

    def plain_reader(
        self,
        sock: socket.socket,
        *,
        respond: Responder,
        batch: int,
        recv_size: int,
        observe: Callable[[int, float], None],
    ) -> Reader:
        """A reader answering with one recvfrom and one sendto per datagram."""
        exact_get = self.entries.get
        recvfrom = sock.recvfrom
        sendto = sock.sendto
        clock = time.perf_counter

        def on_readable() -> None:
            start = clock()
            n = 0
            while n < batch:
                try:
                    data, addr = recvfrom(recv_size)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    log.warning("recvfrom: %s", exc)
                    break
                n += 1
                entry = exact_get(data[2:])
                if entry is not None:
                    hits = entry.hits + 1
                    entry.hits = hits
                    reply = data[:2] + entry.tails[hits % entry.count]
                else:
                    answer = respond(data, udp=True)
                    if answer is None:
                        continue
                    reply = answer
                try:  # noqa: SIM105 - contextlib.suppress costs an object per datagram
                    sendto(reply, addr)
                except OSError:
                    pass  # ENOBUFS, a firewall's EPERM...: drop it, the client retries
            if n:
                observe(n, clock() - start)

        return on_readable
