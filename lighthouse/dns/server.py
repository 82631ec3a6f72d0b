"""Transport: the UDP and TCP listeners of the DNS server, on one asyncio loop.

This is the transport of dnslib's split; the codec is ``wire.py`` (by hand) and
dnslib (packing, off the hot path), the policy is ``policy.py``, the hooks are
``metrics.py`` and logging.

UDP does not use ``asyncio.DatagramProtocol``: its transport makes one
``recvfrom`` per readiness event and one ``sendto`` per reply, which measured
about a third of the rate of reading in batches here. Instead the bound socket
gets a reader callback (``loop.add_reader``) from the fast path
(``fastpath.py``) that drains up to ``batch`` datagrams per wake-up, with
recvmmsg/sendmmsg where the platform has them (``mmsg.py``) and a
``recvfrom``/``sendto`` loop otherwise. Per datagram the hot path is one dict
lookup on the query bytes; anything else goes through
:meth:`AnswerCache.respond`, which never raises.

TCP (RFC 7766) uses an ``asyncio.Protocol``: 2-byte length framing, pipelined
queries answered in order, idle connections closed after ``tcp_idle_timeout``, at
most ``max_tcp_connections`` at once, and a client that does not read its answers
is disconnected rather than buffered for.

Nothing here blocks: the only lock taken is the records store's, which is held
for dict updates, never across I/O.

Example (a doctest: starts a server on a free loopback port, queries it, stops it)::

    >>> import socket
    >>> from lighthouse.dns.records import ClusterExport, ServiceRecords
    >>> records = ServiceRecords(local_cluster="east")
    >>> _ = records.upsert_service(namespace="default", name="web",
    ...     export=ClusterExport(cluster="east", global_ip="242.0.0.7"))
    >>> with ServerThread(DnsServer(records, config=ServerConfig(port=0))) as thread:
    ...     q = bytes.fromhex("abcd0100000100000000000003776562"
    ...                       "0764656661756c74037376630a636c757374657273657405"
    ...                       "6c6f63616c0000010001")
    ...     with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    ...         _ = s.sendto(q, ("127.0.0.1", thread.server.port))
    ...         reply = s.recv(512)
    >>> reply[:2] == q[:2], reply[-4:] == socket.inet_aton("242.0.0.7")
    (True, True)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from lighthouse.dns import fastpath
from lighthouse.dns.answers import AnswerCache
from lighthouse.dns.metrics import DnsMetrics
from lighthouse.dns.policy import Zone
from lighthouse.dns.records import ServiceRecords
from lighthouse.dns.wire import MAX_QUERY

log = logging.getLogger(__name__)

IoMode = Literal["auto", "mmsg", "plain"]

# One byte more than the largest query we accept: a datagram that fills the
# buffer was cut short by it and is answered FORMERR by the parser.
RECV_SIZE = MAX_QUERY + 1
SOCKET_BUFFER = 4 << 20  # bytes; the kernel caps it at net.core.[rw]mem_max
TCP_MAX_UNSENT = 1 << 20  # bytes of answers a TCP client may leave unread


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """Where the server listens and what it answers for."""

    host: str = "127.0.0.1"
    port: int = 5353  # 0: any free port (UDP and TCP share it)
    zone: str = "clusterset.local"
    ttl: int = 5
    udp_payload: int = 1232  # largest UDP reply to EDNS clients (DNS flag day 2020)
    batch: int = 64  # datagrams read per wake-up
    io: IoMode = "auto"
    tcp_idle_timeout: float = 10.0
    max_tcp_connections: int = 256
    max_cache_entries: int = 65536


class DnsServer:
    """The authoritative server for the clusterset zone, answering from ``records``."""

    def __init__(
        self,
        records: ServiceRecords,
        *,
        config: ServerConfig | None = None,
        metrics: DnsMetrics | None = None,
    ) -> None:
        self.config = config or ServerConfig()
        if not 512 <= self.config.udp_payload <= 4096:
            raise ValueError("udp_payload must be within 512..4096")
        self.records = records
        self.metrics = metrics or DnsMetrics()
        self.zone = Zone(self.config.zone, ttl=self.config.ttl)
        self.cache = AnswerCache(
            records,
            self.zone,
            metrics=self.metrics,
            udp_payload=self.config.udp_payload,
            max_entries=self.config.max_cache_entries,
        )
        self.io_mode: IoMode = "plain"
        self._udp: socket.socket | None = None
        self._tcp: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connections: set[asyncio.Transport] = set()
        self.port = 0

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Bind UDP and TCP on the same port and start answering."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.cache.attach()
        udp, tcp = _bind_pair(self.config.host, self.config.port)
        self._udp = udp
        self.port = udp.getsockname()[1]
        use_mmsg = self.config.io == "mmsg" or (self.config.io == "auto" and fastpath.available())
        try:
            reader = self._reader(udp, "mmsg" if use_mmsg else "plain")
            self._tcp = await loop.create_server(lambda: _TcpConnection(self), sock=tcp)
        except BaseException:
            udp.close()
            tcp.close()
            self._udp = None
            raise
        self.io_mode = "mmsg" if use_mmsg else "plain"
        loop.add_reader(udp.fileno(), reader)
        log.info(
            "DNS server for %s on %s:%d (udp %s, tcp)",
            self.zone.name, self.config.host, self.port, self.io_mode,
        )

    async def stop(self) -> None:
        """Stop listening, close client connections, detach from the store."""
        if self._udp is not None and self._loop is not None:
            self._loop.remove_reader(self._udp.fileno())
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            for transport in list(self._connections):
                transport.abort()
            await self._tcp.wait_closed()
            self._tcp = None
        self.cache.detach()

    async def __aenter__(self) -> DnsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- UDP -------------------------------------------------------------------

    def _reader(self, sock: socket.socket, io: Literal["mmsg", "plain"]) -> fastpath.Reader:
        """The UDP socket's reader callback, from the fast path (``fastpath.py``)."""
        fast = self.cache.fast
        build = fast.mmsg_reader if io == "mmsg" else fast.plain_reader
        return build(
            sock,
            respond=self.cache.respond,
            batch=self.config.batch,
            recv_size=RECV_SIZE,
            observe=self.metrics.observe,
        )


class _TcpConnection(asyncio.Protocol):
    """One DNS-over-TCP client: length-prefixed queries, answered in order."""

    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.last_activity = 0.0
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        server = self.server
        if len(server._connections) >= server.config.max_tcp_connections:
            server.metrics.malformed["tcp connection limit"] += 1
            transport.abort()
            return
        server._connections.add(transport)
        loop = asyncio.get_running_loop()
        self.last_activity = loop.time()
        self.timer = loop.call_later(server.config.tcp_idle_timeout, self._check_idle)

    def _check_idle(self) -> None:
        loop = asyncio.get_running_loop()
        idle = loop.time() - self.last_activity
        timeout = self.server.config.tcp_idle_timeout
        if idle >= timeout:
            if self.transport is not None:
                self.transport.close()
        else:
            self.timer = loop.call_later(timeout - idle, self._check_idle)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self.last_activity = asyncio.get_running_loop().time()
        buf = self.buffer
        buf += data
        metrics = self.server.metrics
        respond = self.server.cache.respond
        while len(buf) >= 2:
            size = (buf[0] << 8) | buf[1]
            if size == 0 or size > MAX_QUERY:
                # A framing we cannot resynchronise from: hang up (RFC 7766 §6.2.4
                # lets a server close a connection it cannot serve).
                metrics.malformed["bad tcp frame length"] += 1
                transport.abort()
                return
            if len(buf) < 2 + size:
                break
            message = bytes(buf[2 : 2 + size])
            del buf[: 2 + size]
            start = time.perf_counter()
            reply = respond(message, udp=False)
            if reply is not None:
                transport.write(len(reply).to_bytes(2, "big") + reply)
            metrics.observe(1, time.perf_counter() - start)
        if transport.get_write_buffer_size() > TCP_MAX_UNSENT:
            metrics.malformed["tcp client not reading"] += 1
            transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.transport is not None:
            self.server._connections.discard(self.transport)


def _bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A UDP and a TCP socket on the same port (a free one when ``port`` is 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _attempt in range(20):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            for opt, size in ((socket.SO_RCVBUF, SOCKET_BUFFER), (socket.SO_SNDBUF, SOCKET_BUFFER)):
                with contextlib.suppress(OSError):
                    udp.setsockopt(socket.SOL_SOCKET, opt, size)
            udp.bind((host, port))
            udp.setblocking(False)
            bound = udp.getsockname()[1]
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind((host, bound))
            tcp.listen(128)
            tcp.setblocking(False)
            return udp, tcp
        except OSError:
            udp.close()
            tcp.close()
            if port:
                raise
    raise OSError(f"no port free for both UDP and TCP on {host}")


class ServerThread:
    """Runs a :class:`DnsServer` on its own event loop in a daemon thread.

    For tests and synchronous callers. ``errors`` collects whatever reaches the
    loop's exception handler (an unhandled exception in a callback), so a test can
    assert there was none.
    """

    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.errors: list[dict[str, Any]] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._failure: BaseException | None = None

    def start(self, timeout: float = 10.0) -> ServerThread:
        self._thread = threading.Thread(target=self._run, name="dns-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("DNS server did not start")
        if self._failure is not None:
            raise self._failure
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.loop is not None and self._stopping is not None:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout)

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run ``fn`` on the server's loop and return its result."""
        assert self.loop is not None

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self.loop = loop
        loop.set_exception_handler(self._on_error)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # surfaced by start()
            self._failure = exc
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        await self.server.start()
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await self.server.stop()

    def _on_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.errors.append(context)
        loop.default_exception_handler(context)
